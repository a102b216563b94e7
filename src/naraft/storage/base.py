"""The storage layer's values, errors and the `Store` protocol that every store satisfies.

A store keeps what a node must find again after a restart: the Raft hard state, the log after
the snapshot boundary, the boundary itself, the applied index and the applied state (datums).
It is written in `WriteBatch`es, one per `Ready`, each durable before `write` returns, and read
back only at boot with `load`.

This module owns nothing mutable. `bounds_after` is the one place that decides whether a batch
fits the stored log, so that `SqliteStore` and `MemoryStore` refuse exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from naraft.raft.types import Entry, HardState, Index, SnapshotMeta
from naraft.state.datums import Datum, DatumChanges


class StoreError(Exception):
    """A store cannot do what was asked. The node must stop (fail-stop, docs/conventions.md#errors).

    `path` names the store (a database file, or a memory store's name); `problem` says what is
    wrong. `str(error)` is one line: `"<path>: <problem>"`.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = " ".join(problem.splitlines())  # one line, whatever sqlite3 said
        super().__init__(f"{path}: {self.problem}")


class StoreFullError(StoreError):
    """The disk (or the file system) is full. The write was rolled back: nothing of the batch
    is stored, and the same batch may be written again once space is freed. The one store
    error that is not fail-stop (the replica waits and retries; see `naraft.replica`)."""


class SchemaTooNewError(StoreError):
    """The database was written by a newer naraft: its schema version is above the supported one."""

    def __init__(self, path: str, *, found_version: int, supported_version: int) -> None:
        self.found_version = found_version
        self.supported_version = supported_version
        super().__init__(
            path,
            f"schema version {found_version} is newer than this naraft supports"
            f" ({supported_version}); upgrade naraft to open it",
        )


class CorruptStoreError(StoreError):
    """The stored data cannot be trusted: a bad checksum, a gap in the log, not a database."""


class InvalidBatchError(StoreError):
    """A `WriteBatch` does not fit the stored log; nothing of it was written.

    This is a bug in the caller (the core produced an impossible `Ready`), not a disk problem.
    """


class NodeIdMismatchError(StoreError):
    """The store was first opened by another node: `recorded` is its id, `given` the caller's."""

    def __init__(self, path: str, *, recorded: str, given: str) -> None:
        self.recorded = recorded
        self.given = given
        super().__init__(path, f"belongs to node {recorded!r}, not {given!r}")


class ClusterIdMismatchError(StoreError):
    """The data directory was bootstrapped by another cluster (or another incarnation of this
    one): `recorded` is the cluster id stored there, `given` the one this node computed."""

    def __init__(self, path: str, *, data_dir: str, recorded: str, given: str) -> None:
        self.recorded = recorded
        self.given = given
        super().__init__(
            path,
            f"data directory {data_dir} belongs to cluster {recorded}, but this node's"
            f" --cluster-token and members give cluster {given}: refusing to start on"
            " another cluster's data",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteBatch:
    """Everything one `Ready` asks to persist; `Store.write` applies it in ONE durable step.

    The parts are applied in this order:

    1. `hard_state` replaces the stored hard state.
    2. `snapshot` moves the compaction boundary: log entries with index <= `snapshot.index` are
       deleted and the meta is stored. It may not move backwards. If it lies past the last
       stored entry, the log becomes empty and continues at `snapshot.index + 1`. With
       `reset_log` every stored entry is dropped (a digest-sync install restarts the log).
    3. `entries` (consecutive indexes) are appended; the entry at index i replaces every stored
       entry with index >= i. The first one must lie after the boundary and leave no gap.
    4. `replace_datums` (digest-sync install) replaces the whole applied state.
    5. `datum_changes` upserts its puts and deletes its deletes; no key may be in both.
    6. `applied_index` replaces the stored applied index.

    A batch that breaks a rule above is refused whole with `InvalidBatchError`.
    """

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    applied_index: Index | None = None
    datum_changes: DatumChanges | None = None
    snapshot: SnapshotMeta | None = None
    replace_datums: Mapping[str, Datum] | None = None
    reset_log: bool = False  # with `snapshot`: drop every entry, the log restarts after it

    @property
    def is_empty(self) -> bool:
        """True if writing this batch changes nothing (stores skip the write and its fsync)."""
        return (
            self.hard_state is None
            and not self.entries
            and self.applied_index is None
            and (self.datum_changes is None or not self.datum_changes)
            and self.snapshot is None
            and self.replace_datums is None
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredState:
    """What `Store.load` found: the state as of the last durable write.

    `datums` is a fresh dict owned by the caller; changing it does not change the store.
    """

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: tuple[Entry, ...]  # the log after snapshot.index, consecutive, in index order
    applied_index: Index
    datums: dict[str, Datum]  # the applied state as of applied_index
    node_id: str | None  # the id recorded by the first set_node_id, if any


class Store(Protocol):
    """A node's durable state. Used from one thread only; every call is synchronous."""

    def load(self) -> StoredState:
        """The state as of the last durable write.

        Raises `CorruptStoreError` if it fails verification.
        """
        ...

    def write(self, batch: WriteBatch) -> None:
        """Apply `batch` (see `WriteBatch`) as one transaction, durable before returning.

        Raises `InvalidBatchError` (nothing written) or `StoreError` (the node must stop).
        """
        ...

    def set_node_id(self, node_id: str) -> None:
        """Record `node_id` durably if none is recorded; a no-op if it is the recorded one.

        Raises `NodeIdMismatchError` if another id is recorded.
        """
        ...

    def set_cluster_id(self, cluster_id: str) -> bool:
        """Record `cluster_id` durably if none is recorded (True), or check that it is the
        recorded one (False).

        Raises `ClusterIdMismatchError` if another cluster's id is recorded.
        """
        ...

    def close(self) -> None:
        """Release the store; later calls raise `StoreError`. Closing twice is allowed."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LogBounds:
    """The extent of a stored log: entries `snapshot_index + 1 ..= last_index` are stored.

    `last_index == snapshot_index` when the log after the snapshot boundary is empty.
    """

    snapshot_index: Index
    last_index: Index


EMPTY_LOG: Final = LogBounds(snapshot_index=Index(0), last_index=Index(0))
"""The bounds of a store never written to."""


def bounds_after(bounds: LogBounds, batch: WriteBatch, *, path: str) -> LogBounds:
    """The log's bounds once `batch` is applied to a log with `bounds`.

    Raises `InvalidBatchError` (naming `path`) if the batch breaks a rule of `WriteBatch`.
    """
    snapshot_index, last_index = bounds.snapshot_index, bounds.last_index
    if batch.snapshot is not None:
        if batch.snapshot.index < snapshot_index:
            raise InvalidBatchError(
                path,
                f"snapshot at {batch.snapshot.index} is older than the stored one"
                f" at {snapshot_index}",
            )
        snapshot_index = batch.snapshot.index
        last_index = snapshot_index if batch.reset_log else max(last_index, snapshot_index)
    elif batch.reset_log:
        raise InvalidBatchError(path, "reset_log needs a snapshot to restart the log after")
    if batch.entries:
        first = batch.entries[0].index
        for before, after in zip(batch.entries, batch.entries[1:], strict=False):
            if after.index != before.index + 1:
                raise InvalidBatchError(
                    path,
                    f"batch entries are not consecutive: {before.index} then {after.index}",
                )
        if first <= snapshot_index:
            raise InvalidBatchError(
                path, f"entry {first} is at or below the snapshot boundary {snapshot_index}"
            )
        if first > last_index + 1:
            raise InvalidBatchError(
                path, f"entry {first} would leave a gap after the last entry {last_index}"
            )
        last_index = batch.entries[-1].index
    if batch.datum_changes is not None:
        puts = batch.datum_changes.puts
        both = sorted(key for key in batch.datum_changes.deletes if key in puts)
        if both:
            raise InvalidBatchError(path, f"datum key {both[0]!r} is both put and deleted")
    return LogBounds(snapshot_index=snapshot_index, last_index=last_index)
