"""The Ready handler's durability rules, one Ready at a time (no IO, no event loop)."""

from __future__ import annotations

import random

from naraft.machine import NodeStateMachine
from naraft.naming.state import NamingState
from naraft.raft import Entry, HardState, Index, NodeId, RaftConfig, RaftCore, Ready, Term
from naraft.replica.handler import ReadyHandler
from naraft.state.datums import DatumTable
from naraft.state.kv import KvPut, PutValue, encode_kv

N1 = NodeId("n1")
IDLE = 10.0


def _handler() -> tuple[ReadyHandler, NodeStateMachine]:
    datums = DatumTable()
    machine = NodeStateMachine(datums, NamingState(datums))
    handler = ReadyHandler(machine, applied_term=Term(0), now=0.0, idle_flush_after=IDLE)
    return handler, machine


def _put(index: int, key: str = "k", value: str = "v") -> Entry:
    return Entry(Term(1), Index(index), encode_kv(PutValue(key=key, value=value)))


def _ready(**fields: object) -> Ready:
    base: dict[str, object] = {
        "hard_state": None,
        "entries": (),
        "messages": (),
        "committed": (),
        "role_change": None,
    }
    base.update(fields)
    return Ready(**base)  # type: ignore[arg-type]


def test_the_core_says_a_commit_only_ready_need_not_sync() -> None:
    core = RaftCore(RaftConfig(id=N1, voters=(N1,), election_ticks=2), rng=random.Random(1))
    core.campaign()
    ready = core.ready()
    assert ready.must_sync  # a new term and vote
    core.advance(ready)
    while core.has_ready():
        ready = core.ready()
        core.advance(ready)
    core.propose(b"")
    append = core.ready()
    assert append.must_sync
    assert append.entries
    core.advance(append)
    commit = core.ready()  # a lone voter commits what it persisted
    assert commit.hard_state is not None
    assert commit.hard_state.commit == append.entries[-1].index
    assert not commit.must_sync


def test_a_commit_only_ready_is_deferred_then_rides_with_the_next_write() -> None:
    handler, _machine = _handler()
    entries = (_put(1),)
    first = handler.batch_for(_ready(entries=entries, must_sync=True), Index(0))
    assert first is not None
    assert first.entries == entries
    handler.written(first, now=1.0)
    commit = HardState(term=Term(1), voted_for=N1, commit=Index(1))
    assert handler.batch_for(_ready(hard_state=commit, committed=entries), Index(0)) is None
    applied = handler.apply(_ready(hard_state=commit, committed=entries))
    assert applied.results[0].result == KvPut(index=1)
    assert handler.unwritten_hard_state == commit
    # The next write that must happen carries the commit index and the applied state.
    nxt = handler.batch_for(_ready(entries=(_put(2),), must_sync=True), Index(1))
    assert nxt is not None
    assert nxt.hard_state == commit
    assert nxt.applied_index == 1
    assert nxt.datum_changes is not None
    assert "naraft.kv.k" in nxt.datum_changes.puts


def test_the_idle_flush_waits_for_the_idle_time_and_carries_the_commit() -> None:
    handler, _machine = _handler()
    entries = (_put(1),)
    commit = HardState(term=Term(1), voted_for=N1, commit=Index(1))
    handler.batch_for(_ready(hard_state=commit, committed=entries), Index(0))
    handler.apply(_ready(committed=entries))
    assert handler.idle_batch(Index(1), now=IDLE - 0.1) is None
    batch = handler.idle_batch(Index(1), now=IDLE)
    assert batch is not None
    assert batch.hard_state == commit  # stored applied never passes stored commit
    assert batch.applied_index == 1
    handler.written(batch, now=IDLE)
    assert not handler.has_deferred()
    assert handler.idle_batch(Index(1), now=10 * IDLE) is None


def test_a_drain_point_splits_the_changes_of_one_ready() -> None:
    handler, _machine = _handler()
    handler.add_drain_point(Index(2))
    entries = (_put(1, "a"), _put(2, "b"), _put(3, "c"))
    applied = handler.apply(_ready(committed=entries))
    assert [d.index for d in applied.drained] == [2, 3]
    assert set(applied.drained[0].changes.puts) == {"naraft.kv.a", "naraft.kv.b"}
    assert set(applied.drained[1].changes.puts) == {"naraft.kv.c"}
    assert handler.applied_term == 1
