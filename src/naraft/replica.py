"""The IO shell around one RaftCore: ticker, inbox, persist -> send -> apply -> advance.

One asyncio task (the driver) owns the core; ticks, peer messages, proposals and read
requests all arrive through its inbox (STYLE §15.1). Storage runs on one dedicated
thread that owns the database connection. Every Ready is one durable write made before
any of its messages leave (group commit: whatever queued while the previous write was
in progress goes into the next one).

The ports it needs are defined here, by their consumer: `LogStore`, `PeerSender`,
`StateMachine`. A storage error or a broken core invariant ends the node (fail-stop).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from naraft.errors import OutcomeUnknownError, ProposalDroppedError, UnavailableError
from naraft.raft import (
    Entry,
    Envelope,
    Index,
    NodeId,
    NotLeaderError,
    RaftCore,
    Ready,
    Role,
    RoleChange,
    SnapshotMeta,
    Status,
)
from naraft.state.datums import DatumChanges
from naraft.storage.base import StoredState, WriteBatch

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


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> object:
        """Apply one committed entry deterministically; return the result for its proposer."""
        ...

    def drain_changes(self) -> DatumChanges:
        """The datums changed since the previous drain, to persist with the applied index."""
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


@dataclass(frozen=True, slots=True)
class _Read:
    future: asyncio.Future[Index]


@dataclass(frozen=True, slots=True)
class _Call:
    """Run `action(core)` on the driver task (campaign, forget_leader, ...)."""

    action: Callable[[RaftCore], None]


_Event = _Tick | Envelope | _Proposal | _Read | _Call

_TICK = _Tick()
_MAX_EVENTS_PER_CYCLE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaTimings:
    tick_seconds: float = 0.1
    proposal_timeout_seconds: float = 5.0  # a write waits this long for its commit
    leader_wait_seconds: float = 3.0  # a write with no leader known waits this long for one


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
    ) -> None:
        self._core = core
        self._store = store
        self._executor = store_executor
        self._peers = peers
        self._machine = state_machine
        self._timings = timings
        self._observer = observer or _NoObserver()
        self._on_snapshot_needed = on_snapshot_needed
        self._inbox: asyncio.Queue[_Event] = asyncio.Queue()
        self._waiting: dict[Index, tuple[int, asyncio.Future[object], float]] = {}
        self._reads: dict[int, asyncio.Future[Index]] = {}
        self._read_ids = itertools.count(1)
        self._applied_waiters: list[tuple[Index, asyncio.Future[None]]] = []
        self._pending_changes: DatumChanges | None = None
        self._leader_known = asyncio.Event()
        self._last_heard: dict[NodeId, float] = {}  # loop time of the last message per peer
        self._status: Status = core.status()
        self._loop = asyncio.get_running_loop()
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

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled. A storage error or broken invariant ends it (fail-stop)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._tick_forever(), name="raft-ticker")
                tasks.create_task(self._drive_forever(), name="raft-driver")
        finally:
            self._fail_all(UnavailableError("the node is shutting down"))

    async def _tick_forever(self) -> None:
        interval = self._timings.tick_seconds
        next_at = self._loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - self._loop.time()))
            self._inbox.put_nowait(_TICK)

    async def _drive_forever(self) -> None:
        while True:
            self._handle(await self._inbox.get())
            handled = 1
            while not self._inbox.empty() and handled < _MAX_EVENTS_PER_CYCLE:
                self._handle(self._inbox.get_nowait())
                handled += 1
            await self._flush()

    # ------------------------------------------------------------------ inputs

    def deliver(self, envelope: Envelope) -> None:
        """Called by the transport for every message that arrives from a peer."""
        self._last_heard[envelope.sender] = self._loop.time()
        self._inbox.put_nowait(envelope)

    def silent_for(self, peer: NodeId) -> float:
        """Seconds since the last message from `peer` arrived (inf if never)."""
        heard = self._last_heard.get(peer)
        return float("inf") if heard is None else self._loop.time() - heard

    def call(self, action: Callable[[RaftCore], None]) -> None:
        """Run `action` on the core from the driver task (campaign, forget_leader)."""
        self._inbox.put_nowait(_Call(action))

    async def propose(self, command: bytes) -> object:
        """Replicate `command`; return what the state machine returned when applying it.

        Raises NotLeaderError (nothing was appended: safe to forward or retry),
        ProposalDroppedError (appended, then lost to another leader: not applied),
        OutcomeUnknownError (appended, but no answer in time: it may still commit).
        """
        await self._await_leader()
        future: asyncio.Future[object] = self._loop.create_future()
        self._inbox.put_nowait(_Proposal(command, future, self._loop.time()))
        try:
            async with asyncio.timeout(self._timings.proposal_timeout_seconds):
                return await asyncio.shield(future)
        except TimeoutError:
            future.cancel()
            raise OutcomeUnknownError(
                f"no commit within {self._timings.proposal_timeout_seconds:g}s; "
                "the write may or may not be applied"
            ) from None

    async def read_barrier(self) -> None:
        """Return once this node has applied everything committed when this was called,
        confirmed by a majority (read index, Raft §6.4). Raises NotLeaderError on a
        follower (the caller forwards to the leader)."""
        await self._await_leader()
        future: asyncio.Future[Index] = self._loop.create_future()
        self._inbox.put_nowait(_Read(future))
        try:
            async with asyncio.timeout(self._timings.proposal_timeout_seconds):
                index = await future
        except TimeoutError:
            raise UnavailableError("no quorum confirmed the read in time") from None
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
                    index = core.propose(event.command)
                except NotLeaderError as error:
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
        while core.has_ready():
            ready = core.ready()
            await self._persist(ready)
            for envelope in ready.messages:
                self._peers.send(envelope)
            self._apply(ready)
            if ready.role_change is not None:
                self._on_role_change(ready.role_change)
            if ready.snapshot_to_fetch is not None and self._on_snapshot_needed is not None:
                self._on_snapshot_needed(ready.snapshot_to_fetch, core.leader)
            core.advance(ready)
        self._status = core.status()
        if self._status.leader is not None:
            self._leader_known.set()
        self._wake_applied_waiters()

    async def _persist(self, ready: Ready) -> None:
        batch = WriteBatch(
            hard_state=ready.hard_state,
            entries=ready.entries,
            applied_index=self._core.applied_index if self._pending_changes is not None else None,
            datum_changes=self._pending_changes,
        )
        if batch.is_empty:
            return
        started = self._loop.time()
        await self._loop.run_in_executor(self._executor, self._store.write, batch)
        self._pending_changes = None
        self._observer.on_persisted(self._loop.time() - started, len(ready.entries))

    async def persist_applied(self) -> None:
        """Write the applied state that is still only in memory (before a snapshot or stop)."""
        self._inbox.put_nowait(_Call(lambda _core: None))
        if self._pending_changes is not None:
            batch = WriteBatch(
                applied_index=self._core.applied_index, datum_changes=self._pending_changes
            )
            self._pending_changes = None
            await self._loop.run_in_executor(self._executor, self._store.write, batch)

    def _apply(self, ready: Ready) -> None:
        if ready.committed:
            now = self._loop.time()
            for entry in ready.committed:
                result = self._machine.apply(entry)
                self._resolve(entry, result, now)
            changes = self._machine.drain_changes()
            self._pending_changes = _merge(self._pending_changes, changes)
        for read in ready.read_states:
            future = self._reads.pop(read.request_id, None)
            if future is not None and not future.done():
                future.set_result(read.index)
        for request_id in ready.dropped_reads:
            future = self._reads.pop(request_id, None)
            if future is not None and not future.done():
                future.set_exception(NotLeaderError(self._core.leader))

    def _resolve(self, entry: Entry, result: object, now: float) -> None:
        waiting = self._waiting.pop(entry.index, None)
        if waiting is None:
            return
        term, future, started = waiting
        if future.done():  # the caller gave up
            return
        if term == entry.term:
            self._observer.on_committed(now - started)
            future.set_result(result)
        else:
            future.set_exception(
                ProposalDroppedError(f"entry {entry.index} went to another leader; not applied")
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


def _merge(first: DatumChanges | None, second: DatumChanges) -> DatumChanges | None:
    if first is None:
        return second if second else None
    if not second:
        return first
    puts = {k: v for k, v in first.puts.items() if k not in second.deletes}
    puts.update(second.puts)
    deletes = (first.deletes - second.puts.keys()) | second.deletes
    return DatumChanges(puts=puts, deletes=frozenset(deletes))


def entries_bytes(entries: Sequence[Entry]) -> int:
    return sum(len(entry.command) for entry in entries)
