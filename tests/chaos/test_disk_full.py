"""A full disk on a real node: it refuses writes with a clear error, keeps serving reads,
corrupts nothing, and takes writes again by itself once space is freed.

Each data directory sits on its own size-limited tmpfs (skipped where mounting is not
allowed); "freeing space" is a remount with a larger size. Writes are classified by their
answer: 200 acknowledged (must be everywhere at the end), 507 refused (must be nowhere:
the node appended nothing), anything else indeterminate (may or may not be there).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, naraft_command, wait_for

from naraft.client import WriteOutcome, body_of, classify_write

pytestmark = pytest.mark.e2e

BIG_VALUE: Final = "v" * 100_000  # the kv API's largest values fill a few MiB quickly
ROOMY: Final = "64m"


def mount_tmpfs(path: Path, size: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {done.stderr.strip()}")


def resize_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def used_kib(path: Path) -> int:
    out = subprocess.run(
        ["df", "--output=used", "-k", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@contextlib.contextmanager
def tmpfs_data_dirs(cluster: LocalCluster, size: str) -> Iterator[None]:
    """Mount a tmpfs of `size` on every node's data directory (before the nodes start). The
    cluster keeps its node logs beside them (`log_dir`), so they take no space there and
    outlive the mount."""
    mounted: list[Path] = []
    try:
        for node in cluster.nodes:
            mount_tmpfs(node.data_dir, size)
            mounted.append(node.data_dir)
            assert node.log_path.parent != node.data_dir
        yield
    except BaseException:
        sys.stderr.write(cluster.logs() + "\n")
        raise
    finally:
        cluster.stop()
        for path in mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class Ledger:
    """What each write's answer says about it."""

    def __init__(self) -> None:
        self.acked: dict[str, str] = {}
        self.refused: dict[str, httpx.Response] = {}
        self.unknown: set[str] = set()

    def put(self, cluster: LocalCluster, node: NodeProcess, key: str, value: str) -> int:
        try:
            answer = cluster.put(node, key, value)
        except httpx.HTTPError:
            self.unknown.add(key)
            return 0
        outcome = classify_write(answer.status_code, body_of(answer.content))
        if outcome is WriteOutcome.APPLIED:
            self.acked[key] = value
        elif outcome is WriteOutcome.NOT_APPLIED:
            self.refused[key] = answer
        else:
            self.unknown.add(key)
        return answer.status_code


def fill_until_refused(cluster: LocalCluster, node: NodeProcess, ledger: Ledger) -> httpx.Response:
    """Write big values to `node` until it answers 507; return that answer."""
    for i in range(200):
        if ledger.put(cluster, node, f"big-{i}", f"{i}{BIG_VALUE}") == 507:
            return ledger.refused[f"big-{i}"]
    raise AssertionError(f"{node.address}'s disk never filled\n{node.log_tail()}")


def check_store_intact(node: NodeProcess) -> None:
    with contextlib.closing(sqlite3.connect(node.data_dir / "naraft.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def assert_clean_log(node: NodeProcess) -> None:
    assert not node.tracebacks(), node.log_tail()


def test_a_full_disk_refuses_writes_serves_reads_and_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    cluster = LocalCluster(root=tmp_path / "one", size=1, log_dir=tmp_path / "one")
    (node,) = cluster.nodes
    ledger = Ledger()
    with tmpfs_data_dirs(cluster, "2m"), cluster:
        cluster.wait_ready()
        client = cluster.client
        for i in range(10):
            assert ledger.put(cluster, node, f"small-{i}", f"value-{i}") == 200
        instance = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080", "ephemeral": "false"}
        assert client.post(f"{node.url}/nacos/v1/ns/instance", params=instance).text == "ok"

        refused = fill_until_refused(cluster, node, ledger)
        body = refused.json()
        assert body["reason"] == "disk-full"
        assert body["outcome"] == "not-applied"
        assert "disk is full" in body["error"]
        assert str(node.data_dir / "naraft.db") in body["error"]
        # The node is alive and says why it refuses writes.
        assert node.running, node.log_tail()
        state = cluster.state(node)
        assert "disk is full" in (state["diskFull"] or "")
        metrics = client.get(f"{node.url}/metrics").text
        assert "naraft_storage_disk_full 1.0" in metrics
        shown = naraft_command("status", "--server", node.url, env={**os.environ, "COLUMNS": "300"})
        assert shown.returncode == 0, shown.stderr
        assert f"{node.address}: disk full, refusing writes" in shown.stdout

        # Reads go on: local kv reads and the Nacos API's reads.
        for key, value in ledger.acked.items():
            answer = cluster.get(node, key, consistency="local")
            assert answer.status_code == 200, key
            assert answer.json()["value"] == value, key
        listed = client.get(f"{node.url}/nacos/v1/ns/instance/list", params={"serviceName": "svc"})
        assert listed.status_code == 200
        assert [h["ip"] for h in listed.json()["hosts"]] == ["10.0.0.1"]
        # A linearizable read needs a working leader: refused the same clear way.
        linearizable = cluster.get(node, "small-0", consistency="linearizable")
        assert linearizable.status_code == 507
        assert linearizable.json()["reason"] == "disk-full"
        # Nacos writes get 503 (Nacos clients then try another server) and change nothing.
        other = {**instance, "ip": "10.0.0.2"}
        answer = client.post(f"{node.url}/nacos/v1/ns/instance", params=other)
        assert answer.status_code == 503
        assert "disk is full" in answer.text
        listed = client.get(f"{node.url}/nacos/v1/ns/instance/list", params={"serviceName": "svc"})
        assert [h["ip"] for h in listed.json()["hosts"]] == ["10.0.0.1"]

        # Space returns: the node takes writes again by itself, no restart.
        resize_tmpfs(node.data_dir, ROOMY)
        attempts = iter(range(1000))
        wait_for(
            lambda: ledger.put(cluster, node, f"after-{next(attempts)}", "space is back") == 200,
            timeout_seconds=15,
            what="a write to succeed once space is back",
            interval_seconds=0.2,
        )
        assert cluster.state(node)["diskFull"] is None
        assert cluster.missing_writes(node, ledger.acked, consistency="linearizable") == {}

        # kill -9 and restart: everything acknowledged is there, nothing refused is.
        node.kill()
        check_store_intact(node)
        node.start()
        cluster.wait_ready()
        assert cluster.missing_writes(node, ledger.acked, consistency="linearizable") == {}
        assert cluster.present_keys(node, ledger.refused) == {}
        listed = client.get(f"{node.url}/nacos/v1/ns/instance/list", params={"serviceName": "svc"})
        assert [h["ip"] for h in listed.json()["hosts"]] == ["10.0.0.1"]
        assert_clean_log(node)


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_a_node_whose_disk_fills_stops_taking_part_and_rejoins_when_space_returns(
    tmp_path: Path, role: str
) -> None:
    """The other two go on (a full leader is replaced; a full follower acks nothing, so the
    leader commits with the other one); the full node refuses writes and serves local
    reads; once space returns it catches up by itself and every node holds every write."""
    ledger = Ledger()
    cluster = LocalCluster(root=tmp_path / "three", log_dir=tmp_path / "three")
    with tmpfs_data_dirs(cluster, ROOMY), cluster:
        leader = cluster.wait_ready()
        full = leader if role == "leader" else next(n for n in cluster.nodes if n is not leader)
        for i in range(10):
            assert ledger.put(cluster, full, f"small-{i}", f"value-{i}") == 200
        # Leave the node about 1.5 MiB to fill.
        resize_tmpfs(full.data_dir, f"{used_kib(full.data_dir) + 1536}k")
        refused = fill_until_refused(cluster, full, ledger)
        assert refused.json()["reason"] == "disk-full"

        # The other two have (or elect) a leader and take writes.
        others = [n for n in cluster.nodes if n is not full]
        serving = cluster.leader(among=others, exclude=full.address, timeout_seconds=20)
        assert (serving is leader) == (role == "follower")
        for i in range(10):
            assert ledger.put(cluster, serving, f"during-{i}", f"value-{i}") == 200
        # The full node still serves local reads of what it had applied.
        assert cluster.missing_writes(full, {"small-0": "value-0"}) == {}
        assert ledger.put(cluster, full, "to-full-node", "x") == 507

        resize_tmpfs(full.data_dir, ROOMY)
        cluster.wait_caught_up(full, timeout_seconds=30)
        assert cluster.state(full)["diskFull"] is None
        for node in cluster.nodes:
            assert cluster.missing_writes(node, ledger.acked) == {}, node.address
            assert cluster.present_keys(node, ledger.refused) == {}, node.address
            assert_clean_log(node)
        for node in cluster.nodes:
            node.terminate()
            check_store_intact(node)
