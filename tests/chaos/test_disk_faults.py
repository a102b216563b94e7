"""Disk faults on a real node: a power loss that tears the WAL's tail.

(A full disk is in test_disk_full.py.) A power loss that drops
the WAL's unsynced tail and leaves torn garbage after it is repaired by SQLite at restart
with no acknowledged write lost. (Damaged database files are refused at start; that
matrix is in tests/e2e/test_store_faults.py.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Final

import httpx
import pytest

from naraft.chaos.powerloss import lose_unsynced
from naraft.client import kv_path
from naraft.cluster import NodeProcess, NodeSpec, agreed_leader, free_ports, wait_for

pytestmark = pytest.mark.e2e

START_TIMEOUT_SECONDS: Final = 30.0


class StandaloneNode(NodeProcess):
    """One standalone node on a free port, its log beside its data directory."""

    def __init__(self, data_dir: Path, failpoints: str = "") -> None:
        (port,) = free_ports(1)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(
            NodeSpec(
                node_id=f"127.0.0.1:{port}",
                standalone=True,
                data_dir=data_dir,
                failpoints=failpoints,
                log_path=data_dir.parent / f"{data_dir.name}.log",
            )
        )

    def wait_leader(self) -> None:
        """Wait until it leads (`naraft.cluster`'s rule for a one-member cluster)."""

        def leads() -> bool:
            assert self.running, self.log_tail()
            return agreed_leader({self.id: self.status()}, [self.id]) == self.id

        wait_for(leads, timeout_seconds=START_TIMEOUT_SECONDS, what="the node to lead")


def put(client: httpx.Client, node: StandaloneNode, key: str, value: str) -> int | None:
    """The status of a write, or None when the node did not answer."""
    try:
        return client.put(f"{node.url}{kv_path(key)}", json={"value": value}).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed={s}") for s in (3, 4)])
def test_a_torn_wal_tail_after_power_loss_is_repaired_at_restart(tmp_path: Path, seed: int) -> None:
    node = StandaloneNode(tmp_path / "node", failpoints="storage.powerloss=1")
    acked: dict[str, str] = {}
    with httpx.Client(timeout=10.0) as client:
        try:
            node.start()
            node.wait_leader()
            for i in range(30):
                assert put(client, node, f"k-{i}", f"value-{i}") == 200
                acked[f"k-{i}"] = f"value-{i}"
            node.kill()
            lose_unsynced(node.data_dir / "naraft.db", random.Random(seed))
            wal = node.data_dir / "naraft.db-wal"
            with wal.open("ab") as file:  # always a torn tail, whatever the draw did
                file.write(random.Random(seed).randbytes(3000))
            # The power cut may drop a write that was in flight at the kill (the leader's
            # quota entry, a deferred applied-state flush), never an acked one: the reads
            # after the restart check that.
            node.start()
            node.wait_leader()
            for key, value in acked.items():
                answer = client.get(f"{node.url}{kv_path(key)}")
                assert answer.status_code == 200, (key, answer.text)
                assert answer.json()["value"] == value
        finally:
            node.stop()
