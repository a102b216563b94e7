"""Disk faults on a real node: a power loss that tears the WAL's tail.

(A full disk is in test_disk_full.py.) A power loss that drops
the WAL's unsynced tail and leaves torn garbage after it is repaired by SQLite at restart
with no acknowledged write lost. (Damaged database files are refused at start; that
matrix is in tests/e2e/test_store_faults.py.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import httpx
import pytest

from naraft.chaos.cluster import free_ports
from naraft.chaos.powerloss import lose_unsynced

pytestmark = pytest.mark.e2e

START_TIMEOUT_SECONDS: Final = 30.0


class StandaloneNode:
    """One `naraft server --standalone` process; `stop` always ends it."""

    def __init__(self, data_dir: Path, failpoints: str = "") -> None:
        self.data_dir = data_dir
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self._failpoints = failpoints
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "NARAFT_FAILPOINTS": self._failpoints}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "naraft",
                    "server",
                    "--standalone",
                    "--id",
                    f"127.0.0.1:{self.port}",
                    "--data-dir",
                    str(self.data_dir),
                ],  # fmt: skip
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_leader(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        last: object = None
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                last = client.get(f"{self.url}/nacos/v1/ns/raft/state").json()
                if isinstance(last, dict) and last.get("role") == "leader":
                    return
            except httpx.HTTPError as error:
                last = error
            time.sleep(0.1)
        raise AssertionError(f"no leader in {START_TIMEOUT_SECONDS} s; last: {last!r}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def put(client: httpx.Client, node: StandaloneNode, key: str, value: str) -> int | None:
    """The status of a write, or None when the node did not answer."""
    try:
        return client.put(f"{node.url}/naraft/v1/kv/{key}", json={"value": value}).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed={s}") for s in (3, 4)])
def test_a_torn_wal_tail_after_power_loss_is_repaired_at_restart(tmp_path: Path, seed: int) -> None:
    node = StandaloneNode(tmp_path / "node", failpoints="storage.powerloss=1")
    acked: dict[str, str] = {}
    with httpx.Client(timeout=10.0) as client:
        try:
            node.start()
            node.wait_leader(client)
            for i in range(30):
                assert put(client, node, f"k-{i}", f"value-{i}") == 200
                acked[f"k-{i}"] = f"value-{i}"
            node.kill()
            lost = lose_unsynced(node.data_dir / "naraft.db", random.Random(seed))
            wal = node.data_dir / "naraft.db-wal"
            with wal.open("ab") as file:  # always a torn tail, whatever the draw did
                file.write(random.Random(seed).randbytes(3000))
            assert lost.dropped_bytes == 0  # nothing acked was unsynced
            node.start()
            node.wait_leader(client)
            for key, value in acked.items():
                answer = client.get(f"{node.url}/naraft/v1/kv/{key}")
                assert answer.status_code == 200, (key, answer.text)
                assert answer.json()["value"] == value
        finally:
            node.stop()
