"""The asyncio shell in-process: a one-voter Replica over a real SqliteStore in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from naraft.errors import OutcomeUnknownError, UnavailableError
from naraft.machine import NodeStateMachine
from naraft.naming.state import NamingState
from naraft.raft import (
    AppendEntries,
    AppendReply,
    Entry,
    Envelope,
    HandedOverError,
    Heartbeat,
    Index,
    NodeId,
    RaftConfig,
    RaftCore,
    RequestVote,
    Role,
    SnapshotMeta,
    Term,
    VoteReply,
)
from naraft.raft.membership import ChangeKind, Membership, MembershipChange, MembershipError
from naraft.replica import Replica, ReplicaTimings
from naraft.replica.shell import LOCAL_READ_WAIT_SECONDS, PeerSender
from naraft.state.datums import DatumTable
from naraft.state.kv import KvPut, PutValue, encode_kv, read_value
from naraft.storage.base import StoredState, StoreFullError, WriteBatch
from naraft.storage.sqlite import SqliteStore, open_store

N1, N2 = NodeId("n1"), NodeId("n2")
TIMINGS = ReplicaTimings(tick_seconds=0.01, proposal_timeout_seconds=5.0, leader_wait_seconds=3.0)


@dataclass
class RecordingStore:
    """A SqliteStore that remembers every batch written; `full_times` writes fail first."""

    inner: SqliteStore
    batches: list[WriteBatch] = field(default_factory=list)
    full_times: int = 0
    refused: int = 0

    def load(self) -> StoredState:
        return self.inner.load()

    def write(self, batch: WriteBatch) -> None:
        if self.full_times and batch.entries:
            self.full_times -= 1
            self.refused += 1
            raise StoreFullError("test.db", "the disk is full")
        self.inner.write(batch)
        self.batches.append(batch)

    def close(self) -> None:
        self.inner.close()


class Changes:
    """Wakes waiters whenever the replica wrote or applied something (driver task only)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self, *_args: object) -> None:
        self._changed.set()

    on_role_change = on_persisted = on_committed = notify

    async def until(self, condition: Callable[[], bool], seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


class NoPeers:
    def send(self, envelope: Envelope) -> None:
        raise AssertionError(f"a lone voter sent {envelope}")


@dataclass
class Shell:
    replica: Replica
    store: RecordingStore
    machine: NodeStateMachine
    executor: ThreadPoolExecutor
    changes: Changes

    async def on_store_thread(self, action: Callable[[], StoredState]) -> StoredState:
        return await asyncio.get_running_loop().run_in_executor(self.executor, action)


@contextlib.asynccontextmanager
async def running_shell(
    path: Path,
    peers: PeerSender | None = None,
    on_membership: Callable[[Membership], None] | None = None,
    timings: ReplicaTimings = TIMINGS,
    voters: tuple[NodeId, ...] = (N1,),
) -> AsyncIterator[Shell]:
    """N1 alone leads at once; with other `voters` it follows (the test plays the leader)
    and never campaigns while the test runs."""
    alone = voters == (N1,)
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    inner = await loop.run_in_executor(executor, open_store, path)
    store = RecordingStore(inner)
    stored = await loop.run_in_executor(executor, store.load)
    core = RaftCore(
        RaftConfig(id=N1, voters=voters, election_ticks=5 if alone else 1000),
        rng=random.Random(7),
        hard_state=stored.hard_state,
        log=stored.entries,
        snapshot=stored.snapshot,
        applied=stored.applied_index,
    )
    datums = DatumTable(stored.datums)
    machine = NodeStateMachine(datums, NamingState(datums))
    changes = Changes()
    replica = Replica(
        core,
        store=store,
        store_executor=executor,
        peers=peers if peers is not None else NoPeers(),
        state_machine=machine,
        timings=timings,
        observer=changes,
        on_applied=changes.notify,
        on_membership=on_membership,
    )
    shell = Shell(replica, store, machine, executor, changes)
    task = asyncio.create_task(replica.run())
    try:
        if alone:
            assert await replica.wait_for_leader(3.0) == N1
        yield shell
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await loop.run_in_executor(executor, store.close)
        executor.shutdown()


def _put(key: str, value: str) -> bytes:
    return encode_kv(PutValue(key=key, value=value))


async def test_proposals_queued_together_share_one_write(tmp_path: Path) -> None:
    async with running_shell(tmp_path / "n1.db") as shell:
        before = len(shell.store.batches)
        results = await asyncio.gather(
            *(shell.replica.propose(_put(f"k{i}", "v")) for i in range(50))
        )
        assert all(isinstance(result, KvPut) for result in results)
        entry_writes = [b for b in shell.store.batches[before:] if b.entries]
        assert sum(len(b.entries) for b in entry_writes) == 50
        assert len(entry_writes) < 50  # group commit: queued proposals ride one fsync


async def test_the_commit_index_is_deferred_then_flushed_when_idle(tmp_path: Path) -> None:
    async with running_shell(tmp_path / "n1.db") as shell:
        result = await shell.replica.propose(_put("k", "v"))
        assert isinstance(result, KvPut)
        index = result.index
        # The write that made the entry durable did not carry its commit: that Ready only
        # moved the commit index (must_sync false) and was deferred.
        carrying = [b for b in shell.store.batches if b.entries and b.entries[-1].index == index]
        assert carrying
        assert carrying[-1].hard_state is None or carrying[-1].hard_state.commit < index

        # The idle flush writes it, with the applied state it covers, within about a second.
        def flushed() -> bool:
            return any(
                b.applied_index == index
                and b.hard_state is not None
                and b.hard_state.commit >= index
                for b in shell.store.batches
            )

        await shell.changes.until(flushed, seconds=3.0)
        stored = await shell.on_store_thread(shell.store.load)
        assert stored.applied_index == index
        assert stored.hard_state.commit >= stored.applied_index
        assert "naraft.kv.k" in stored.datums


async def test_a_restart_finds_every_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "n1.db"
    async with running_shell(path) as shell:
        for i in range(5):
            await shell.replica.propose(_put("k", f"v{i}"))
    # The clean stop wrote what was deferred; the restarted node applies nothing twice.
    async with running_shell(path) as shell:
        datum = shell.machine.datums.get("naraft.kv.k")
        assert datum is not None
        assert datum.value == b"v4"
        stored = await shell.on_store_thread(shell.store.load)
        assert stored.hard_state.commit >= stored.applied_index


async def test_a_full_disk_fails_the_write_as_unknown_and_the_batch_is_retried(
    tmp_path: Path,
) -> None:
    async with running_shell(tmp_path / "n1.db") as shell:
        await shell.changes.until(
            lambda: shell.replica.status.commit_index >= 1
        )  # the leader's no-op
        shell.store.full_times = 2
        with pytest.raises(OutcomeUnknownError):
            await shell.replica.propose(_put("k", "lost?"))
        # The same batch is written again once space is back: the write applies after all.
        await shell.changes.until(
            lambda: shell.replica.disk_full is None and shell.store.refused == 2
        )
        await shell.changes.until(lambda: shell.machine.datums.get("naraft.kv.k") is not None)
        result = await shell.replica.propose(_put("k", "after"))
        assert isinstance(result, KvPut)


async def test_a_repair_install_is_written_at_the_applied_index(tmp_path: Path) -> None:
    async with running_shell(tmp_path / "n1.db") as shell:
        result = await shell.replica.propose(_put("k", "v"))
        assert isinstance(result, KvPut)

        def build(core: RaftCore) -> SnapshotMeta | None:
            shell.machine.datums.put("naraft.kv.repaired", b"yes", core.applied_index)
            term = core.term_at(core.applied_index)
            assert term is not None
            return SnapshotMeta(index=core.applied_index, term=term)

        point = await shell.replica.install_state(build, reset_log=False)
        assert point is not None
        stored = await shell.on_store_thread(shell.store.load)
        assert stored.datums["naraft.kv.repaired"].value == b"yes"
        assert stored.applied_index == point.index
        assert stored.hard_state.commit >= stored.applied_index
        assert await shell.replica.install_state(lambda _core: None, reset_log=False) is None


class SentTo:
    """Records who the replica sends to (a learner gets appends, never votes)."""

    def __init__(self) -> None:
        self.recipients: set[NodeId] = set()

    def send(self, envelope: Envelope) -> None:
        self.recipients.add(envelope.recipient)


async def test_a_membership_change_commits_applies_and_is_heard(tmp_path: Path) -> None:
    heard: list[Membership] = []
    sent = SentTo()
    async with running_shell(tmp_path / "n1.db", peers=sent, on_membership=heard.append) as shell:
        learner = NodeId("n2")
        result = await shell.replica.propose_membership(
            MembershipChange(ChangeKind.ADD_LEARNER, learner)
        )
        # a lone voter commits alone: the learner does not count
        assert result == Membership.of(["n1"], ["n2"])
        assert heard == [Membership.of(["n1"], ["n2"])]
        assert shell.machine.membership() == Membership.of(["n1"], ["n2"])
        await shell.changes.until(lambda: learner in sent.recipients)
        with pytest.raises(MembershipError, match="is a member already"):
            await shell.replica.propose_membership(
                MembershipChange(ChangeKind.ADD_LEARNER, learner)
            )
        with pytest.raises(MembershipError, match="not a member"):
            await shell.replica.propose_membership(
                MembershipChange(ChangeKind.REMOVE, NodeId("n9"))
            )
        await shell.replica.propose_membership(MembershipChange(ChangeKind.REMOVE, learner))
        assert heard[-1] == Membership.of(["n1"])
        assert shell.replica.status.membership == Membership.of(["n1"])


class StoredWhenSent:
    """A learner that acknowledges every append at once, and records, for every entry an
    append carries, whether the leader's store had written it when it was sent."""

    def __init__(self) -> None:
        self.store: RecordingStore | None = None
        self.replica: Replica | None = None
        self.entries_sent: list[tuple[int, bool]] = []

    def send(self, envelope: Envelope) -> None:
        message = envelope.message
        if not isinstance(message, AppendEntries) or self.store is None or self.replica is None:
            return
        stored = {e.index for b in self.store.batches for e in b.entries}
        self.entries_sent += [(e.index, e.index in stored) for e in message.entries]
        last = message.entries[-1].index if message.entries else message.prev_log_index
        reply = AppendReply(term=message.term, success=True, match_index=last)
        self.replica.deliver(Envelope(envelope.recipient, envelope.sender, reply))


async def test_a_leaders_appends_leave_before_its_own_write(tmp_path: Path) -> None:
    """docs/conventions.md#the-ready-contract: a leader's replication is `messages_first`,
    so the shell hands it to the peers before the write that makes it durable here."""
    learner = StoredWhenSent()
    async with running_shell(tmp_path / "n1.db", peers=learner) as shell:
        learner.store, learner.replica = shell.store, shell.replica
        await shell.replica.propose_membership(
            MembershipChange(ChangeKind.ADD_LEARNER, NodeId("n2"))
        )
        for number in range(5):
            await shell.replica.propose(_put(f"k{number}", "v"))
        await shell.changes.until(lambda: len(learner.entries_sent) >= 5)
        assert any(not stored for _, stored in learner.entries_sent), learner.entries_sent


async def test_a_write_and_a_read_no_quorum_answers_fail_once_their_time_is_up(
    tmp_path: Path,
) -> None:
    """A voter that never answers: the promotion, a put and a read each fail within a tick of
    the proposal timeout, each with its own error (the write's outcome is unknown: it is in
    the log; the read is simply unavailable). The election timeout (5 ticks of 0.2 s) is
    longer, so the leader does not step down first."""
    timings = ReplicaTimings(tick_seconds=0.2, proposal_timeout_seconds=0.3, leader_wait_seconds=3)
    silent = SentTo()
    async with running_shell(tmp_path / "n1.db", peers=silent, timings=timings) as shell:
        replica, voter = shell.replica, NodeId("n2")
        await replica.propose_membership(MembershipChange(ChangeKind.ADD_LEARNER, voter))
        loop = asyncio.get_running_loop()
        started = loop.time()
        promote, put, read = await asyncio.gather(  # in use at once: n2's vote is needed
            replica.propose_membership(MembershipChange(ChangeKind.PROMOTE, voter)),
            replica.propose(_put("k", "v")),
            replica.read_barrier(),
            return_exceptions=True,
        )
        took = loop.time() - started
        assert isinstance(promote, OutcomeUnknownError), promote
        assert isinstance(put, OutcomeUnknownError), put
        assert "no commit within 0.3s" in str(put)
        assert isinstance(read, UnavailableError), read
        assert "no quorum confirmed the read" in str(read)
        assert 0.3 <= took <= 0.3 + 2 * timings.tick_seconds + 0.2, took
        assert replica.status.role.name == "LEADER"  # failed by the timeout, not a step-down


def _append(prev: int, commands: tuple[bytes, ...], commit: int) -> Envelope:
    entries = tuple(Entry(Term(1), Index(prev + i + 1), c) for i, c in enumerate(commands))
    message = AppendEntries(
        term=Term(1),
        prev_log_index=Index(prev),
        prev_log_term=Term(1 if prev else 0),
        entries=entries,
        leader_commit=Index(commit),
    )
    return Envelope(N2, N1, message)


async def test_a_local_read_waits_for_the_commits_the_node_has_heard_of(tmp_path: Path) -> None:
    """The commit of a write the leader has answered reaches a follower while its driver is
    busy: a local read that arrives then waits for the apply instead of answering the state
    before the write."""
    async with running_shell(tmp_path / "n1.db", peers=SentTo(), voters=(N1, N2)) as shell:
        replica = shell.replica
        replica.deliver(_append(0, (_put("k", "v1"),), commit=1))
        assert read_value(shell.machine.datums, "k") is None  # the driver has not run yet
        await replica.local_read_point()
        datum = read_value(shell.machine.datums, "k")
        assert datum is not None
        assert datum.value == b"v1"
        assert replica.status.role is Role.FOLLOWER


async def test_a_local_read_waits_for_a_commit_that_came_in_the_same_loop_turn(
    tmp_path: Path,
) -> None:
    """The notice and the read arrive in one poll, the read's task scheduled first and the
    notice delivered right after it in the same turn: the read still waits for the apply."""
    async with running_shell(tmp_path / "n1.db", peers=SentTo(), voters=(N1, N2)) as shell:
        replica = shell.replica
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(replica.local_read_point())  # scheduled first
            asyncio.get_running_loop().call_soon(
                replica.deliver, _append(0, (_put("k", "v1"),), commit=1)
            )
        datum = read_value(shell.machine.datums, "k")
        assert datum is not None
        assert datum.value == b"v1"


async def test_a_local_read_waits_for_no_commit_the_node_cannot_reach(tmp_path: Path) -> None:
    """An entry the follower does not hold (its log ends before it) cannot apply: the read
    answers after the bound, and at once when nothing newer was heard."""
    async with running_shell(tmp_path / "n1.db", peers=SentTo(), voters=(N1, N2)) as shell:
        replica, loop = shell.replica, asyncio.get_running_loop()
        started = loop.time()
        await replica.local_read_point()
        assert loop.time() - started < LOCAL_READ_WAIT_SECONDS
        replica.deliver(_append(5, (_put("k", "v1"),), commit=6))  # a gap: refused
        started = loop.time()
        await replica.local_read_point()
        waited = loop.time() - started
        assert LOCAL_READ_WAIT_SECONDS <= waited < LOCAL_READ_WAIT_SECONDS + 1.0, waited
        assert replica.status.applied_index == 0


async def test_a_proposal_refused_by_a_leader_stepping_down_names_the_next_one(
    tmp_path: Path,
) -> None:
    """N1 leads; a vote of a later term (N2 campaigns, as when N1 hands over) reaches it just
    before a proposal. Nothing was appended: the proposal waits for the next leader and
    names it (HandedOverError), so that the API forwards it, even a request already
    forwarded to N1, instead of answering 'no leader'."""
    async with running_shell(tmp_path / "n1.db", peers=SentTo(), voters=(N1, N2)) as shell:
        replica = shell.replica
        replica.campaign()
        await shell.changes.until(lambda: replica.status.role is Role.CANDIDATE)
        replica.deliver(Envelope(N2, N1, VoteReply(term=Term(1), granted=True)))
        assert await replica.wait_for_leader(3.0) == N1
        vote = RequestVote(
            term=Term(2), last_log_index=Index(1), last_log_term=Term(1), transfer=True
        )
        replica.deliver(Envelope(N2, N1, vote))
        proposal = asyncio.create_task(replica.propose(_put("k", "v")))
        await shell.changes.until(lambda: replica.status.role is Role.FOLLOWER)
        assert not proposal.done()  # it waits for the next leader, not 'no leader'
        replica.deliver(_leader_beat(term=2))
        with pytest.raises(HandedOverError) as caught:
            await asyncio.wait_for(proposal, 3.0)
        assert caught.value.leader_hint == N2


def _leader_beat(term: int) -> Envelope:
    return Envelope(N2, N1, Heartbeat(term=Term(term), leader_commit=Index(0)))
