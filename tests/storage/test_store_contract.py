"""The Store contract: every test runs on MemoryStore and on SqliteStore (a file in tmp_path).

A store is written one WriteBatch per Ready and read back with load() after a restart, so
most tests write, reopen, and check what load() finds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from naraft.raft.types import NO_SNAPSHOT, Entry, HardState, Index, NodeId, SnapshotMeta, Term
from naraft.state.datums import Datum, DatumChanges
from naraft.storage import (
    ClusterIdMismatchError,
    InvalidBatchError,
    MemoryStore,
    NodeIdMismatchError,
    Store,
    StoredState,
    StoreError,
    WriteBatch,
    open_store,
)

Reopen = Callable[[], Store]


def make_entries(first: int, last: int, *, term: int = 1) -> tuple[Entry, ...]:
    """Entries first..=last of `term`, each with a command naming its index and term."""
    return tuple(
        Entry(Term(term), Index(index), f"cmd-{index}-{term}".encode())
        for index in range(first, last + 1)
    )


def changes(puts: dict[str, Datum] | None = None, deletes: set[str] | None = None) -> DatumChanges:
    return DatumChanges(puts=puts or {}, deletes=frozenset(deletes or ()))


def test_empty_store_loads_defaults(store: Store) -> None:
    assert store.load() == StoredState(
        hard_state=HardState(),
        snapshot=NO_SNAPSHOT,
        entries=(),
        applied_index=Index(0),
        datums={},
        node_id=None,
    )


@pytest.mark.parametrize(
    "hard_state",
    [
        pytest.param(HardState(term=Term(3)), id="term-no-vote"),
        pytest.param(
            HardState(term=Term(7), voted_for=NodeId("n2"), commit=Index(5)), id="vote-and-commit"
        ),
    ],
)
def test_hard_state_round_trips_across_a_restart(reopen: Reopen, hard_state: HardState) -> None:
    reopen().write(WriteBatch(hard_state=HardState(term=Term(1), voted_for=NodeId("n1"))))
    reopen().write(WriteBatch(hard_state=hard_state))
    assert reopen().load().hard_state == hard_state


def test_entries_append_in_index_order(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 3)))
    store.write(WriteBatch(entries=make_entries(4, 4)))
    assert reopen().load().entries == make_entries(1, 4)


def test_an_entry_at_index_i_replaces_every_entry_from_i_on(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 5)))
    store.write(WriteBatch(entries=make_entries(3, 3, term=2)))
    assert reopen().load().entries == make_entries(1, 2) + make_entries(3, 3, term=2)


def test_hard_state_and_entries_persist_in_the_same_write(reopen: Reopen) -> None:
    hard_state = HardState(term=Term(2), voted_for=NodeId("n1"), commit=Index(1))
    reopen().write(WriteBatch(hard_state=hard_state, entries=make_entries(1, 2, term=2)))
    loaded = reopen().load()
    assert (loaded.hard_state, loaded.entries) == (hard_state, make_entries(1, 2, term=2))


def test_applied_index_and_datum_changes_persist_in_the_same_write(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 3)))
    store.write(
        WriteBatch(
            applied_index=Index(2),
            datum_changes=changes({"a": Datum(b"1", 1), "b": Datum(b"2", 2)}),
        )
    )
    store.write(
        WriteBatch(
            applied_index=Index(3),
            datum_changes=changes({"a": Datum(b"3", 3)}, deletes={"b", "never-there"}),
        )
    )
    loaded = reopen().load()
    assert (loaded.applied_index, loaded.datums) == (Index(3), {"a": Datum(b"3", 3)})


def test_snapshot_compaction_drops_entries_through_its_index(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 6)))
    store.write(WriteBatch(snapshot=SnapshotMeta(index=Index(4), term=Term(1))))
    store.write(WriteBatch(entries=make_entries(7, 7)))
    loaded = reopen().load()
    assert (loaded.snapshot, loaded.entries) == (
        SnapshotMeta(index=Index(4), term=Term(1)),
        make_entries(5, 7),
    )


def test_snapshot_past_the_log_empties_it_and_the_log_resumes_after_it(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 2)))
    snapshot = SnapshotMeta(index=Index(10), term=Term(3))
    store.write(WriteBatch(snapshot=snapshot, entries=make_entries(11, 12, term=3)))
    loaded = reopen().load()
    assert (loaded.snapshot, loaded.entries) == (snapshot, make_entries(11, 12, term=3))


def test_replace_datums_installs_a_whole_state_then_applies_the_changes(reopen: Reopen) -> None:
    store = reopen()
    store.write(WriteBatch(datum_changes=changes({"old": Datum(b"x", 1), "kept": Datum(b"y", 1)})))
    store.write(
        WriteBatch(
            snapshot=SnapshotMeta(index=Index(20), term=Term(2)),
            applied_index=Index(20),
            replace_datums={"kept": Datum(b"new", 19), "gone": Datum(b"z", 18)},
            datum_changes=changes({"added": Datum(b"a", 20)}, deletes={"gone"}),
        )
    )
    loaded = reopen().load()
    assert loaded.datums == {"kept": Datum(b"new", 19), "added": Datum(b"a", 20)}
    assert loaded.applied_index == Index(20)


def test_reopening_gives_the_same_state(reopen: Reopen) -> None:
    store = reopen()
    store.set_node_id("n1")
    store.write(
        WriteBatch(
            hard_state=HardState(term=Term(4), voted_for=NodeId("n3"), commit=Index(3)),
            entries=make_entries(1, 5, term=4),
        )
    )
    store.write(WriteBatch(snapshot=SnapshotMeta(index=Index(2), term=Term(4))))
    store.write(WriteBatch(applied_index=Index(3), datum_changes=changes({"k": Datum(b"v", 3)})))
    before = store.load()
    assert reopen().load() == before
    assert reopen().load() == before


def test_node_id_is_recorded_by_the_first_caller_only(reopen: Reopen) -> None:
    reopen().set_node_id("n1")
    store = reopen()
    store.set_node_id("n1")  # the same id again: a no-op
    with pytest.raises(NodeIdMismatchError) as refused:
        store.set_node_id("n2")
    assert (refused.value.recorded, refused.value.given) == ("n1", "n2")
    assert reopen().load().node_id == "n1"


def test_cluster_id_is_recorded_at_the_first_start_and_checked_at_every_later_one(
    reopen: Reopen,
) -> None:
    assert reopen().set_cluster_id("c0ffee0000000001") is True
    store = reopen()
    store.write(WriteBatch(hard_state=HardState(term=Term(2)), entries=make_entries(1, 3)))
    assert store.set_cluster_id("c0ffee0000000001") is False  # the same id: a no-op
    with pytest.raises(ClusterIdMismatchError) as refused:
        reopen().set_cluster_id("badc0de000000002")
    assert (refused.value.recorded, refused.value.given) == (
        "c0ffee0000000001",
        "badc0de000000002",
    )
    message = str(refused.value)
    assert "\n" not in message
    assert "c0ffee0000000001" in message
    assert "badc0de000000002" in message
    assert reopen().set_cluster_id("c0ffee0000000001") is False  # the refusal changed nothing
    assert reopen().load().hard_state.term == 2


@pytest.mark.parametrize(
    ("batch", "problem"),
    [
        pytest.param(
            WriteBatch(entries=make_entries(5, 5)),
            "would leave a gap after the last entry 3",
            id="gap",
        ),
        pytest.param(
            WriteBatch(entries=(*make_entries(4, 4), *make_entries(6, 6))),
            "not consecutive: 4 then 6",
            id="not-consecutive",
        ),
        pytest.param(
            WriteBatch(entries=make_entries(2, 2)),
            "entry 2 is at or below the snapshot boundary 2",
            id="below-snapshot",
        ),
        pytest.param(
            WriteBatch(snapshot=SnapshotMeta(index=Index(1), term=Term(1))),
            "snapshot at 1 is older than the stored one at 2",
            id="older-snapshot",
        ),
        pytest.param(
            WriteBatch(
                hard_state=HardState(term=Term(9)),
                datum_changes=changes({"k": Datum(b"v", 1)}, deletes={"k"}),
            ),
            "datum key 'k' is both put and deleted",
            id="put-and-delete",
        ),
    ],
)
def test_a_batch_that_does_not_fit_is_refused_whole(
    reopen: Reopen, batch: WriteBatch, problem: str
) -> None:
    store = reopen()
    store.write(WriteBatch(entries=make_entries(1, 3)))
    store.write(WriteBatch(snapshot=SnapshotMeta(index=Index(2), term=Term(1))))
    before = store.load()
    with pytest.raises(InvalidBatchError, match=problem):
        store.write(batch)
    assert store.load() == before
    assert reopen().load() == before


def test_an_empty_batch_changes_nothing(store: Store) -> None:
    store.write(WriteBatch(hard_state=HardState(term=Term(1))))
    before = store.load()
    store.write(WriteBatch(datum_changes=changes()))
    assert store.load() == before


def test_load_returns_values_the_caller_may_change_freely(store: Store) -> None:
    store.write(WriteBatch(datum_changes=changes({"k": Datum(b"v", 1)})))
    loaded = store.load()
    loaded.datums["k"] = Datum(b"changed", 2)
    loaded.datums["other"] = Datum(b"x", 3)
    assert store.load().datums == {"k": Datum(b"v", 1)}


def test_a_closed_store_refuses_calls_and_closes_twice(store: Store) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.load()
    with pytest.raises(StoreError, match="the store is closed"):
        store.write(WriteBatch(hard_state=HardState(term=Term(1))))


# --- Property: both stores agree on every sequence of batches ---------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
DATUMS = st.builds(Datum, st.binary(max_size=8), st.integers(min_value=0, max_value=50))


@st.composite
def batches_for(draw: st.DrawFn, state: StoredState) -> WriteBatch:
    """A batch that mostly fits `state`'s log, and now and then does not (off by one)."""
    last = state.snapshot.index + len(state.entries)
    snapshot = draw(
        st.none()
        | st.integers(min_value=max(0, state.snapshot.index - 1), max_value=last + 2).map(
            lambda index: SnapshotMeta(index=Index(index), term=Term(index // 3))
        )
    )
    boundary = state.snapshot.index if snapshot is None else max(snapshot.index, 0)
    first = draw(st.integers(min_value=boundary, max_value=max(last, boundary) + 2))
    term = draw(st.integers(min_value=0, max_value=5))
    count = draw(st.integers(min_value=0, max_value=4))
    entries = tuple(
        Entry(Term(term), Index(index), draw(st.binary(max_size=8)))
        for index in range(first, first + count)
    )
    datum_changes = draw(
        st.none()
        | st.builds(
            DatumChanges,
            puts=st.dictionaries(KEYS, DATUMS, max_size=3),
            deletes=st.frozensets(KEYS, max_size=2),
        )
    )
    return WriteBatch(
        hard_state=draw(
            st.none()
            | st.builds(
                HardState,
                term=st.integers(min_value=0, max_value=9).map(Term),
                voted_for=st.none() | st.sampled_from([NodeId("n1"), NodeId("n2")]),
                commit=st.integers(min_value=0, max_value=20).map(Index),
            )
        ),
        entries=entries,
        applied_index=draw(st.none() | st.integers(min_value=0, max_value=20).map(Index)),
        datum_changes=datum_changes,
        snapshot=snapshot,
        replace_datums=draw(st.none() | st.dictionaries(KEYS, DATUMS, max_size=3)),
    )


def outcome(store: Store, batch: WriteBatch) -> str | StoredState:
    """The store's state after writing `batch`, or the refusal's problem."""
    try:
        store.write(batch)
    except InvalidBatchError as error:
        event("refused")
        return error.problem
    event("written")
    return store.load()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), length=st.integers(min_value=1, max_value=10))
def test_both_stores_agree_on_any_sequence_of_batches(data: st.DataObject, length: int) -> None:
    memory = MemoryStore()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "naraft.db"
        sqlite = open_store(path)
        try:
            for _ in range(length):
                batch = data.draw(batches_for(memory.load()))
                assert outcome(sqlite, batch) == outcome(memory, batch)
            sqlite.close()
            sqlite = open_store(path)
            assert sqlite.load() == memory.load()
        finally:
            sqlite.close()
