"""Emulated power loss for a node run with the `storage.powerloss` failpoint.

`kill -9` alone cannot lose what a process wrote but never fsynced: the page cache
survives it (etcd #14370, #14143). After killing the node, `lose_unsynced` puts its
database files where a power cut would leave them: the WAL truncated to the length the
store last synced (recorded by the failpoint in `<db>-synced`), plus, sometimes, a torn
tail of random bytes, and the shared-memory index gone.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SYNCED_SUFFIX: Final = "-synced"
MAX_TORN_BYTES: Final = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerLoss:
    """What `lose_unsynced` did to one database."""

    wal_bytes_before: int
    synced_bytes: int
    torn_bytes: int

    @property
    def dropped_bytes(self) -> int:
        return max(0, self.wal_bytes_before - self.synced_bytes)


class PowerLossError(RuntimeError):
    """The database at `path` was not run with the power-loss failpoint."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def lose_unsynced(db_path: Path, rng: random.Random) -> PowerLoss:
    """Drop the unsynced tail of `db_path`'s WAL, as a power cut would. Call it only while
    the node is dead (after SIGKILL)."""
    synced_file = Path(f"{db_path}{SYNCED_SUFFIX}")
    try:
        text = synced_file.read_text().strip()
    except FileNotFoundError:
        raise PowerLossError(db_path, "no -synced file: the failpoint is off") from None
    if not (text.isascii() and text.isdigit()):
        raise PowerLossError(db_path, f"-synced file holds {text[:40]!r}, not a length")
    synced = int(text)
    wal = Path(f"{db_path}-wal")
    before = wal.stat().st_size if wal.exists() else 0
    torn = 0
    if wal.exists():
        with wal.open("r+b") as file:
            file.truncate(min(synced, before))
            if rng.random() < 0.5:
                torn = rng.randint(1, MAX_TORN_BYTES)
                file.seek(0, os.SEEK_END)
                file.write(rng.randbytes(torn))
            file.flush()
            os.fsync(file.fileno())
    Path(f"{db_path}-shm").unlink(missing_ok=True)
    return PowerLoss(wal_bytes_before=before, synced_bytes=synced, torn_bytes=torn)
