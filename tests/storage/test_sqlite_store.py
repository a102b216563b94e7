"""SqliteStore only: the file format, refusing bad files, and surviving a crash mid-write."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import cast

import pytest

from naraft.raft.types import Entry, HardState, Index, NodeId, Term
from naraft.state.datums import Datum, DatumChanges
from naraft.storage import (
    ClusterIdMismatchError,
    CorruptStoreError,
    SchemaTooNewError,
    StoreError,
    StoreFullError,
    WriteBatch,
    open_store,
)
from naraft.storage.schema import SCHEMA_VERSION


def write_then_close(path: Path, *batches: WriteBatch) -> None:
    store = open_store(path)
    try:
        for batch in batches:
            store.write(batch)
    finally:
        store.close()


def three_entries(path: Path) -> None:
    write_then_close(
        path,
        WriteBatch(
            entries=tuple(Entry(Term(1), Index(i), f"command {i}".encode()) for i in (1, 2, 3))
        ),
    )


def run_sql(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute(sql, parameters)


def flip_a_byte_of_entry_2(path: Path) -> None:
    three_entries(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        (command,) = connection.execute("SELECT command FROM log WHERE idx = 2").fetchone()
        flipped = bytes([command[0] ^ 0x01]) + command[1:]
        connection.execute("UPDATE log SET command = ? WHERE idx = 2", (flipped,))


def delete_entry_2(path: Path) -> None:
    three_entries(path)
    run_sql(path, "DELETE FROM log WHERE idx = 2")


def mark_schema_too_new(path: Path) -> None:
    write_then_close(path)
    run_sql(path, "UPDATE meta SET schema_version = ?", (SCHEMA_VERSION + 1,))


def write_garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def create_a_foreign_database(path: Path) -> None:
    run_sql(path, "CREATE TABLE notes (text TEXT)")


def delete_the_hard_state_row(path: Path) -> None:
    write_then_close(path)
    run_sql(path, "DELETE FROM hard_state")


def nothing(path: Path) -> None:
    """Leaves the file's directory missing (the case's path points into a missing one)."""


def open_and_load(path: Path) -> None:
    store = open_store(path)
    try:
        store.load()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("spoil", "file_name", "error_type", "problem"),
    [
        pytest.param(
            flip_a_byte_of_entry_2,
            "naraft.db",
            CorruptStoreError,
            "log entry 2 fails its checksum (corrupted database)",
            id="entry-checksum",
        ),
        pytest.param(
            delete_entry_2,
            "naraft.db",
            CorruptStoreError,
            "expected entry 2, found 3",
            id="log-gap",
        ),
        pytest.param(
            mark_schema_too_new,
            "naraft.db",
            SchemaTooNewError,
            f"schema version {SCHEMA_VERSION + 1} is newer than this naraft supports",
            id="schema-too-new",
        ),
        pytest.param(
            write_garbage,
            "naraft.db",
            CorruptStoreError,
            "file is not a database",
            id="not-a-database",
        ),
        pytest.param(
            create_a_foreign_database,
            "naraft.db",
            CorruptStoreError,
            "not a naraft store",
            id="foreign-database",
        ),
        pytest.param(
            delete_the_hard_state_row,
            "naraft.db",
            CorruptStoreError,
            "table hard_state holds 0 rows",
            id="missing-row",
        ),
        pytest.param(
            nothing,
            "missing/naraft.db",
            StoreError,
            "cannot open the store: unable to open database file",
            id="missing-directory",
        ),
    ],
)
def test_a_bad_file_is_refused_with_one_line_naming_it(
    tmp_path: Path,
    spoil: Callable[[Path], None],
    file_name: str,
    error_type: type[StoreError],
    problem: str,
) -> None:
    path = tmp_path / file_name
    spoil(path)
    with pytest.raises(StoreError) as refused:
        open_and_load(path)
    message = str(refused.value)
    assert type(refused.value) is error_type
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert problem in message
    assert refused.value.path == str(path)


def test_schema_too_new_carries_both_versions(tmp_path: Path) -> None:
    mark_schema_too_new(tmp_path / "naraft.db")
    with pytest.raises(SchemaTooNewError) as refused:
        open_store(tmp_path / "naraft.db")
    assert (refused.value.found_version, refused.value.supported_version) == (
        SCHEMA_VERSION + 1,
        SCHEMA_VERSION,
    )


def test_the_database_is_in_wal_mode_with_the_documented_tables(tmp_path: Path) -> None:
    write_then_close(tmp_path / "naraft.db")
    with closing(sqlite3.connect(tmp_path / "naraft.db")) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")} - {
            "sqlite_autoindex_datums_1"
        }
        (version,) = connection.execute("SELECT schema_version FROM meta").fetchone()
    assert mode == "wal"
    assert tables >= {"meta", "hard_state", "log", "snapshot", "applied", "datums"}
    assert version == SCHEMA_VERSION


def test_a_write_that_fails_midway_is_rolled_back(tmp_path: Path) -> None:
    store = open_store(tmp_path / "naraft.db")
    store.write(WriteBatch(entries=(Entry(Term(1), Index(1), b"one"),)))
    before = store.load()
    unbindable = Datum(cast(bytes, object()), 2)  # sqlite3 cannot store it
    with pytest.raises(sqlite3.Error):
        store.write(
            WriteBatch(
                hard_state=HardState(term=Term(2)),
                entries=(Entry(Term(2), Index(2), b"two"),),
                datum_changes=DatumChanges(puts={"k": unbindable}, deletes=frozenset()),
            )
        )
    assert store.load() == before
    store.write(WriteBatch(entries=(Entry(Term(2), Index(2), b"two"),)))  # still usable
    assert len(store.load().entries) == 2
    store.close()


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from naraft.raft.types import Entry, HardState, Index, Term
    from naraft.state.datums import Datum, DatumChanges
    from naraft.storage import WriteBatch, open_store


    class DiesWhenRead(Mapping[str, Datum]):
        # The process dies while the store reads the datums: after the hard state and the
        # entries were written inside the transaction, before COMMIT.
        def __getitem__(self, key: str) -> Datum:
            os._exit(17)

        def __iter__(self) -> Iterator[str]:
            return iter(["k"])

        def __len__(self) -> int:
            return 1


    store = open_store(Path(sys.argv[1]))
    big = b"x" * 100_000  # 5 MB of entries: more than the page cache, so it spills to the WAL
    store.write(
        WriteBatch(
            hard_state=HardState(term=Term(9)),
            entries=tuple(Entry(Term(9), Index(i), big) for i in range(3, 53)),
            datum_changes=DatumChanges(puts=DiesWhenRead(), deletes=frozenset()),
        )
    )
    """
)


def test_a_crash_in_the_middle_of_a_write_leaves_the_previous_state(tmp_path: Path) -> None:
    path = tmp_path / "naraft.db"
    write_then_close(
        path,
        WriteBatch(
            hard_state=HardState(term=Term(1), voted_for=NodeId("n1"), commit=Index(1)),
            entries=(Entry(Term(1), Index(1), b"one"), Entry(Term(1), Index(2), b"two")),
            applied_index=Index(1),
            datum_changes=DatumChanges(puts={"k": Datum(b"v", 1)}, deletes=frozenset()),
        ),
    )
    store = open_store(path)
    before = store.load()
    store.close()

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(path)],
        capture_output=True,
        check=False,
        timeout=60,
    )

    assert crashed.returncode == 17, crashed.stderr.decode()
    assert Path(f"{path}-wal").stat().st_size > 1_000_000  # the torn transaction reached disk
    store = open_store(path)
    assert store.load() == before
    store.close()


def test_the_store_refuses_use_from_a_thread_other_than_its_owner(tmp_path: Path) -> None:
    store = open_store(tmp_path / "naraft.db")
    with ThreadPoolExecutor(max_workers=1) as other_thread:
        attempt = other_thread.submit(store.load)
        with pytest.raises(sqlite3.ProgrammingError, match="thread"):
            attempt.result()
    store.close()


def test_a_full_disk_rolls_the_batch_back_and_the_same_batch_fits_once_space_returns(
    tmp_path: Path,
) -> None:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {mounted.stderr.strip()}")
    try:
        path = mount_point / "naraft.db"
        store = open_store(path)
        try:
            store.write(WriteBatch(entries=(Entry(Term(1), Index(1), b"small"),)))
            big = WriteBatch(
                hard_state=HardState(term=Term(2), voted_for=NodeId("a")),
                entries=tuple(Entry(Term(2), Index(i), bytes(100_000)) for i in range(2, 22)),
            )
            with pytest.raises(StoreFullError) as raised:
                store.write(big)
            assert str(raised.value).startswith(f"{path}: ")
            assert "disk is full" in str(raised.value)
            # Nothing of the batch is stored: the hard state and the log are as before.
            state = store.load()
            assert state.hard_state == HardState(term=Term(0), voted_for=None)
            assert [e.index for e in state.entries] == [1]
            subprocess.run(["mount", "-o", "remount,size=16m", str(mount_point)], check=True)
            store.write(big)
            state = store.load()
            assert state.hard_state.term == 2
            assert [e.index for e in state.entries] == list(range(1, 22))
        finally:
            store.close()
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def test_a_cluster_id_mismatch_names_the_data_directory_and_both_ids(tmp_path: Path) -> None:
    store = open_store(tmp_path / "naraft.db")
    store.set_cluster_id("1111222233334444")
    store.close()
    store = open_store(tmp_path / "naraft.db")
    with pytest.raises(ClusterIdMismatchError) as refused:
        store.set_cluster_id("5555666677778888")
    store.close()
    message = str(refused.value)
    assert f"data directory {tmp_path} " in message
    assert "cluster 1111222233334444" in message
    assert "cluster 5555666677778888" in message
    assert "\n" not in message


def test_a_store_older_than_the_cluster_identity_adopts_the_first_id(tmp_path: Path) -> None:
    """Data directories written before cluster ids existed have no `cluster` table: the
    first start records the id it computes, and from then on the store is checked."""
    three_entries(tmp_path / "naraft.db")
    with closing(sqlite3.connect(tmp_path / "naraft.db")) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert "cluster" not in tables
    store = open_store(tmp_path / "naraft.db")
    assert store.set_cluster_id("1111222233334444") is True
    assert len(store.load().entries) > 0
    store.close()
    store = open_store(tmp_path / "naraft.db")
    with pytest.raises(ClusterIdMismatchError):
        store.set_cluster_id("5555666677778888")
    store.close()
