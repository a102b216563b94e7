"""A node refuses to start on a damaged or foreign database, and without a cluster secret;
a node with the wrong secret cannot join. Real `naraft server` processes, real SQLite files."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from tests.e2e.harness import (
    LocalCluster,
    NodeProcess,
    NodeSpec,
    free_ports,
    local_cluster,
    wait_for,
    write_concurrently,
)

from naraft.client import STATE_PATH
from naraft.cluster import server_command

pytestmark = pytest.mark.e2e

DB_FILE: Final = "naraft.db"
REFUSAL_TIMEOUT_SECONDS: Final = 30.0  # a node that does not refuse is killed after this


@dataclass(frozen=True, slots=True)
class StoppedNode:
    """A clustered node's spec and its data directory, after a clean stop."""

    spec: NodeSpec
    data_dir: Path
    address: str


@pytest.fixture(scope="module")
def stopped_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoppedNode]:
    root = tmp_path_factory.mktemp("stopped")
    with local_cluster(root / "cluster", size=3) as cluster:
        cluster.wait_ready()
        ledger = write_concurrently(cluster.nodes, [f"k-{i}" for i in range(20)], threads=2)
        assert len(ledger.acked()) == 20, ledger.summary()
        node = cluster.nodes[0]
        cluster.wait_caught_up(node)
        cluster.stop()
        yield StoppedNode(node.spec, node.data_dir, node.address)


def copy_of(node: StoppedNode, destination: Path) -> Path:
    """A copy of the node's data directory (database included) at `destination`."""
    shutil.copytree(node.data_dir, destination)
    (destination / "node.log").unlink(missing_ok=True)
    return destination / DB_FILE


def spec_with_data_dir(spec: NodeSpec, data_dir: Path) -> NodeSpec:
    return dataclasses.replace(spec, data_dir=data_dir, log_path=None)


def run_to_exit(
    spec: NodeSpec, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a node that should refuse to start; a node that starts is killed at the timeout."""
    return subprocess.run(
        server_command(spec),
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_SECONDS,
        env=env,
        check=False,
    )


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = lines
    for needle in needles:
        assert needle in line, line
    return line


def last_log_index(connection: sqlite3.Connection) -> int:
    row = connection.execute("SELECT max(idx) FROM log").fetchone()
    assert row is not None
    assert row[0] is not None, "the node's log is empty: nothing to corrupt"
    index: int = row[0]
    return index


def flip_a_command_byte(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        index = last_log_index(connection)
        (command,) = connection.execute(
            "SELECT command FROM log WHERE idx = ?", (index,)
        ).fetchone()
        flipped = bytearray(command)
        flipped[len(flipped) // 2] ^= 0xFF
        connection.execute("UPDATE log SET command = ? WHERE idx = ?", (bytes(flipped), index))
    connection.close()
    return f"log entry {index} fails its checksum"


def change_an_entry_term(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        index = last_log_index(connection)
        connection.execute("UPDATE log SET term = term + 1 WHERE idx = ?", (index,))
    connection.close()
    return f"log entry {index} fails its checksum"


def delete_an_entry(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        index = last_log_index(connection)
        connection.execute("DELETE FROM log WHERE idx = ?", (index - 1,))
    connection.close()
    return "log is not contiguous"


def replace_with_garbage(db: Path) -> str:
    for leftover in db.parent.glob(f"{DB_FILE}-*"):  # -wal, -shm
        leftover.unlink()
    db.write_bytes(bytes((i * 151 + 7) % 256 for i in range(16384)))
    return "not a database"


def truncate_to_half(db: Path) -> str:
    for leftover in db.parent.glob(f"{DB_FILE}-*"):
        leftover.unlink()
    os.truncate(db, db.stat().st_size // 2)
    return "malformed"


def set_a_newer_schema(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET schema_version = 99")
    connection.close()
    return "schema version 99 is newer"


def give_it_to_another_node(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE meta SET node_id = '10.9.9.9:8848'")
    connection.close()
    return "belongs to node '10.9.9.9:8848'"


@pytest.mark.parametrize(
    "damage",
    [
        flip_a_command_byte,
        change_an_entry_term,
        delete_an_entry,
        replace_with_garbage,
        truncate_to_half,
        set_a_newer_schema,
        give_it_to_another_node,
    ],
)
def test_a_node_refuses_to_start_on_a_damaged_database_in_one_line(
    stopped_node: StoppedNode, tmp_path: Path, damage: Callable[[Path], str]
) -> None:
    db = copy_of(stopped_node, tmp_path / "node")
    problem = damage(db)
    result = run_to_exit(spec_with_data_dir(stopped_node.spec, db.parent))
    assert_refused_in_one_line(result, str(db), problem)


def test_an_intact_copy_of_the_same_database_starts(
    stopped_node: StoppedNode, tmp_path: Path
) -> None:
    """The control for the test above: the copy itself is fine, so the damage is the cause."""
    db = copy_of(stopped_node, tmp_path / "node")
    node = NodeProcess(
        dataclasses.replace(
            spec_with_data_dir(stopped_node.spec, db.parent), log_path=tmp_path / "node.log"
        )
    )
    node.start()
    try:
        with httpx.Client(timeout=1.0) as client:
            state: dict[str, Any] = wait_for(
                lambda: client.get(f"{node.url}{STATE_PATH}").json(),
                timeout_seconds=REFUSAL_TIMEOUT_SECONDS,
                what="the intact copy to serve",
            )
        assert state["appliedIndex"] >= 20
        assert node.running
    finally:
        node.terminate()


def clustered_spec(tmp_path: Path, secret_file: Path | None = None) -> NodeSpec:
    """A clustered node (three members on free ports), with no secret unless given."""
    members = tuple(f"127.0.0.1:{p}" for p in free_ports(3))
    return NodeSpec(
        node_id=members[0], peers=members, data_dir=tmp_path / "node", secret_file=secret_file
    )


def env_without_secret() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NARAFT_CLUSTER_SECRET"}


def test_a_clustered_node_without_a_secret_refuses_to_start(tmp_path: Path) -> None:
    result = run_to_exit(clustered_spec(tmp_path), env=env_without_secret())
    assert_refused_in_one_line(result, "cluster secret", "--cluster-secret-file")
    assert not (tmp_path / "node" / DB_FILE).exists()


def test_a_clustered_node_with_an_empty_secret_file_refuses_to_start(tmp_path: Path) -> None:
    secret = tmp_path / "empty.secret"
    secret.write_text("  \n")
    secret.chmod(0o600)
    result = run_to_exit(clustered_spec(tmp_path, secret), env=env_without_secret())
    assert_refused_in_one_line(result, str(secret), "empty")


def refused_a_bad_signature(cluster: LocalCluster, node: NodeProcess) -> bool:
    """Whether `node` counted a peer request refused for its signature (its metrics). With
    another secret comes another default cluster id: that refusal counts too."""
    text = cluster.client.get(f"{node.url}/metrics", timeout=2.0).text
    for reason in ("bad_signature", "cluster_mismatch"):
        prefix = f'naraft_peer_requests_rejected_total{{reason="{reason}"}}'
        for line in text.splitlines():
            if line.startswith(prefix) and float(line.rsplit(" ", 1)[1]) > 0:
                return True
    return False


def test_a_node_with_the_wrong_secret_cannot_join(tmp_path: Path) -> None:
    cluster = LocalCluster(root=tmp_path / "cluster", size=3)
    outsider = cluster.nodes[2]
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-cluster-secret")
    wrong.chmod(0o600)
    outsider.spec = dataclasses.replace(outsider.spec, secret_file=wrong)
    insiders = cluster.nodes[:2]
    try:
        with cluster:
            leader = cluster.leader(among=insiders, timeout_seconds=30)
            assert leader is not outsider
            ledger = write_concurrently(insiders, [f"k-{i}" for i in range(30)], threads=2)
            acked = ledger.acked()
            assert len(acked) == 30, ledger.summary()
            for node in insiders:
                cluster.wait_caught_up(node, among=insiders)
                assert cluster.missing_writes(node, acked) == {}
            # The outsider's messages reach the insiders and are refused, and the other way.
            for node in cluster.nodes:
                wait_for(
                    partial(refused_a_bad_signature, cluster, node),
                    timeout_seconds=30,
                    what=f"{node.address} to refuse a badly signed peer request",
                )
            view = cluster.state(outsider)
            assert view["role"] != "leader"
            assert view["leader"] is None
            assert view["appliedIndex"] == 0
            assert view["commitIndex"] == 0
            assert cluster.present_keys(outsider, list(acked)) == {}
            assert cluster.leader(among=insiders) is leader
    except BaseException:
        sys.stderr.write(cluster.logs() + "\n")
        raise
