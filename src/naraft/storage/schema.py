"""The SQLite schema: DDL, the schema version, migrations and the log entry checksum.

Owns the on-disk format. `SqliteStore` is the only caller; this module never commits anything
but the schema itself.

Single-row tables (meta, hard_state, snapshot, applied) hold exactly the row with `id = 0`,
created together with the schema, so that writes are plain UPDATEs.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Mapping
from typing import Final

from naraft.storage.base import CorruptStoreError, SchemaTooNewError

SCHEMA_VERSION: Final = 1
"""The version this code writes. A database with a higher one is refused (`SchemaTooNewError`)."""

CREATE_STATEMENTS: Final[tuple[str, ...]] = (
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        schema_version INTEGER NOT NULL,
        node_id TEXT
    )""",
    """CREATE TABLE hard_state (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        term INTEGER NOT NULL,
        voted_for TEXT,
        commit_index INTEGER NOT NULL
    )""",
    """CREATE TABLE log (
        idx INTEGER PRIMARY KEY,
        term INTEGER NOT NULL,
        command BLOB NOT NULL,
        checksum INTEGER NOT NULL
    )""",
    """CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        idx INTEGER NOT NULL,
        term INTEGER NOT NULL
    )""",
    """CREATE TABLE applied (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        idx INTEGER NOT NULL
    )""",
    """CREATE TABLE datums (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID""",
    f"INSERT INTO meta (id, schema_version, node_id) VALUES (0, {SCHEMA_VERSION}, NULL)",
    "INSERT INTO hard_state (id, term, voted_for, commit_index) VALUES (0, 0, NULL, 0)",
    "INSERT INTO snapshot (id, idx, term) VALUES (0, 0, 0)",
    "INSERT INTO applied (id, idx) VALUES (0, 0)",
)

CLUSTER_TABLE: Final = """CREATE TABLE IF NOT EXISTS cluster (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    cluster_id TEXT NOT NULL
)"""
"""The cluster identity (one row, written once, at the first start). Created on first use
rather than by a schema version: a build that predates it ignores the table, and a store
that predates it simply has no identity until its node records one."""

MIGRATIONS: Final[Mapping[int, tuple[str, ...]]] = {}
"""`MIGRATIONS[v]` turns a version-v database into a version-(v + 1) one."""

_CHECKSUM_HEADER: Final = struct.Struct(">qq")  # (index, term), big-endian


def entry_checksum(index: int, term: int, command: bytes) -> int:
    """The CRC-32 of `(index, term, command)` stored with each log entry (unsigned, 32 bits)."""
    return zlib.crc32(command, zlib.crc32(_CHECKSUM_HEADER.pack(index, term)))


def ensure_schema(connection: sqlite3.Connection, path: str) -> None:
    """Create the schema in an empty database, or migrate an older one to `SCHEMA_VERSION`.

    `connection` must be in autocommit mode (isolation_level=None); each step is one
    transaction. Raises `SchemaTooNewError` for a newer database and `CorruptStoreError` for a
    SQLite database that is not a naraft store. sqlite3 errors propagate.
    """
    tables = {
        str(name)
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if not tables:
        _run_transaction(connection, CREATE_STATEMENTS)
        return
    if "meta" not in tables:
        raise CorruptStoreError(path, "is a SQLite database but not a naraft store (no meta table)")
    rows = connection.execute("SELECT schema_version FROM meta WHERE id = 0").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise CorruptStoreError(path, "the meta table has no schema version (corrupted database)")
    version: int = rows[0][0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(path, found_version=version, supported_version=SCHEMA_VERSION)
    while version < SCHEMA_VERSION:
        steps = MIGRATIONS.get(version)
        if steps is None:
            raise CorruptStoreError(path, f"schema version {version} is unknown (no migration)")
        version += 1
        _run_transaction(
            connection, (*steps, f"UPDATE meta SET schema_version = {version} WHERE id = 0")
        )


def _run_transaction(connection: sqlite3.Connection, statements: tuple[str, ...]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            connection.execute(statement)
        connection.execute("COMMIT")
    except BaseException:
        connection.rollback()
        raise
