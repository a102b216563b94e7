"""The storage power-loss failpoint: a real process writes, is killed with SIGKILL, and
`lose_unsynced` cuts its WAL back to what was synced (plus a torn tail)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from naraft.chaos.powerloss import PowerLossError, lose_unsynced
from naraft.storage import open_store

WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from naraft.raft.types import Entry, Index, Term
    from naraft.storage import WriteBatch, open_store

    store = open_store(Path(sys.argv[1]))
    for i in range(1, int(sys.argv[2]) + 1):
        store.write(WriteBatch(entries=(Entry(Term(1), Index(i), b"command %d" % i),)))
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def write_then_kill(path: Path, count: int, failpoints: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(path), str(count)],
        env={**os.environ, "NARAFT_FAILPOINTS": failpoints},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "written", done.stderr
    assert done.returncode == -9


def entries_after_reopen(path: Path) -> int:
    store = open_store(path)
    try:
        return len(store.load().entries)
    finally:
        store.close()


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed={s}") for s in range(4)])
def test_synced_writes_survive_a_power_loss_with_a_torn_tail(tmp_path: Path, seed: int) -> None:
    db = tmp_path / "naraft.db"
    write_then_kill(db, 25, "storage.powerloss=1")
    lost = lose_unsynced(db, random.Random(seed))
    assert lost.dropped_bytes == 0  # every write was fsynced before it returned
    assert entries_after_reopen(db) == 25


def test_a_disk_that_lies_about_fsync_loses_acknowledged_writes(tmp_path: Path) -> None:
    """The planted bug: with `storage.lying_fsync` nothing since open is synced, so the
    emulated power loss drops every write; the campaign's checks must see that."""
    db = tmp_path / "naraft.db"
    write_then_kill(db, 25, "storage.lying_fsync=1")
    lost = lose_unsynced(db, random.Random(1))
    assert lost.dropped_bytes > 0
    assert entries_after_reopen(db) == 0


def test_power_loss_needs_the_failpoint(tmp_path: Path) -> None:
    db = tmp_path / "naraft.db"
    write_then_kill(db, 3, "")
    with pytest.raises(PowerLossError, match="failpoint is off"):
        lose_unsynced(db, random.Random(0))
