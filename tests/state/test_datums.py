"""`DatumTable.index_prefix`: an indexed prefix lists exactly what a scan of the table would,
after any mix of puts, deletes, entries kept or rolled back, and whole-state installs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from naraft.state.datums import Datum, DatumTable

PREFIX = "i/"
KEYS = st.sampled_from(["i/a", "i/b", "i/b/c", "i/", "x/a", "x/i/a", "ia", "j"])
WRITES = st.lists(st.tuples(st.sampled_from(["put", "delete"]), KEYS), min_size=1, max_size=4)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), WRITES),  # outside an entry (a digest install, a repair)
        st.tuples(st.sampled_from(["kept", "rolled back"]), WRITES),  # an entry's apply
        st.tuples(st.just("replace_all"), st.frozensets(KEYS)),  # a snapshot installed
    ),
    max_size=30,
)


def write(table: DatumTable, writes: list[tuple[str, str]], version: int) -> None:
    for op, key in writes:
        if op == "put":
            table.put(key, b"v", version)
        else:
            table.delete(key)


def scanned(table: DatumTable, prefix: str) -> set[str]:
    return {key for key, _ in table.items() if key.startswith(prefix)}


@settings(max_examples=300, deadline=None)
@given(STEPS, st.frozensets(KEYS))
def test_an_indexed_prefix_lists_what_a_scan_finds(
    steps: list[tuple[str, object]], initial: frozenset[str]
) -> None:
    table = DatumTable({key: Datum(b"0", 1) for key in initial})
    table.index_prefix(PREFIX)
    for version, (step, argument) in enumerate(steps, start=2):
        if step == "replace_all":
            assert isinstance(argument, frozenset)
            table.replace_all({key: Datum(b"r", version) for key in argument})
        else:
            assert isinstance(argument, list)
            if step != "write":
                table.begin()
            write(table, argument, version)
            if step == "kept":
                table.commit()
            elif step == "rolled back":
                table.rollback()
        for prefix in (PREFIX, "i/b", "i/b/"):  # the indexed prefix, and longer ones
            listed = dict(table.with_prefix(prefix))
            assert set(listed) == scanned(table, prefix)
            assert all(listed[key] is table.get(key) for key in listed)
    assert {key for key, _ in table.with_prefix("x/")} == scanned(table, "x/")  # not indexed
