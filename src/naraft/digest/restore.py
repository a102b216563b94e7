"""Restore a snapshot file into a fresh data directory (`naraft snapshot restore`).

The datums go into a new SQLite store a few frames at a time (one transaction per 16 MiB,
so memory holds that much), built in bulk (no WAL, one fsync at the end), beside the final
name. Only once the reader has checked the
whole file (count, SHA-256, state checksum) does the last transaction store the applied
point, as a snapshot boundary: the log is empty and continues after the snapshot's index,
the hard state has its term and commits it. The store then takes its final name. A file
that fails a check leaves nothing behind.

The node id and the cluster id are recorded as a node's first start would record them;
the cluster id comes from a new cluster token (`config.cluster_id_of`), so members of the
cluster the snapshot came from refuse the restored node's requests (and it theirs).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from naraft.digest.snapshot_file import SnapshotHeader, SnapshotReader
from naraft.raft import HardState, Index, SnapshotMeta, Term
from naraft.state.datums import Datum, DatumChanges
from naraft.storage.base import WriteBatch
from naraft.storage.sqlite import open_store

PARTIAL_SUFFIX: Final = ".restoring"
BATCH_BYTES: Final = 16 << 20  # datums per transaction (and fsync): a few frames' worth


def restore_store(
    reader: SnapshotReader,
    db_path: Path,
    *,
    node_id: str,
    cluster_id: str,
    on_frame: Callable[[int], None] = lambda _records: None,
) -> SnapshotHeader:
    """Write the datums of `reader` as the applied state of a new store at `db_path` (which
    must not exist). Raises `SnapshotFormatError` (nothing left behind) or `StoreError`."""
    header = reader.header
    partial = db_path.with_name(db_path.name + PARTIAL_SUFFIX)
    done = False
    store = open_store(partial, bulk=True)
    try:
        store.set_node_id(node_id)
        store.set_cluster_id(cluster_id)
        puts: dict[str, Datum] = {}
        size = 0
        for rows in reader.frames():
            puts.update(rows)
            size += sum(len(key) + len(datum.value) for key, datum in rows)
            if size >= BATCH_BYTES:
                store.write(WriteBatch(datum_changes=DatumChanges(puts=puts, deletes=frozenset())))
                puts, size = {}, 0
            on_frame(len(rows))
        if puts:
            store.write(WriteBatch(datum_changes=DatumChanges(puts=puts, deletes=frozenset())))
        point = SnapshotMeta(index=Index(header.index), term=Term(header.term))
        store.write(
            WriteBatch(
                hard_state=HardState(term=point.term, voted_for=None, commit=point.index),
                snapshot=point,
                applied_index=point.index,
            )
        )
        done = True
    finally:
        store.close()
        if not done:
            for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-wal", "-shm"))):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    os.replace(partial, db_path)
    _sync_directory(db_path.parent)
    return header


def _sync_directory(path: Path) -> None:
    """Make the rename durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
