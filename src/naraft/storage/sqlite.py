"""SqliteStore: the durable store, one SQLite database file per node.

Durability: WAL mode with `PRAGMA synchronous=FULL`, so a `write` is fsynced before it returns
(with NORMAL, a committed transaction may roll back after a power loss: a forgotten vote).
One `write` is one transaction; a transaction torn by a crash is rolled back by SQLite itself.

Threading: the connection is created in `__init__` with sqlite3's default
`check_same_thread=True`, so the store must be built and used on the one thread that owns it
(the replica's dedicated store thread, docs/conventions.md#the-async-shell).

Power-loss failpoint (fault campaigns only; off unless `NARAFT_FAILPOINTS` names it at start):
`storage.powerloss` stops WAL checkpoints and, after every write, records the WAL's synced
length in `<db>-synced` (20 ASCII digits), so that a harness can emulate a power loss after
`kill -9`: truncate `<db>-wal` to that length, maybe add a torn tail, delete `<db>-shm`
(`naraft.chaos.powerloss`). `storage.lying_fsync` is a planted bug for testing the campaign:
writes are no longer synced (`synchronous=OFF`) and the synced length stays where it was at
open, so a power loss drops every write since.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from naraft.raft.types import Entry, HardState, Index, NodeId, SnapshotMeta, Term
from naraft.state.datums import Datum
from naraft.storage.base import (
    EMPTY_LOG,
    ClusterIdMismatchError,
    CorruptStoreError,
    LogBounds,
    NodeIdMismatchError,
    StoredState,
    StoreError,
    StoreFullError,
    WriteBatch,
    bounds_after,
)
from naraft.storage.schema import CLUSTER_TABLE, ensure_schema, entry_checksum

_UPDATE_HARD_STATE: Final = (
    "UPDATE hard_state SET term = ?, voted_for = ?, commit_index = ? WHERE id = 0"
)
_DELETE_LOG_THROUGH: Final = "DELETE FROM log WHERE idx <= ?"
_DELETE_LOG_FROM: Final = "DELETE FROM log WHERE idx >= ?"
_INSERT_LOG: Final = "INSERT INTO log (idx, term, command, checksum) VALUES (?, ?, ?, ?)"
_UPDATE_SNAPSHOT: Final = "UPDATE snapshot SET idx = ?, term = ? WHERE id = 0"
_UPDATE_APPLIED: Final = "UPDATE applied SET idx = ? WHERE id = 0"
_DELETE_ALL_DATUMS: Final = "DELETE FROM datums"
_DELETE_DATUM: Final = "DELETE FROM datums WHERE key = ?"
_UPSERT_DATUM: Final = (
    "INSERT INTO datums (key, value, version) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version"
)


FAILPOINTS_ENV_VAR: Final = "NARAFT_FAILPOINTS"
SYNCED_SUFFIX: Final = "-synced"
_SYNCED_WIDTH: Final = 20


def _failpoint_names(spec: str | None) -> frozenset[str]:
    """The failpoint names switched on in a `name=value;...` spec (a value of 0 is off)."""
    names = set()
    for part in (spec or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name and value.strip() not in ("0", "off", "false"):
            names.add(name)
    return frozenset(names)


def _create_private(path: Path) -> None:
    """Create a missing database file readable by its owner only. SQLite would create it
    0644 (less the umask), and gives its -wal and -shm files the database file's mode."""
    with contextlib.suppress(OSError):  # it exists, or SQLite reports why it cannot open it
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def open_store(path: Path, *, bulk: bool = False) -> SqliteStore:
    """Open (creating if needed) the store at `path`, on the calling thread; see `SqliteStore`.
    `bulk`: a store being built from nothing (`naraft snapshot restore`), see `SqliteStore`."""
    return SqliteStore(path, bulk=bulk)


class SqliteStore:
    """A `Store` in one SQLite file. Build it and call it on one thread only.

    Opening creates the schema in a new or empty file and migrates an older one. It raises
    `SchemaTooNewError` for a newer schema, `CorruptStoreError` for a file that is not a naraft
    database, and `StoreError` when the file cannot be opened at all.

    A `bulk` store is one being built from nothing by a tool, never by a node: no WAL and no
    fsync per write (the journal is in memory), one fsync at `close`. A crash meanwhile may
    leave the file half written, so its builder keeps it under a temporary name until closed
    (`naraft.digest.restore`). A node opening the file later puts it in WAL mode.
    """

    def __init__(self, path: Path, *, bulk: bool = False) -> None:
        self._path = path
        self._bulk = bulk
        self._name = str(path)  # every error message starts with it
        self._connection: sqlite3.Connection | None = None  # None once closed
        self._bounds = EMPTY_LOG  # of the stored log; updated only after a commit
        failpoints = _failpoint_names(os.environ.get(FAILPOINTS_ENV_VAR))
        self._lying_fsync = "storage.lying_fsync" in failpoints
        self._synced_fd: int | None = None  # the `-synced` file, under the power-loss failpoint
        _create_private(path)
        with self._sqlite_errors("open the store"):
            connection = sqlite3.connect(path, isolation_level=None)  # autocommit; explicit BEGIN
            try:
                self._configure(connection)
                ensure_schema(connection, self._name)
                self._bounds = self._read_bounds(connection)
                if self._lying_fsync or "storage.powerloss" in failpoints:
                    connection.execute("PRAGMA wal_autocheckpoint = 0")
                    if self._lying_fsync:
                        connection.execute("PRAGMA synchronous = OFF")
                    self._synced_fd = os.open(
                        f"{path}{SYNCED_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600
                    )
                    self._record_synced()
            except BaseException:
                connection.close()
                raise
        self._connection = connection

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> StoredState:
        """The state as of the last write, verified.

        Raises `CorruptStoreError` if SQLite's quick check fails, a log entry fails its
        checksum, or the log after the snapshot boundary is not consecutive.
        """
        connection = self._open_connection()
        with self._sqlite_errors("load the store"):
            self._check_integrity(connection)
            (node_id,) = self._single_row(connection, "meta", "node_id")
            term, voted_for, commit_index = self._single_row(
                connection, "hard_state", "term, voted_for, commit_index"
            )
            snapshot_index, snapshot_term = self._single_row(connection, "snapshot", "idx, term")
            (applied_index,) = self._single_row(connection, "applied", "idx")
            snapshot = SnapshotMeta(
                index=Index(self._int(snapshot_index, "snapshot.idx")),
                term=Term(self._int(snapshot_term, "snapshot.term")),
            )
            hard_state = HardState(
                term=Term(self._int(term, "hard_state.term")),
                voted_for=None if voted_for is None else NodeId(str(voted_for)),
                commit=Index(self._int(commit_index, "hard_state.commit_index")),
            )
            entries = self._verified_log(connection, snapshot.index)
            datums = self._datums(connection)
        return StoredState(
            hard_state=hard_state,
            snapshot=snapshot,
            entries=entries,
            applied_index=Index(self._int(applied_index, "applied.idx")),
            datums=datums,
            node_id=None if node_id is None else str(node_id),
        )

    def write(self, batch: WriteBatch) -> None:
        """Apply `batch` in one transaction, fsynced before returning (see `WriteBatch`).

        Raises `InvalidBatchError` before touching the file, `StoreFullError` when the disk is
        full (rolled back; the batch may be written again later), or `StoreError` if SQLite
        fails otherwise; then the transaction is rolled back and the node must stop.
        """
        connection = self._open_connection()
        bounds = bounds_after(self._bounds, batch, path=self._name)
        if batch.is_empty:
            return
        with self._sqlite_errors("write a batch"):
            connection.execute("BEGIN")
            try:
                self._apply(connection, batch)
                connection.execute("COMMIT")
            except BaseException:
                connection.rollback()
                raise
        self._bounds = bounds
        if self._synced_fd is not None and not self._lying_fsync:
            self._record_synced()

    def _record_synced(self) -> None:
        """Power-loss failpoint: the WAL is synced up to its current length (FULL sync)."""
        assert self._synced_fd is not None
        try:
            length = os.stat(f"{self._path}-wal").st_size
        except FileNotFoundError:
            length = 0
        os.pwrite(self._synced_fd, str(length).zfill(_SYNCED_WIDTH).encode(), 0)

    def set_node_id(self, node_id: str) -> None:
        """Record `node_id` durably on first use; see `Store.set_node_id`."""
        connection = self._open_connection()
        with self._sqlite_errors("record the node id"):
            (recorded,) = self._single_row(connection, "meta", "node_id")
            if recorded is None:
                connection.execute("BEGIN")
                try:
                    connection.execute("UPDATE meta SET node_id = ? WHERE id = 0", (node_id,))
                    connection.execute("COMMIT")
                except BaseException:
                    connection.rollback()
                    raise
                return
        if recorded != node_id:
            raise NodeIdMismatchError(self._name, recorded=str(recorded), given=node_id)

    def recorded_cluster_id(self) -> str | None:
        """The cluster id recorded by `set_cluster_id`, None before the first."""
        connection = self._open_connection()
        with self._sqlite_errors("read the cluster id"):
            connection.execute(CLUSTER_TABLE)
            rows = connection.execute("SELECT cluster_id FROM cluster WHERE id = 0").fetchall()
        return str(rows[0][0]) if rows else None

    def set_cluster_id(self, cluster_id: str) -> bool:
        """Record `cluster_id` durably on first use; see `Store.set_cluster_id`."""
        connection = self._open_connection()
        with self._sqlite_errors("record the cluster id"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(CLUSTER_TABLE)
                rows = connection.execute("SELECT cluster_id FROM cluster WHERE id = 0").fetchall()
                if not rows:
                    connection.execute(
                        "INSERT INTO cluster (id, cluster_id) VALUES (0, ?)", (cluster_id,)
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.rollback()
                raise
        if not rows:
            return True
        recorded = rows[0][0]
        if recorded != cluster_id:
            raise ClusterIdMismatchError(
                self._name,
                data_dir=str(self._path.parent),
                recorded=str(recorded),
                given=cluster_id,
            )
        return False

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL). Closing twice is allowed."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with self._sqlite_errors("close the store"):
                connection.close()
            if self._bulk:  # nothing was synced on the way: once, now
                fd = os.open(self._path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if self._synced_fd is not None:
            fd, self._synced_fd = self._synced_fd, None
            os.close(fd)

    def _apply(self, connection: sqlite3.Connection, batch: WriteBatch) -> None:
        """Run the batch's statements inside the open transaction, in `WriteBatch` order."""
        if batch.hard_state is not None:
            hard_state = batch.hard_state
            connection.execute(
                _UPDATE_HARD_STATE, (hard_state.term, hard_state.voted_for, hard_state.commit)
            )
        if batch.snapshot is not None:
            if batch.reset_log:
                connection.execute(_DELETE_LOG_FROM, (0,))
            else:
                connection.execute(_DELETE_LOG_THROUGH, (batch.snapshot.index,))
            connection.execute(_UPDATE_SNAPSHOT, (batch.snapshot.index, batch.snapshot.term))
        if batch.entries:
            first = batch.entries[0].index
            # Entries from `first` on exist only if first <= the old last index; appending at the
            # end, the common case, skips the DELETE.
            if first <= self._bounds.last_index:
                connection.execute(_DELETE_LOG_FROM, (first,))
            connection.executemany(
                _INSERT_LOG,
                [
                    (
                        entry.index,
                        entry.term,
                        entry.command,
                        entry_checksum(entry.index, entry.term, entry.command),
                    )
                    for entry in batch.entries
                ],
            )
        if batch.replace_datums is not None:
            connection.execute(_DELETE_ALL_DATUMS)
            connection.executemany(
                _UPSERT_DATUM,
                [(key, datum.value, datum.version) for key, datum in batch.replace_datums.items()],
            )
        if batch.datum_changes is not None:
            changes = batch.datum_changes
            if changes.deletes:
                connection.executemany(_DELETE_DATUM, [(key,) for key in changes.deletes])
            if changes.puts:
                connection.executemany(
                    _UPSERT_DATUM,
                    [(key, datum.value, datum.version) for key, datum in changes.puts.items()],
                )
        if batch.applied_index is not None:
            connection.execute(_UPDATE_APPLIED, (batch.applied_index,))

    def _configure(self, connection: sqlite3.Connection) -> None:
        if self._bulk:
            connection.execute("PRAGMA journal_mode = MEMORY")
            connection.execute("PRAGMA synchronous = OFF")
            return
        (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(self._name, f"cannot use WAL mode (journal mode stays {mode!r})")
        connection.execute("PRAGMA synchronous = FULL")

    def _read_bounds(self, connection: sqlite3.Connection) -> LogBounds:
        (stored_snapshot_index,) = self._single_row(connection, "snapshot", "idx")
        snapshot_index = self._int(stored_snapshot_index, "snapshot.idx")
        (last,) = connection.execute("SELECT max(idx) FROM log").fetchone()
        last_index = (
            snapshot_index if last is None else max(self._int(last, "log.idx"), snapshot_index)
        )
        return LogBounds(snapshot_index=Index(snapshot_index), last_index=Index(last_index))

    def _check_integrity(self, connection: sqlite3.Connection) -> None:
        problems = [str(row[0]) for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            shown = "; ".join(problems[:3])
            raise CorruptStoreError(self._name, f"fails SQLite's integrity check: {shown}")

    def _verified_log(
        self, connection: sqlite3.Connection, snapshot_index: Index
    ) -> tuple[Entry, ...]:
        entries: list[Entry] = []
        expected = snapshot_index + 1
        rows = connection.execute("SELECT idx, term, command, checksum FROM log ORDER BY idx")
        for index, term, command, checksum in rows:
            if index != expected:
                raise CorruptStoreError(
                    self._name,
                    f"log is not contiguous after the snapshot at {snapshot_index}:"
                    f" expected entry {expected}, found {index} (corrupted database)",
                )
            if not isinstance(command, bytes) or entry_checksum(index, term, command) != checksum:
                raise CorruptStoreError(
                    self._name, f"log entry {index} fails its checksum (corrupted database)"
                )
            entries.append(Entry(Term(term), Index(index), command))
            expected += 1
        return tuple(entries)

    def _datums(self, connection: sqlite3.Connection) -> dict[str, Datum]:
        datums: dict[str, Datum] = {}
        for key, value, version in connection.execute("SELECT key, value, version FROM datums"):
            if not isinstance(value, bytes):
                raise CorruptStoreError(
                    self._name, f"datum {key!r} holds a {type(value).__name__}, not bytes"
                )
            datums[str(key)] = Datum(value, self._int(version, f"version of datum {key!r}"))
        return datums

    def _single_row(
        self, connection: sqlite3.Connection, table: str, columns: str
    ) -> tuple[object, ...]:
        # Only ever called with the literal table and column names above.
        rows = connection.execute(f"SELECT {columns} FROM {table}").fetchall()
        if len(rows) != 1:
            raise CorruptStoreError(
                self._name, f"table {table} holds {len(rows)} rows, expected 1 (corrupted database)"
            )
        return tuple(rows[0])

    def _int(self, value: object, what: str) -> int:
        if not isinstance(value, int):
            raise CorruptStoreError(
                self._name, f"{what} holds {value!r}, not an integer (corrupted database)"
            )
        return value

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(self._name, "the store is closed")
        return self._connection

    @contextmanager
    def _sqlite_errors(self, doing: str) -> Iterator[None]:
        """Turn sqlite3's errors into one-line store errors that name the file."""
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # misuse of the sqlite3 API: a bug in this module, not a store problem
        except sqlite3.OperationalError as error:  # I/O error, disk full, locked, cannot open
            if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
                raise StoreFullError(
                    self._name, f"cannot {doing}: the disk is full ({error})"
                ) from error
            raise StoreError(self._name, f"cannot {doing}: {error}") from error
        except sqlite3.DatabaseError as error:  # not a database, malformed image, constraint
            raise CorruptStoreError(
                self._name, f"cannot {doing}: {error} (corrupted database or not a naraft store)"
            ) from error
