"""The in-memory log since the last snapshot: term lookups, matching, slicing, truncation.

The core owns one `RaftLog`; it never reads storage after boot
(docs/conventions.md#the-ready-contract).
"""

from __future__ import annotations

from collections.abc import Iterable

from naraft.raft.errors import InvariantError
from naraft.raft.types import NO_SNAPSHOT, Entry, Index, SnapshotMeta, Term


class RaftLog:
    """Entries after the snapshot boundary, contiguous.

    `_entries[i]` has index `snapshot.index + 1 + i`.
    """

    def __init__(self, entries: Iterable[Entry] = (), snapshot: SnapshotMeta = NO_SNAPSHOT) -> None:
        self._snapshot = snapshot
        self._entries: list[Entry] = []
        self._last = snapshot.index  # snapshot.index + len(_entries), kept on every change
        for entry in entries:
            if entry.index <= snapshot.index:
                continue
            if entry.index != self.last_index + 1:
                raise InvariantError(f"log is not contiguous at index {entry.index}")
            self._entries.append(entry)
            self._last = entry.index

    @property
    def snapshot(self) -> SnapshotMeta:
        return self._snapshot

    @property
    def first_index(self) -> Index:
        """The first index held as an entry (may be past last_index when empty)."""
        return Index(self._snapshot.index + 1)

    @property
    def last_index(self) -> Index:
        return self._last

    @property
    def last_term(self) -> Term:
        return self._entries[-1].term if self._entries else self._snapshot.term

    def term_at(self, index: Index) -> Term | None:
        """The term of the entry at `index`; None when compacted away or beyond the end."""
        if index == self._snapshot.index:
            return self._snapshot.term
        if index < self._snapshot.index or index > self._last:
            return None
        return self._entries[index - self._snapshot.index - 1].term

    def matches(self, index: Index, term: Term) -> bool:
        """True if this log holds an entry (or snapshot boundary) at `index` with `term`."""
        if index < self._snapshot.index:
            # Compacted entries were committed, and a leader's view of them agrees.
            return True
        return self.term_at(index) == term

    def entry(self, index: Index) -> Entry:
        return self._entries[index - self._snapshot.index - 1]

    def slice(self, start: Index, end: Index, *, max_bytes: int | None = None) -> tuple[Entry, ...]:
        """Entries [start, end) (end clamped to the log), cut after `max_bytes` of commands
        but always at least one entry when any is available."""
        base = self._snapshot.index + 1
        lo = max(start, base) - base
        hi = min(end, self._last + 1) - base
        if hi <= lo:
            return ()
        if max_bytes is None:
            return tuple(self._entries[lo:hi])
        taken: list[Entry] = []
        size = 0
        for entry in self._entries[lo:hi]:
            size += len(entry.command) + 16
            if taken and size > max_bytes:
                break
            taken.append(entry)
        return tuple(taken)

    def append(self, entry: Entry) -> None:
        if entry.index != self._last + 1:
            raise InvariantError(f"append at {entry.index} but last index is {self._last}")
        self._entries.append(entry)
        self._last = entry.index

    def truncate_from(self, index: Index) -> None:
        """Drop every entry with index >= `index`."""
        if index <= self._snapshot.index:
            raise InvariantError(
                f"cannot truncate at {index}: compacted through {self._snapshot.index}"
            )
        del self._entries[index - self._snapshot.index - 1 :]
        self._last = Index(self._snapshot.index + len(self._entries))

    def last_index_of_term(self, term: Term) -> Index | None:
        """The highest index whose entry has `term`, searching back from the end."""
        for entry in reversed(self._entries):
            if entry.term == term:
                return entry.index
            if entry.term < term:
                return None
        return None

    def first_index_of_term_at(self, index: Index) -> Index:
        """The first index of the run of entries sharing the term at `index`."""
        term = self.term_at(index)
        while index > self.first_index and self.term_at(Index(index - 1)) == term:
            index = Index(index - 1)
        return index

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop entries up to `snapshot.index`; the boundary becomes `snapshot`."""
        if snapshot.index <= self._snapshot.index:
            return
        if snapshot.index <= self.last_index:
            if self.term_at(snapshot.index) != snapshot.term:
                raise InvariantError(f"compaction at {snapshot.index} disagrees on its term")
            del self._entries[: snapshot.index - self._snapshot.index]
        else:
            self._entries.clear()
        self._snapshot = snapshot
        self._last = Index(snapshot.index + len(self._entries))

    def reset(self, snapshot: SnapshotMeta) -> None:
        """Replace the whole log with an empty one starting after `snapshot`."""
        self._entries.clear()
        self._snapshot = snapshot
        self._last = snapshot.index

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)


class LogView:
    """A read-only view of a node's log, for code outside the core (digest repair): the
    bounds, the term at an index and a slice, never the list itself nor index arithmetic."""

    __slots__ = ("_log",)

    def __init__(self, log: RaftLog) -> None:
        self._log = log

    @property
    def first_index(self) -> Index:
        """The first index held as an entry (past `last_index` when the log is empty)."""
        return self._log.first_index

    @property
    def last_index(self) -> Index:
        return self._log.last_index

    def term_at(self, index: Index) -> Term | None:
        return self._log.term_at(index)

    def slice(self, start: Index, end: Index) -> tuple[Entry, ...]:
        """The entries [start, end) this node still holds (clamped to the log)."""
        return self._log.slice(start, end)
