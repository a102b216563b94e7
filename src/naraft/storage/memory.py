"""MemoryStore: the `Store` protocol in memory, for the simulator and tests.

It models durability. By default every `write` is durable at once. With `sync_writes=False`,
writes stay pending (visible to `load`, like data in the OS page cache) until `sync()`, and
`crash()` throws the pending ones away, as a power loss would.

The object itself plays the disk: a simulated restart keeps the object, calls `crash()` and
`load()`s again. It refuses exactly the batches `SqliteStore` refuses (`base.bounds_after`).
"""

from __future__ import annotations

from naraft.raft.types import NO_SNAPSHOT, Entry, HardState, Index
from naraft.state.datums import Datum
from naraft.storage.base import (
    ClusterIdMismatchError,
    LogBounds,
    NodeIdMismatchError,
    StoredState,
    StoreError,
    WriteBatch,
    bounds_after,
)


class _Disk:
    """One full copy of a store's contents. Mutable; owned by one MemoryStore."""

    __slots__ = ("applied_index", "datums", "hard_state", "log", "snapshot")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot = NO_SNAPSHOT
        self.log: list[Entry] = []  # self.log[i] has index snapshot.index + 1 + i
        self.applied_index = Index(0)
        self.datums: dict[str, Datum] = {}

    def copy(self) -> _Disk:
        disk = _Disk()
        disk.hard_state = self.hard_state
        disk.snapshot = self.snapshot
        disk.log = list(self.log)  # entries and datums are frozen: a shallow copy suffices
        disk.applied_index = self.applied_index
        disk.datums = dict(self.datums)
        return disk

    @property
    def bounds(self) -> LogBounds:
        return LogBounds(
            snapshot_index=self.snapshot.index,
            last_index=Index(self.snapshot.index + len(self.log)),
        )

    def apply(self, batch: WriteBatch) -> None:
        """Apply a batch already checked by `bounds_after`, in `WriteBatch` order."""
        if batch.hard_state is not None:
            self.hard_state = batch.hard_state
        if batch.snapshot is not None:
            if batch.reset_log:
                self.log.clear()
            else:
                del self.log[: batch.snapshot.index - self.snapshot.index]
            self.snapshot = batch.snapshot
        if batch.entries:
            del self.log[batch.entries[0].index - self.snapshot.index - 1 :]
            self.log.extend(batch.entries)
        if batch.replace_datums is not None:
            self.datums = dict(batch.replace_datums)
        if batch.datum_changes is not None:
            for key in batch.datum_changes.deletes:
                self.datums.pop(key, None)
            self.datums.update(batch.datum_changes.puts)
        if batch.applied_index is not None:
            self.applied_index = batch.applied_index


class MemoryStore:
    """A `Store` held in memory. Not thread-safe: one owner, like every store.

    `name` stands in for the file path in error messages.
    """

    def __init__(self, *, sync_writes: bool = True, name: str = "<memory>") -> None:
        self._sync_writes = sync_writes
        self._name = name
        self._durable = _Disk()  # what survives crash()
        self._current = self._durable  # what load() sees: durable plus pending writes
        self._pending: list[WriteBatch] = []  # writes since the last sync; empty if sync_writes
        self._node_id: str | None = None  # durable at once
        self._cluster_id: str | None = None  # durable at once
        self._is_closed = False

    @property
    def has_pending_writes(self) -> bool:
        """True if some writes would be lost by `crash()`."""
        return bool(self._pending)

    def load(self) -> StoredState:
        """The state as of the last write (synced or not); the caller owns the returned dict."""
        self._check_open()
        disk = self._current
        return StoredState(
            hard_state=disk.hard_state,
            snapshot=disk.snapshot,
            entries=tuple(disk.log),
            applied_index=disk.applied_index,
            datums=dict(disk.datums),
            node_id=self._node_id,
        )

    def write(self, batch: WriteBatch) -> None:
        """Apply `batch`; durable at once if `sync_writes`, else pending until `sync()`.

        Raises `InvalidBatchError` (nothing written), like `SqliteStore`.
        """
        self._check_open()
        bounds_after(self._current.bounds, batch, path=self._name)
        if batch.is_empty:
            return
        if self._sync_writes:
            self._current.apply(batch)
            return
        if self._current is self._durable:
            self._current = self._durable.copy()
        self._current.apply(batch)
        self._pending.append(batch)

    def sync(self) -> None:
        """Make every pending write durable (an fsync)."""
        self._check_open()
        if self._pending:
            self._durable = self._current
            self._pending.clear()

    def crash(self) -> None:
        """Lose every pending write, as a power loss would; the store stays usable (rebooted)."""
        self._current = self._durable
        self._pending.clear()
        self._is_closed = False

    def copy(self) -> MemoryStore:
        """An independent store with the same durable and pending contents and settings."""
        store = MemoryStore(sync_writes=self._sync_writes, name=self._name)
        store._durable = self._durable.copy()
        store._current = store._durable if not self._pending else self._current.copy()
        store._pending = list(self._pending)
        store._node_id = self._node_id
        store._cluster_id = self._cluster_id
        store._is_closed = self._is_closed
        return store

    def set_node_id(self, node_id: str) -> None:
        """Record `node_id` (durable at once) on first use; see `Store.set_node_id`."""
        self._check_open()
        if self._node_id is None:
            self._node_id = node_id
        elif self._node_id != node_id:
            raise NodeIdMismatchError(self._name, recorded=self._node_id, given=node_id)

    def set_cluster_id(self, cluster_id: str) -> bool:
        """Record `cluster_id` (durable at once) on first use; see `Store.set_cluster_id`."""
        self._check_open()
        if self._cluster_id is None:
            self._cluster_id = cluster_id
            return True
        if self._cluster_id != cluster_id:
            raise ClusterIdMismatchError(
                self._name, data_dir=self._name, recorded=self._cluster_id, given=cluster_id
            )
        return False

    def close(self) -> None:
        """Refuse further calls until `crash()` reboots the store. Closing twice is allowed."""
        self._is_closed = True

    def _check_open(self) -> None:
        if self._is_closed:
            raise StoreError(self._name, "the store is closed")
