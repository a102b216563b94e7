"""`DatumTable.index_prefix` and `index_groups`: an indexed prefix lists exactly what a scan
of the table would, and a group holds exactly the keys a scan would put in it, after any mix
of puts, deletes, entries kept or rolled back, and whole-state installs; a group's stamp
changes whenever one of its members does."""

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


def run(table: DatumTable, step: str, argument: object, version: int) -> None:
    if step == "replace_all":
        assert isinstance(argument, frozenset)
        table.replace_all({key: Datum(b"r%d" % version, version) for key in argument})
        return
    assert isinstance(argument, list)
    if step != "write":
        table.begin()
    write(table, argument, version)
    if step == "kept":
        table.commit()
    elif step == "rolled back":
        table.rollback()


def write(table: DatumTable, writes: list[tuple[str, str]], version: int) -> None:
    for op, key in writes:
        if op == "put":
            table.put(key, b"v%d" % version, version)
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
        run(table, step, argument, version)
        for prefix in (PREFIX, "i/b", "i/b/"):  # the indexed prefix, and longer ones
            listed = dict(table.with_prefix(prefix))
            assert set(listed) == scanned(table, prefix)
            assert all(listed[key] is table.get(key) for key in listed)
    assert {key for key, _ in table.with_prefix("x/")} == scanned(table, "x/")  # not indexed


def grouped_as(key: str) -> str | None:
    """The group of `key` under PREFIX split at the first "/" after it, by hand."""
    if not key.startswith(PREFIX):
        return None
    rest = key[len(PREFIX) :]
    return PREFIX + rest.split("/", 1)[0]


def grouped(table: DatumTable) -> dict[str, dict[str, Datum]]:
    """What a scan puts in each group."""
    groups: dict[str, dict[str, Datum]] = {}
    for key, datum in table.items():
        if (name := grouped_as(key)) is not None:
            groups.setdefault(name, {})[key] = datum
    return groups


@settings(max_examples=300, deadline=None)
@given(STEPS, st.frozensets(KEYS))
def test_groups_hold_what_a_scan_finds_and_their_stamps_move_with_them(
    steps: list[tuple[str, object]], initial: frozenset[str]
) -> None:
    table = DatumTable({key: Datum(b"0", 1) for key in initial})
    table.index_groups(PREFIX, "/")
    before = grouped(table)
    stamps = dict(table.groups(PREFIX))
    for version, (step, argument) in enumerate(steps, start=2):
        if step == "rolled back":  # a cache made inside the entry must not outlive it
            assert isinstance(argument, list)
            table.begin()
            write(table, argument, version)
            inside, inside_stamps = grouped(table), dict(table.groups(PREFIX))
            table.rollback()
            for name, members in grouped(table).items():
                if inside.get(name) != members:
                    assert table.group_stamp(name) is not inside_stamps.get(name)
        else:
            run(table, step, argument, version)
        now = grouped(table)
        assert {name: dict(table.group_items(name)) for name in now} == now
        listed = dict(table.groups(PREFIX))
        assert set(listed) == set(now)
        for name, stamp in listed.items():
            assert table.group_stamp(name) is stamp
            if before.get(name) != now[name]:  # a member put (a new version) or deleted
                assert stamp is not stamps.get(name)
            elif step != "replace_all" and not any(
                grouped_as(key) == name
                for _, key in argument  # type: ignore[attr-defined]
            ):  # a step that touched no member leaves the stamp (a rollback may renew it)
                assert stamp is stamps[name]
        assert all(table.group_stamp(name) is None for name in before.keys() - now.keys())
        before, stamps = now, listed


def test_a_datum_keeps_no_more_memory_than_its_value_needs() -> None:
    """orjson returns small outputs in a buffer of 1 KiB or more; a datum keeps a copy of the
    value's size, so 200 instance-sized records cost about their size, not 200 KiB."""
    import gc
    import tracemalloc

    import orjson

    table = DatumTable()
    tracemalloc.start()  # before the values are made: their buffers are traced too
    try:
        before = tracemalloc.get_traced_memory()[0]
        values = [orjson.dumps({"ip": f"10.0.0.{i}", "pad": "x" * 220}) for i in range(200)]
        assert all(240 <= len(v) <= 260 for v in values)
        for i, value in enumerate(values):
            table.put(f"k{i}", value, i + 1)
        values.clear()  # the encoder's buffers go; what the table holds stays
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200 * 600, f"{held / 200:.0f} bytes a datum"
