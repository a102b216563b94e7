"""`naraft repair`: offline fixes of a stopped node's data directory.

`naraft repair skip-entry --data-dir DIR --index N` replaces the command of log entry N with
the no-op (an empty command, what a new leader appends), keeping its index and term and
giving it the checksum the store verifies. It is for an entry no build can apply: since
apply became total such an entry is rejected and recorded instead, but logs written by
older builds exist, and an older build that meets one stops at it on every restart.

The entry keeps its term, so Raft's log matching still holds between a repaired log and
one that holds the original command; repair every member that holds the entry, since any
of them may become leader and send its own copy. It refuses a directory a running node
holds (its `LOCK`, or a listener on the address the store records), an index outside the
stored log, and an entry already applied (its effect is in the state; a no-op would not
undo it). Exit status: 0 done (or shown, with `--dry-run`), 1 refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from naraft.config import parse_address
from naraft.errors import InvalidArgumentError
from naraft.node import StartupError, lock_data_dir
from naraft.storage.schema import entry_checksum

DB_FILE: Final = "naraft.db"  # as naraft.node names it
PREVIEW_CHARS: Final = 300


class RepairRefusedError(Exception):
    """The repair cannot be done; the message is the one line the operator sees."""


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    index: int
    term: int
    command: bytes


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock (the one a running node holds) for the repair."""
    try:
        fd = lock_data_dir(data_dir)
    except StartupError as error:
        raise RepairRefusedError(f"a node is running, or {error}: stop it first") from None
    try:
        yield
    finally:
        os.close(fd)


def _listening(address: str) -> bool:
    """Whether something accepts connections at the node's recorded `host:port`."""
    try:
        host, port = parse_address(address, field="node id")
    except InvalidArgumentError:
        return False
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _single(connection: sqlite3.Connection, sql: str) -> tuple[object, ...]:
    row = connection.execute(sql).fetchone()
    if row is None:
        raise RepairRefusedError(f"the store is damaged: {sql!r} found no row")
    return tuple(row)


def _as_int(value: object) -> int:
    if not isinstance(value, int):
        raise RepairRefusedError(f"the store is damaged: {value!r} is not an integer")
    return value


def preview(command: bytes) -> str:
    """The command as the operator reads it: text with escapes, cut at PREVIEW_CHARS."""
    text = command.decode("utf-8", "backslashreplace")
    shown = text[:PREVIEW_CHARS].encode("unicode_escape").decode("ascii")
    return shown + (f"... ({len(command)} bytes)" if len(text) > PREVIEW_CHARS else "")


def find_entry(connection: sqlite3.Connection, index: int) -> LoggedEntry:
    """Entry `index`, if it may be replaced; RepairRefusedError saying why not otherwise."""
    (snapshot_index,) = _single(connection, "SELECT idx FROM snapshot WHERE id = 0")
    (applied_index,) = _single(connection, "SELECT idx FROM applied WHERE id = 0")
    row = connection.execute("SELECT term, command FROM log WHERE idx = ?", (index,)).fetchone()
    if row is None:
        bounds = connection.execute("SELECT min(idx), max(idx) FROM log").fetchone()
        raise RepairRefusedError(
            f"entry {index} is not in the log (it holds {bounds[0]}..{bounds[1]}, "
            f"snapshot at {snapshot_index})"
        )
    if index <= _as_int(applied_index):
        raise RepairRefusedError(
            f"entry {index} is already applied (applied index {applied_index}): "
            "its effect is in the state, replacing it would change nothing"
        )
    term, command = row
    if not isinstance(command, bytes):
        raise RepairRefusedError(f"entry {index} holds a {type(command).__name__}, not bytes")
    return LoggedEntry(index=index, term=_as_int(term), command=command)


@click.group()
def repair() -> None:
    """Offline repairs of a stopped node's data directory."""


@repair.command("skip-entry")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="the stopped node's data directory",
)
@click.option("--index", type=click.IntRange(1), required=True, help="the log index to skip")
@click.option("--dry-run", is_flag=True, help="show the entry, change nothing")
def skip_entry_command(data_dir: Path, index: int, dry_run: bool) -> None:
    """Replace log entry INDEX's command with a no-op (same index and term)."""
    try:
        replace_with_noop(data_dir, index, dry_run=dry_run)
    except RepairRefusedError as error:
        click.echo(f"naraft: {error}", err=True)
        raise SystemExit(1) from None


def replace_with_noop(data_dir: Path, index: int, *, dry_run: bool) -> LoggedEntry:
    """Do `skip-entry`, printing what it replaces; returns the entry as it was."""
    database = data_dir / DB_FILE
    if not database.is_file():
        raise RepairRefusedError(f"{database} does not exist: not a naraft data directory")
    with _locked(data_dir):
        connection = sqlite3.connect(database, isolation_level=None)
        try:
            connection.execute("PRAGMA synchronous = FULL")
            (node_id,) = _single(connection, "SELECT node_id FROM meta WHERE id = 0")
            if isinstance(node_id, str) and _listening(node_id):
                raise RepairRefusedError(
                    f"something answers at {node_id}, the address this store belongs to: "
                    "stop the node first"
                )
            entry = find_entry(connection, index)
            click.echo(
                f"entry {entry.index} (term {entry.term}, {len(entry.command)} bytes): "
                f"{preview(entry.command)}"
            )
            if dry_run:
                click.echo("dry run: nothing changed")
                return entry
            if not entry.command:
                click.echo("it is a no-op already: nothing changed")
                return entry
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    "UPDATE log SET command = ?, checksum = ? WHERE idx = ?",
                    (b"", entry_checksum(entry.index, entry.term, b""), entry.index),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.rollback()
                raise
            click.echo(f"replaced with a no-op (index {entry.index}, term {entry.term} kept)")
            return entry
        except sqlite3.Error as error:
            raise RepairRefusedError(f"cannot repair {database}: {error}") from None
        finally:
            connection.close()
