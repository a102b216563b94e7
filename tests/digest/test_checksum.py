"""The state checksum: order-independent, incremental equals from scratch, sensitive to
every key, version and value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from naraft.digest.checksum import StateChecksum, checksum_of, datum_hash
from naraft.state.datums import Datum, DatumChanges, DatumTable

keys = st.text(min_size=1, max_size=8)
ops = st.lists(st.tuples(st.booleans(), keys, st.binary(max_size=16)), min_size=1, max_size=60)


@given(ops)
def test_the_incremental_checksum_equals_the_checksum_computed_from_scratch(
    steps: list[tuple[bool, str, bytes]],
) -> None:
    table = DatumTable()
    checksum = StateChecksum(table.items(), 0)
    for index, (is_put, key, value) in enumerate(steps, start=1):
        if is_put:
            table.put(key, value, index)
        else:
            table.delete(key)
        checksum.apply(table.drain_changes(), index)
        assert checksum.value == checksum_of(dict(table.items()))
    assert checksum.index == len(steps)
    assert dict(checksum.hashes) == {k: datum_hash(k, d) for k, d in table.items()}


@given(st.dictionaries(keys, st.binary(max_size=8), max_size=20), st.randoms())
def test_the_checksum_does_not_depend_on_the_order_keys_were_written(
    data: dict[str, bytes], rng: object
) -> None:
    items = [(k, Datum(v, 1)) for k, v in data.items()]
    shuffled = list(items)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert StateChecksum(items, 1).value == StateChecksum(shuffled, 1).value


def test_a_changed_value_version_or_key_changes_the_checksum() -> None:
    base = {"a": Datum(b"1", 1), "b": Datum(b"2", 2)}
    reference = checksum_of(base)
    assert checksum_of({**base, "a": Datum(b"x", 1)}) != reference
    assert checksum_of({**base, "a": Datum(b"1", 9)}) != reference
    assert checksum_of({"c": Datum(b"1", 1), "b": Datum(b"2", 2)}) != reference
    assert checksum_of({"b": Datum(b"2", 2)}) != reference


def test_the_checksum_at_a_past_index_is_remembered() -> None:
    checksum = StateChecksum([], 0)
    empty = checksum.value
    checksum.apply(DatumChanges(puts={"k": Datum(b"v", 1)}, deletes=frozenset()), 1)
    assert checksum.at(0) == empty
    assert checksum.at(1) == checksum.value != empty
    assert checksum.at(2) is None
