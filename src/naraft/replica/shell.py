"""The IO shell around one RaftCore: ticker, inbox, store thread, futures, disk-full backoff.

What to write, when, and what applying a Ready produces is decided by the synchronous
`ReadyHandler` (`naraft.replica.handler`), which the simulator drives too; this module only
carries its decisions out.

One asyncio task (the driver) owns the core; ticks, peer messages, proposals and read
requests all arrive through its inbox (docs/conventions.md#the-async-shell). Storage runs on
one dedicated thread that owns the database connection. Every Ready is one durable write made before
any of its messages leave, except a leader's replication, which the core marks
`messages_first` and which leaves while the leader's own write runs (group commit: whatever
queued while the previous write was in progress goes into the next one).

The ports it needs are defined here, by their consumer: `LogStore`, `PeerSender`,
`StateMachine`. A storage error or a broken core invariant ends the node (fail-stop),
except a full disk: then the driver holds the Ready it could not write and writes the same
batch again every second until space is freed (to the rest of the cluster the node is just
very slow, which Raft tolerates). Meanwhile proposals and linearizable reads fail at once
with `DiskFullError`, peer messages and ticks are dropped (a lossy network, which Raft also
tolerates), and the applied state keeps serving local reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from naraft.errors import (
    DiskFullError,
    OutcomeUnknownError,
    ProposalDroppedError,
    UnavailableError,
)
from naraft.raft import (
    AppendEntries,
    Envelope,
    HandedOverError,
    Heartbeat,
    Index,
    LeadershipTransferringError,
    NodeId,
    NotLeaderError,
    RaftCore,
    RaftError,
    ReadState,
    Role,
    RoleChange,
    SnapshotMeta,
    Status,
    TransferError,
)
from naraft.raft.membership import Membership, MembershipChange, MembershipError
from naraft.replica.handler import Applied, ReadyHandler, StateMachine
from naraft.state.datums import DatumChanges, right_sized
from naraft.storage.base import StoredState, StoreError, StoreFullError, WriteBatch

logger = logging.getLogger(__name__)


class LogStore(Protocol):
    """Durable storage, used from the replica's storage thread only."""

    def load(self) -> StoredState: ...

    def write(self, batch: WriteBatch) -> None: ...

    def close(self) -> None: ...


class PeerSender(Protocol):
    def send(self, envelope: Envelope) -> None:
        """Queue `envelope` for delivery; never blocks, may silently lose it."""
        ...


class ReplicaObserver(Protocol):
    """What the node wants to hear about (metrics, logs, change feeds)."""

    def on_role_change(self, change: RoleChange) -> None: ...

    def on_persisted(self, seconds: float, entries: int) -> None: ...

    def on_committed(self, seconds: float) -> None: ...


class _NoObserver:
    def on_role_change(self, change: RoleChange) -> None:
        pass

    def on_persisted(self, seconds: float, entries: int) -> None:
        pass

    def on_committed(self, seconds: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Proposal:
    command: bytes
    future: asyncio.Future[object]
    started: float
    change: MembershipChange | None = None  # a membership change instead of `command`


@dataclass(frozen=True, slots=True)
class _Read:
    future: asyncio.Future[Index]


@dataclass(frozen=True, slots=True)
class _Call:
    """Run `action(core)` on the driver task (the named operations below)."""

    action: Callable[[RaftCore], object]


@dataclass(frozen=True, slots=True)
class _Job:
    """Run `job()` on the driver task between two Readies (no Ready in flight), awaiting it;
    its outcome goes to `future`."""

    job: Callable[[], Awaitable[object]]
    future: asyncio.Future[object]


_Event = _Tick | Envelope | _Proposal | _Read | _Call | _Job

_TICK = _Tick()
_MAX_EVENTS_PER_CYCLE = 4096
_FULL_RETRY_FIRST_SECONDS = 0.05  # a full disk: the first retry of the same batch, doubling to
_FULL_RETRY_MAX_SECONDS = 1.0
_FULL_REMINDER_SECONDS = 30.0  # while the disk stays full, say so again this often
LOCAL_READ_WAIT_SECONDS = 0.05  # the longest a local read waits for commits already heard of
_IDLE_FLUSH_SECONDS = 1.0  # the longest the commit index and applied state stay unwritten


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaTimings:
    tick_seconds: float = 0.1
    proposal_timeout_seconds: float = 5.0  # a write waits this long for its commit
    leader_wait_seconds: float = 3.0  # a write with no leader known waits this long for one


@dataclass(frozen=True, slots=True, kw_only=True)
class CompactionPolicy:
    """Compact once the log after the snapshot holds more than `max_log_entries`, through
    the applied index minus `keep_entries` (a tail for briefly-lagging followers)."""

    max_log_entries: int = 10_000
    keep_entries: int = 2_000

    def __post_init__(self) -> None:
        if self.max_log_entries < 1 or self.keep_entries < 0:
            raise ValueError(f"compaction policy out of range: {self}")


class Replica:
    """Drives one RaftCore; see the module docstring."""

    def __init__(
        self,
        core: RaftCore,
        *,
        store: LogStore,
        store_executor: ThreadPoolExecutor,
        peers: PeerSender,
        state_machine: StateMachine,
        timings: ReplicaTimings,
        observer: ReplicaObserver | None = None,
        on_snapshot_needed: Callable[[SnapshotMeta, NodeId | None], None] | None = None,
        compaction: CompactionPolicy | None = None,
        on_applied: Callable[[DatumChanges, Index], None] | None = None,
        on_installed: Callable[[DatumChanges], None] | None = None,
        on_membership: Callable[[Membership], None] | None = None,
    ) -> None:
        """`on_membership` hears the core's configuration each time it changes (on the
        driver, after the Ready that appended, truncated or installed it)."""
        self._core = core
        self._store = store
        self._executor = store_executor
        self._peers = peers
        self._timings = timings
        self._observer = observer or _NoObserver()
        self._on_snapshot_needed = on_snapshot_needed
        self._compaction = compaction
        self._on_applied = on_applied  # the drained changes and the index they bring us to
        self._on_installed = on_installed  # datums replaced without entries (install_state)
        self._on_membership = on_membership
        self._membership = core.membership  # the one `on_membership` last heard
        self._loop = asyncio.get_running_loop()
        applied_term = core.term_at(core.applied_index)
        status = core.status()
        self._handler = ReadyHandler(
            state_machine,
            applied_term=applied_term if applied_term is not None else core.snapshot.term,
            now=self._loop.time(),
            idle_flush_after=_IDLE_FLUSH_SECONDS,
        )
        self._inbox: asyncio.Queue[_Event] = asyncio.Queue()
        self._waiting: dict[Index, tuple[int, asyncio.Future[object], float]] = {}
        self._reads: dict[int, asyncio.Future[Index]] = {}
        # every proposal's and read's future with its deadline, in order: they all wait the
        # same proposal timeout, so the ticker expires them from the left (`_expire`)
        self._deadlines: deque[tuple[float, asyncio.Future[Any], bool]] = deque()
        self._read_ids = itertools.count(1)
        self._applied_waiters: list[tuple[Index, asyncio.Future[None]]] = []
        self._leader_known = asyncio.Event()
        self._heard_commit = 0  # the highest commit index a peer message has told us of
        self._status_refreshed = asyncio.Event()  # set whenever `_status` is taken anew
        self._last_heard: dict[NodeId, float] = {}  # loop time of the last message per peer
        self._status: Status = status
        self._disk_full: StoreFullError | None = None  # set while a write waits for space
        self.dropped_while_full = 0  # peer messages dropped while the disk was full
        if core.leader is not None:
            self._leader_known.set()

    # ------------------------------------------------------------------ views

    @property
    def status(self) -> Status:
        """The core's status as of the end of the last driver cycle."""
        return self._status

    @property
    def id(self) -> NodeId:
        return self._status.id

    @property
    def leader(self) -> NodeId | None:
        return self._status.leader

    @property
    def is_leader(self) -> bool:
        return self._status.role is Role.LEADER

    @property
    def applied(self) -> SnapshotMeta:
        """The index and term of the last applied entry: the state machine is exactly there at
        every await point (apply and advance happen in one step of the driver)."""
        return SnapshotMeta(index=self._core.applied_index, term=self._handler.applied_term)

    @property
    def disk_full(self) -> str | None:
        """Why writes are refused (the store's one-line error), or None when the disk is fine."""
        return None if self._disk_full is None else str(self._disk_full)

    def _refuse_if_full(self) -> None:
        if self._disk_full is not None:
            raise DiskFullError(
                f"{self._disk_full}; this node takes no writes until space is freed"
                " (local reads are still served); nothing was applied"
            )

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled. A storage error or broken invariant ends it (fail-stop).

        A clean stop (cancellation) first writes the commit index and applied state that
        were still deferred, so a restarted node starts where this one stopped."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._tick_forever(), name="raft-ticker")
                tasks.create_task(self._drive_forever(), name="raft-driver")
        except asyncio.CancelledError:
            await self._write_deferred_on_stop()
            raise
        finally:
            # Waiting proposals are in the log and may already be on a majority: the next
            # leader can still commit them, so their outcome is unknown, not "not applied".
            stopping = OutcomeUnknownError(
                "the node is shutting down; the write may or may not apply"
            )
            self._fail_all(stopping)
            # and what the driver never took from its inbox: no tick will expire it now
            for _deadline, future, read in self._deadlines:
                if not future.done():
                    future.set_exception(UnavailableError(str(stopping)) if read else stopping)
            self._deadlines.clear()

    async def _write_deferred_on_stop(self) -> None:
        """One attempt, no waiting out a full disk: a restart replays what this misses."""
        if not self._handler.has_deferred():
            return
        batch = self._handler.applied_batch(self._core.applied_index)
        try:
            await self._loop.run_in_executor(self._executor, self._store.write, batch)
        except StoreError as error:
            logger.warning("the deferred applied state was not written at stop: %s", error)

    async def _tick_forever(self) -> None:
        interval = self._timings.tick_seconds
        next_at = self._loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - self._loop.time()))
            self._expire(self._loop.time())
            if self._disk_full is None:  # a stalled driver would find a burst of ticks
                self._inbox.put_nowait(_TICK)

    def _waits(self, future: asyncio.Future[Any], *, read: bool) -> None:
        """`future` fails if it is not done within the proposal timeout (checked each tick:
        one deque for all, instead of a timer per request)."""
        deadline = self._loop.time() + self._timings.proposal_timeout_seconds
        self._deadlines.append((deadline, future, read))

    def _expire(self, now: float) -> None:
        """Fail the proposals and reads whose time is up; forget those already answered."""
        deadlines = self._deadlines
        while deadlines:
            deadline, future, read = deadlines[0]
            if not future.done():
                if deadline > now:
                    return
                seconds = self._timings.proposal_timeout_seconds
                future.set_exception(
                    UnavailableError("no quorum confirmed the read in time")
                    if read
                    else OutcomeUnknownError(
                        f"no commit within {seconds:g}s; the write may or may not be applied"
                    )
                )
            deadlines.popleft()

    async def _drive_forever(self) -> None:
        while True:
            event = await self._inbox.get()
            handled = 1
            while True:
                if isinstance(event, _Job):
                    await self._flush()
                    await self._run_job(event)
                else:
                    self._handle(event)
                if self._inbox.empty() or handled >= _MAX_EVENTS_PER_CYCLE:
                    break
                event = self._inbox.get_nowait()
                handled += 1
            await self._flush()
            await self._maybe_compact()
            await self._flush_idle()

    async def _run_job(self, event: _Job) -> None:
        try:
            result = await event.job()
        except Exception as error:
            # A job changes durable or applied state: a failure half-way is fail-stop.
            if not event.future.done():
                event.future.set_exception(error)
            raise
        if not event.future.done():
            event.future.set_result(result)
        self._refresh_status()

    # ------------------------------------------------------------------ inputs

    def deliver(self, envelope: Envelope) -> None:
        """Called by the transport for every message that arrives from a peer."""
        self._last_heard[envelope.sender] = self._loop.time()
        if self._disk_full is not None:  # the driver is stalled: do not let the inbox grow
            self.dropped_while_full += 1
            return
        message = envelope.message
        if isinstance(message, AppendEntries):
            # what this message lets us commit: never past the entries it brings
            heard = min(message.leader_commit, message.prev_log_index + len(message.entries))
            if heard > self._heard_commit:
                self._heard_commit = heard
        elif isinstance(message, Heartbeat) and message.leader_commit > self._heard_commit:
            self._heard_commit = message.leader_commit  # the leader sends at most what we hold
        self._inbox.put_nowait(envelope)

    async def local_read_point(self) -> None:
        """Return once this node has applied every commit index it has been told of, or
        after `LOCAL_READ_WAIT_SECONDS` (a local read is served then, stale or not).

        A follower hears the commit of a write the leader has already answered a moment
        before it applies it: the message waits in the inbox while the driver finishes the
        store write in hand. A local read that came in meanwhile would show the state before
        that write. Nothing waits when the node is up to date, and never when its disk is
        full (the driver is stalled). It is no guarantee: a notice still on its way is not
        waited for (docs/consistency.md).

        A follower first lets the loop finish its turn: when the notice and the read came in
        the same poll, the read's task may have been scheduled before the peer stream's, and
        the notice is then delivered right after this yield. (One loop turn a local read on
        a follower: it took the share of stale first reads after a write from 8-14 % to
        1.6-4.8 %, `benchmarks/follower_reads.py`, at no measurable cost per list.)"""
        if self._status.role is not Role.LEADER:
            await asyncio.sleep(0)
        heard = self._heard_commit
        if heard <= self._status.applied_index or self._disk_full is not None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOCAL_READ_WAIT_SECONDS):
                await self.wait_applied(Index(heard))

    def silent_for(self, peer: NodeId) -> float:
        """Seconds since the last message from `peer` arrived (inf if never)."""
        heard = self._last_heard.get(peer)
        return float("inf") if heard is None else self._loop.time() - heard

    def forget_leader(self) -> None:
        """The leader's port refused a connection: its process is gone. The core forgets it
        and draws a random delay (every follower saw the same refusal at the same instant:
        campaigning at once splits the vote); the PreVote starts when that delay has passed,
        with sub-tick resolution, not at the next tick."""
        self._inbox.put_nowait(_Call(self._forget_leader))

    def _forget_leader(self, core: RaftCore) -> None:
        delay_ticks = core.forget_leader()
        if delay_ticks is not None:
            self._loop.call_later(
                delay_ticks * self._timings.tick_seconds,
                self._inbox.put_nowait,
                _Call(RaftCore.hurry_election),
            )

    def campaign(self) -> None:
        """Start an election now (leadership transfer, tests)."""
        self._inbox.put_nowait(_Call(RaftCore.campaign))

    def snapshot_failed(self) -> None:
        """The catch-up the core asked for (`on_snapshot_needed`) did not happen: the core
        forgets it, and asks again when the leader's next message shows it still lags."""
        self._inbox.put_nowait(_Call(RaftCore.snapshot_failed))

    async def transfer_leadership(self, target: NodeId | None = None) -> NodeId:
        """Hand leadership over to `target` (default: the peer with the longest matching
        log, among those heard recently) and return the new leader once this node knows it.

        Raises NotLeaderError on a node that does not lead, TransferError for a target that
        is not a member, UnavailableError when no hand-over happened within three election
        timeouts (the core gives up after two: the target is down or cut off, and this node
        leads on)."""
        status = self._status
        if status.role is not Role.LEADER:
            raise NotLeaderError(status.leader)
        chosen = target if target is not None else _most_caught_up(status)
        if chosen == status.id:
            return chosen
        if chosen not in status.peers:
            raise TransferError(f"{chosen} is not a voting member of this cluster")
        started: asyncio.Future[None] = self._loop.create_future()

        def start(core: RaftCore) -> None:
            try:
                core.transfer_leadership(chosen)
            except RaftError as error:  # leadership moved on before the driver got here
                started.set_exception(error)
            else:
                started.set_result(None)

        self._inbox.put_nowait(_Call(start))
        await started
        election_seconds = self._core.config.election_ticks * self._timings.tick_seconds
        status = self._status
        try:
            async with asyncio.timeout(3 * election_seconds):
                await self._next_status()  # one that shows the hand-over begun
                while True:
                    status = self._status
                    if status.leader is not None and status.leader != status.id:
                        return status.leader
                    if status.leader == status.id and status.transferee is None:
                        break  # abandoned: the target did not catch up or campaign in time
                    self._leader_known.clear()
                    await self._leader_known.wait()
        except TimeoutError:
            pass
        raise UnavailableError(f"leadership did not move to {chosen}; {status.leader} leads")

    async def propose(self, command: bytes) -> object:
        """Replicate `command`; return what the state machine returned when applying it.

        Raises NotLeaderError (nothing was appended: safe to forward or retry),
        ProposalDroppedError (appended, then lost to another leader: not applied),
        OutcomeUnknownError (appended, but no answer in time: it may still commit),
        DiskFullError (this node's disk is full: nothing was appended).

        A proposal that arrives while this leader hands over waits for the hand-over: it
        is appended here if the hand-over is abandoned, or answered NotLeaderError naming
        the new leader (where the API forwards it).
        """
        self._refuse_if_full()
        await self._await_leader()
        return await self._propose_as_leader(right_sized(command))  # held in the log

    async def propose_membership(self, change: MembershipChange) -> object:
        """Make `change` to the cluster's configuration and wait until it is applied here.

        Raises as `propose` does, and `MembershipError` when the core refuses the change
        (another is in flight, no entry of this term has committed, or it cannot be made):
        nothing was appended."""
        self._refuse_if_full()
        await self._await_leader()
        return await self._propose_as_leader(b"", change)

    async def _propose_as_leader(
        self, command: bytes, change: MembershipChange | None = None
    ) -> object:
        """Propose on this node, which the status says leads. The core may have stopped
        leading meanwhile: it is handing over (the proposal waits for the hand-over), or a
        vote of a later term has just made it a follower (a hand-over it started, an
        election). Either way nothing was appended: once the next leader is known, the
        proposal is made here if that is this node, else HandedOverError names it (the API
        forwards the request there, even one already forwarded here)."""
        try:
            return await self._propose_here(command, change)
        except LeadershipTransferringError:
            leader = await self._wait_hand_over()
        except NotLeaderError as error:
            leader = error.leader_hint
            if leader is None:
                await self._next_status()  # the status said this node led: one newer than that
                leader = await self.wait_for_leader(self._timings.leader_wait_seconds)
            if leader is None:
                raise
        if leader != self._status.id:
            raise HandedOverError(leader)
        return await self._propose_here(command, change)

    async def _wait_hand_over(self) -> NodeId | None:
        """The leader once the hand-over in progress has ended (None if none is known)."""
        election_seconds = self._core.config.election_ticks * self._timings.tick_seconds
        try:
            async with asyncio.timeout(3 * election_seconds):
                await self._next_status()  # one that shows the hand-over the core refused for
                while (status := self._status).transferee is not None or status.leader is None:
                    self._leader_known.clear()
                    await self._leader_known.wait()
        except TimeoutError:
            pass
        return self._status.leader

    async def _propose_here(self, command: bytes, change: MembershipChange | None = None) -> object:
        future: asyncio.Future[object] = self._loop.create_future()
        self._inbox.put_nowait(_Proposal(command, future, self._loop.time(), change))
        self._waits(future, read=False)
        return await future  # OutcomeUnknownError when the timeout passes (`_expire`)

    async def read_barrier(self) -> None:
        """Return once this node has applied everything committed when this was called,
        confirmed by a majority (read index, Raft §6.4). Raises NotLeaderError on a
        follower (the caller forwards to the leader), DiskFullError while this node's disk is
        full on a node that is not a follower of a known leader."""
        status = self._status
        if self._disk_full is not None and status.role is Role.FOLLOWER and status.leader:
            raise NotLeaderError(status.leader)  # the leader can still confirm the read
        self._refuse_if_full()
        await self._await_leader()
        future: asyncio.Future[Index] = self._loop.create_future()
        self._inbox.put_nowait(_Read(future))
        self._waits(future, read=True)
        index = await future  # UnavailableError when the timeout passes (`_expire`)
        await self.wait_applied(index)

    async def wait_applied(self, index: Index) -> None:
        if self._status.applied_index >= index:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._applied_waiters.append((index, waiter))
        await waiter

    async def wait_for_leader(self, timeout_seconds: float) -> NodeId | None:
        """The leader once one is known, or None after `timeout_seconds`."""
        try:
            async with asyncio.timeout(timeout_seconds):
                while self._status.leader is None:
                    self._leader_known.clear()
                    await self._leader_known.wait()
        except TimeoutError:
            return None
        return self._status.leader

    async def wait_for_new_leader(self, old: str, timeout_seconds: float) -> str | None:
        """The first leader other than `old` (e.g. one that died), or None after
        `timeout_seconds`. Checked after every driver cycle."""
        try:
            async with asyncio.timeout(timeout_seconds):
                while self._status.leader is None or self._status.leader == old:
                    self._leader_known.clear()
                    await self._leader_known.wait()
        except TimeoutError:
            return None
        return self._status.leader

    async def wait_for_status(
        self, holds: Callable[[Status], bool], timeout_seconds: float
    ) -> Status | None:
        """The first status (checked now, then after every driver cycle) for which `holds`
        is true, or None after `timeout_seconds`."""
        status = self._status
        try:
            async with asyncio.timeout(timeout_seconds):
                while not holds(status):
                    status = await self._next_status()
        except TimeoutError:
            return None
        return status

    async def _await_leader(self) -> None:
        if self._status.leader is None:
            leader = await self.wait_for_leader(self._timings.leader_wait_seconds)
            if leader is None:
                raise NotLeaderError(None)
        if self._status.leader != self._status.id:
            raise NotLeaderError(self._status.leader)

    # ------------------------------------------------------------------ driver

    def _handle(self, event: _Event) -> None:
        core = self._core
        match event:
            case _Tick():
                core.tick()
            case Envelope():
                core.step(event)
            case _Proposal():
                if event.future.done():
                    return
                try:
                    if event.change is not None:
                        index = core.propose_membership(event.change)
                    else:
                        index = core.propose(event.command)
                except (NotLeaderError, MembershipError) as error:
                    event.future.set_exception(error)
                    return
                self._waiting[index] = (core.term, event.future, event.started)
            case _Read():
                request_id = next(self._read_ids)
                try:
                    core.read_index(request_id)
                except NotLeaderError as error:
                    event.future.set_exception(error)
                    return
                self._reads[request_id] = event.future
            case _Call():
                event.action(core)

    async def _flush(self) -> None:
        core = self._core
        handler = self._handler
        while core.has_ready():
            ready = core.ready()
            if ready.messages_first:  # a leader's replication overlaps its own fsync
                for envelope in ready.messages:
                    self._peers.send(envelope)
            batch = handler.batch_for(ready, core.applied_index)
            if batch is not None and not batch.is_empty:
                started = self._loop.time()
                await self._write(batch)
                self._observer.on_persisted(self._loop.time() - started, len(ready.entries))
            if not ready.messages_first:
                for envelope in ready.messages:
                    self._peers.send(envelope)
            self._deliver_applied(handler.apply(ready))
            self._answer_reads(ready.read_states, ready.dropped_reads)
            if ready.role_change is not None:
                self._on_role_change(ready.role_change)
            if ready.snapshot_to_fetch is not None and self._on_snapshot_needed is not None:
                self._on_snapshot_needed(ready.snapshot_to_fetch, core.leader)
            core.advance(ready)
        self._refresh_status()
        if self._status.leader is not None:
            self._leader_known.set()
        self._wake_applied_waiters()

    async def _flush_idle(self) -> None:
        """Write the deferred commit index and applied state once no write carried them for
        `_IDLE_FLUSH_SECONDS` (driver, between Readies): it bounds what a restart replays."""
        batch = self._handler.idle_batch(self._core.applied_index, self._loop.time())
        if batch is not None:
            started = self._loop.time()
            await self._write(batch)
            self._observer.on_persisted(self._loop.time() - started, 0)

    async def _write(self, batch: WriteBatch) -> None:
        """Write `batch` durably on the storage thread (driver only).

        A full disk is waited out: the same batch is tried again, backing off to once a second,
        until it fits (a `StoreFullError` means nothing of it was stored). Any other store
        error propagates and ends the node."""
        delay = _FULL_RETRY_FIRST_SECONDS
        full_since = reminded_at = self._loop.time()
        while True:
            try:
                await self._loop.run_in_executor(self._executor, self._store.write, batch)
            except StoreFullError as error:
                now = self._loop.time()
                if self._disk_full is None:
                    self._disk_full = error
                    full_since = reminded_at = now
                    logger.error(
                        "%s; refusing writes and serving reads until space is freed", error
                    )
                    # What waits may be in an earlier, durable batch or in this one (which
                    # will be written once space is back): it may still commit.
                    self._fail_all(
                        OutcomeUnknownError(
                            "the disk filled while the write was in flight; it may apply "
                            "once space is freed"
                        )
                    )
                elif now - reminded_at >= _FULL_REMINDER_SECONDS:  # one line, not a flood
                    reminded_at = now
                    logger.error("the disk is still full after %.0f s: %s", now - full_since, error)
                await asyncio.sleep(delay)
                delay = min(2 * delay, _FULL_RETRY_MAX_SECONDS)
                continue
            if self._disk_full is not None:
                logger.warning(
                    "space is back (%d peer messages dropped meanwhile); taking writes again",
                    self.dropped_while_full,
                )
                self._disk_full = None
            self._handler.written(batch, self._loop.time())
            return

    async def _write_applied(self, snapshot: SnapshotMeta | None = None) -> None:
        """Durably write the pending datum changes and the applied index (driver only)."""
        batch = self._handler.applied_batch(self._core.applied_index, snapshot)
        started = self._loop.time()
        await self._write(batch)
        self._observer.on_persisted(self._loop.time() - started, 0)

    async def _exclusive(self, job: Callable[[], Awaitable[object]]) -> object:
        future: asyncio.Future[object] = self._loop.create_future()
        self._inbox.put_nowait(_Job(job, future))
        return await future

    def add_drain_point(self, index: Index) -> None:
        """Report the applied state (`on_applied`) exactly at `index` when it gets there, even
        in the middle of a batch of committed entries (a checksum comparison point)."""
        if index > self._core.applied_index:
            self._handler.add_drain_point(index)

    async def install_state(
        self, build: Callable[[RaftCore], SnapshotMeta | None], *, reset_log: bool
    ) -> SnapshotMeta | None:
        """Replace the applied state, on the driver, durably; None if `build` declined.

        `build(core)` runs on the driver with no Ready in flight. It changes the state
        machine's datums in place (the replica drains those changes) and returns the point the
        state is now at, or None to change nothing (it may not fit the core any more).

        - `reset_log` (digest catch-up): the state is the leader's at `point`, past our commit
          index; one durable write installs it with the snapshot boundary there and an empty
          log, then the core restarts its log after it (`restore_snapshot`).
        - otherwise (repair): the state is the correct one at our own applied index; it is
          written with that index and the log is untouched.
        """

        async def job() -> SnapshotMeta | None:
            core = self._core
            point = build(core)
            if point is None:
                return None
            handler = self._handler
            if reset_log:
                if point.index <= core.commit_index:
                    raise RuntimeError(
                        f"a catch-up state at {point.index} is not past commit "
                        f"{core.commit_index}: build() must decline it"
                    )
                batch, changes = handler.installed_batch(point)
                await self._write(batch)
                handler.reset_pending(point.term)
                core.restore_snapshot(point, handler.membership())
            else:
                changes = handler.repaired()
                await self._write_applied()
            if self._on_applied is not None:
                self._on_applied(changes, core.applied_index)
            if self._on_installed is not None:
                self._on_installed(changes)
            return point

        result = await self._exclusive(job)
        assert result is None or isinstance(result, SnapshotMeta)
        return result

    async def _maybe_compact(self) -> None:
        """Compact the log once it grew past the policy's size (driver, between Readies)."""
        policy = self._compaction
        core = self._core
        if policy is None or core.has_ready():
            return
        snapshot_index = core.snapshot.index
        if self._status.last_index - snapshot_index <= policy.max_log_entries:
            return
        through = Index(core.applied_index - policy.keep_entries)
        term = core.term_at(through)
        if through <= snapshot_index or term is None:
            return
        core.compact(through)
        # The applied state (at applied >= through) goes with the boundary in one write, so a
        # restart finds the state and the log after the boundary.
        await self._write_applied(SnapshotMeta(index=through, term=term))
        logger.info("compacted the log through %d (applied %d)", through, core.applied_index)
        self._refresh_status()

    def _refresh_status(self) -> None:
        self._status = self._core.status()
        self._status_refreshed.set()
        membership = self._core.membership
        if membership != self._membership:
            self._membership = membership
            if self._on_membership is not None:
                self._on_membership(membership)

    async def _next_status(self) -> Status:
        """The status as of the end of the next driver cycle: a task woken by the driver
        mid-cycle (a future it set) may otherwise read the status of the cycle before."""
        self._status_refreshed.clear()
        await self._status_refreshed.wait()
        return self._status

    def _deliver_applied(self, applied: Applied) -> None:
        if applied.results:
            now = self._loop.time()
            for item in applied.results:
                self._resolve(item.entry.index, item.entry.term, item.result, now)
        if self._on_applied is not None:
            for drained in applied.drained:
                self._on_applied(drained.changes, drained.index)

    def _answer_reads(
        self, read_states: tuple[ReadState, ...], dropped_reads: tuple[int, ...]
    ) -> None:
        for read in read_states:
            future = self._reads.pop(read.request_id, None)
            if future is not None and not future.done():
                future.set_result(read.index)
        for request_id in dropped_reads:
            future = self._reads.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(NotLeaderError(self._core.leader))

    def _resolve(self, index: Index, entry_term: int, result: object, now: float) -> None:
        waiting = self._waiting.pop(index, None)
        if waiting is None:
            return
        term, future, started = waiting
        if future.done():  # the caller gave up
            return
        if term == entry_term:
            self._observer.on_committed(now - started)
            future.set_result(result)
        else:
            future.set_exception(
                ProposalDroppedError(f"entry {index} went to another leader; not applied")
            )

    def _on_role_change(self, change: RoleChange) -> None:
        self._observer.on_role_change(change)
        if change.role is not Role.LEADER and self._waiting:
            # Our entries may still commit under the next leader, or be replaced: unknown.
            self._fail_all(OutcomeUnknownError("leadership was lost while the write was in flight"))

    def _wake_applied_waiters(self) -> None:
        applied = self._status.applied_index
        still: list[tuple[Index, asyncio.Future[None]]] = []
        for index, waiter in self._applied_waiters:
            if index <= applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((index, waiter))
        self._applied_waiters = still

    def _fail_all(self, error: Exception) -> None:
        for _term, future, _started in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        for read in self._reads.values():
            if not read.done():
                read.set_exception(UnavailableError(str(error)))
        self._reads.clear()


def _most_caught_up(status: Status) -> NodeId:
    """The hand-over target chosen for the operator: a peer heard from recently, with the
    longest matching log (ties to the smallest id, so the choice is repeatable)."""
    if not status.peers:
        return status.id
    return min(
        status.peers,
        key=lambda peer: (
            not status.peers[peer].recent_active,
            -status.peers[peer].match_index,
            peer,
        ),
    )
