"""MemoryStore only: its model of durability (pending writes, sync, crash) and copy()."""

from __future__ import annotations

from naraft.raft.types import Entry, HardState, Index, NodeId, Term
from naraft.state.datums import Datum, DatumChanges
from naraft.storage import MemoryStore, WriteBatch


def vote(term: int, node: str) -> WriteBatch:
    return WriteBatch(
        hard_state=HardState(term=Term(term), voted_for=NodeId(node)),
        entries=(Entry(Term(term), Index(term), b"x"),),
        datum_changes=DatumChanges(puts={"k": Datum(b"%d" % term, term)}, deletes=frozenset()),
    )


def test_writes_are_durable_at_once_by_default() -> None:
    store = MemoryStore()
    store.write(vote(1, "n1"))
    assert not store.has_pending_writes
    store.crash()
    assert store.load().hard_state == HardState(term=Term(1), voted_for=NodeId("n1"))


def test_a_crash_drops_the_writes_not_yet_synced() -> None:
    store = MemoryStore(sync_writes=False)
    store.write(vote(1, "n1"))
    store.sync()
    durable = store.load()
    store.write(vote(2, "n2"))
    assert store.has_pending_writes
    assert store.load().hard_state.term == Term(2)  # visible before the crash, like a page cache
    store.crash()
    assert store.load() == durable
    assert not store.has_pending_writes


def test_synced_writes_survive_a_crash() -> None:
    store = MemoryStore(sync_writes=False)
    store.write(vote(1, "n1"))
    store.write(vote(2, "n2"))
    store.sync()
    expected = store.load()
    store.crash()
    assert store.load() == expected


def test_a_copy_shares_nothing_with_the_original() -> None:
    store = MemoryStore(sync_writes=False)
    store.write(vote(1, "n1"))
    store.sync()
    store.write(vote(2, "n2"))
    twin = store.copy()
    assert twin.load() == store.load()
    twin.write(vote(3, "n3"))
    store.crash()
    assert store.load().hard_state.term == Term(1)
    assert twin.load().hard_state.term == Term(3)
    twin.crash()
    assert twin.load().hard_state.term == Term(1)


def test_the_node_id_survives_a_crash() -> None:
    store = MemoryStore(sync_writes=False)
    store.set_node_id("n1")
    store.crash()
    assert store.load().node_id == "n1"
