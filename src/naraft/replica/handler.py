"""The Ready handler: the shell's durability and apply rules, synchronous and IO-free.

`Replica` (the asyncio shell) and the simulator (`naraft.sim`) drive the same handler, so
every seeded simulation checks the rules the production shell follows:

- A Ready whose `must_sync` is false only moves the commit index: it is not written. The new
  commit index waits (`unwritten_hard_state`), with the applied state drained since the last
  write, for the next write that must happen, or for the idle flush (`idle_batch`), which
  writes it once no write carried it for `idle_flush_after`. Both are re-learned after a crash
  (the log holds every entry past the stored applied index), so deferring them is safe; it
  takes one fsync off every write's path.
- The stored applied index never passes the stored commit index: every batch that carries
  applied state also carries the newest commit index (`_with_commit`).
- Committed entries are applied in order; the datum changes are drained at the end of each
  Ready and at the drain points the digest code asks for (checksum comparison points).

The handler never touches a store, a socket or a clock: the caller writes the batch it
returns, reports it with `written`, sends the Ready's messages, applies with `apply` and
advances the core, in that order (see `naraft.raft.Ready`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from naraft.raft import Entry, HardState, Index, Ready, SnapshotMeta, Term
from naraft.raft.membership import Membership
from naraft.state.datums import DatumChanges
from naraft.storage.base import WriteBatch


class StateMachine(Protocol):
    def apply(self, entry: Entry) -> object:
        """Apply one committed entry deterministically; return the result for its proposer."""
        ...

    def drain_changes(self) -> DatumChanges:
        """The datums changed since the previous drain, to persist with the applied index."""
        ...

    def membership(self) -> Membership | None:
        """The committed configuration the applied state records (None: bootstrap's)."""
        ...


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """One committed entry and what the state machine returned for it."""

    entry: Entry
    result: object


@dataclass(frozen=True, slots=True)
class Drained:
    """The datum changes that bring the applied state to `index` (a change feed's unit)."""

    changes: DatumChanges
    index: Index


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one Ready's committed entries produced, in log order."""

    results: tuple[AppliedEntry, ...] = ()
    drained: tuple[Drained, ...] = ()


_NOTHING_APPLIED = Applied()


class ReadyHandler:
    """The pending durable state of one node and the rules for writing it; see the module."""

    def __init__(
        self,
        machine: StateMachine,
        *,
        applied_term: Term,
        now: float,
        idle_flush_after: float,
    ) -> None:
        self._machine = machine
        self._idle_flush_after = idle_flush_after
        self.unwritten_hard_state: HardState | None = None  # a newer commit, not yet written
        self.pending_changes: DatumChanges | None = None  # applied, not yet written
        self.applied_term = applied_term
        self.last_write_at = now
        self._drain_points: set[Index] = set()

    # ------------------------------------------------------------------ step 1: persist

    def batch_for(self, ready: Ready, applied_index: Index) -> WriteBatch | None:
        """What to write for `ready` before its messages leave, or None (nothing must be).

        `applied_index` is the core's, before `ready` is applied: the pending applied state
        is exactly there."""
        if not ready.must_sync:
            if ready.hard_state is not None:
                self.unwritten_hard_state = ready.hard_state
            return None
        batch = WriteBatch(
            hard_state=ready.hard_state,
            entries=ready.entries,
            applied_index=applied_index if self.pending_changes is not None else None,
            datum_changes=self.pending_changes,
        )
        return self._with_commit(batch)

    def applied_batch(
        self, applied_index: Index, snapshot: SnapshotMeta | None = None
    ) -> WriteBatch:
        """The pending applied state at `applied_index` (and a compaction boundary), with the
        commit index that covers it."""
        batch = WriteBatch(
            snapshot=snapshot, applied_index=applied_index, datum_changes=self.pending_changes
        )
        return self._with_commit(batch)

    def idle_batch(self, applied_index: Index, now: float) -> WriteBatch | None:
        """The deferred commit index and applied state once no write carried them for
        `idle_flush_after` (between Readies), else None: it bounds what a restart replays."""
        if not self.has_deferred():
            return None
        if now - self.last_write_at < self._idle_flush_after:
            return None
        return self.applied_batch(applied_index)

    def has_deferred(self) -> bool:
        return self.pending_changes is not None or self.unwritten_hard_state is not None

    def _with_commit(self, batch: WriteBatch) -> WriteBatch:
        """The stored applied index must never pass the stored commit index: a batch carries
        the newest commit index known (planted-bug seam, see tests/sim)."""
        if batch.hard_state is None and self.unwritten_hard_state is not None:
            return dataclasses.replace(batch, hard_state=self.unwritten_hard_state)
        return batch

    def written(self, batch: WriteBatch, now: float) -> None:
        """`batch` (one this handler built) is durable."""
        if batch.hard_state is not None:
            self.unwritten_hard_state = None
        if batch.datum_changes is not None or batch.applied_index is not None:
            self.pending_changes = None
        self.last_write_at = now

    # ------------------------------------------------------------------ step 3: apply

    def apply(self, ready: Ready) -> Applied:
        """Apply `ready.committed` in order; drain the changes at drain points and at the end."""
        committed = ready.committed
        if not committed:
            return _NOTHING_APPLIED
        machine = self._machine
        results: list[AppliedEntry] = []
        drained: list[Drained] = []
        points = self._drain_points
        for entry in committed:
            results.append(AppliedEntry(entry, machine.apply(entry)))
            if points and entry.index in points:
                points.discard(entry.index)
                drained.append(self._drain(entry.index))
        last = committed[-1]
        self.applied_term = last.term
        drained.append(self._drain(last.index))
        if points:
            self._drain_points = {i for i in points if i > last.index}
        return Applied(tuple(results), tuple(drained))

    def _drain(self, index: Index) -> Drained:
        changes = self._machine.drain_changes()
        self.pending_changes = merge_changes(self.pending_changes, changes)
        return Drained(changes, index)

    def add_drain_point(self, index: Index) -> None:
        self._drain_points.add(index)

    # ------------------------------------------------------------------ installs

    def membership(self) -> Membership | None:
        """The configuration recorded by the state (after an install, the leader's)."""
        return self._machine.membership()

    def installed_batch(self, point: SnapshotMeta) -> tuple[WriteBatch, DatumChanges]:
        """A catch-up install at `point` (past the commit index): the changes the state
        machine holds, written with the snapshot boundary there and an empty log."""
        changes = self._machine.drain_changes()
        batch = WriteBatch(
            snapshot=point,
            reset_log=True,
            datum_changes=merge_changes(self.pending_changes, changes),
            applied_index=point.index,
        )
        return batch, changes

    def repaired(self) -> DatumChanges:
        """A repair replaced datums at the current applied index: make them pending."""
        changes = self._machine.drain_changes()
        self.pending_changes = merge_changes(self.pending_changes, changes)
        return changes

    def reset_pending(self, applied_term: Term) -> None:
        """The whole applied state was replaced durably (a catch-up install)."""
        self.pending_changes = None
        self.applied_term = applied_term


def merge_changes(first: DatumChanges | None, second: DatumChanges) -> DatumChanges | None:
    """`first` then `second`, as one set of changes (None: no change at all)."""
    if first is None:
        return second if second else None
    if not second:
        return first
    puts = {k: v for k, v in first.puts.items() if k not in second.deletes}
    puts.update(second.puts)
    deletes = (first.deletes - second.puts.keys()) | second.deletes
    return DatumChanges(puts=puts, deletes=frozenset(deletes))
