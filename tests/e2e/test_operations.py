"""What an operator sees of a real cluster. Health that tells the truth: readiness turns 503
within one election timeout of losing the quorum, the Nacos health endpoints say DOWN
meanwhile, and all is well again once the stopped members are back. `naraft status`: full
ids when piped, JSON with --json, exit 1 and one line while a member is down. `naraft
cluster up` on a taken port: one line, exit 1, nothing started. One cluster for the module."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, local_cluster, naraft_command, wait_for

from naraft.client import (
    ACTUATOR_HEALTH_PATH,
    CONFIG_HEALTH_PATH,
    LIVENESS_PATH,
    OPERATOR_METRICS_PATH,
    READINESS_PATH,
    SERVER_HEALTH_PATH,
)

TICK_MS = 100
ELECTION_TICKS = 10
ELECTION_SECONDS = TICK_MS * ELECTION_TICKS / 1000
# what the measurement adds to the rule's bound: the poll interval and an HTTP round trip
# on a loaded 2-core machine
SLACK_SECONDS = 0.3

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("health")
    timers = ("--tick-ms", str(TICK_MS), "--election-ticks", str(ELECTION_TICKS))
    with local_cluster(root, size=3, extra_args=timers) as running:
        running.wait_ready()
        yield running


def readiness(node: NodeProcess) -> httpx.Response:
    return httpx.get(f"{node.url}{READINESS_PATH}", timeout=1.0)


def all_ready(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        wait_for(
            lambda node=node: readiness(node).status_code == 200,  # type: ignore[misc]
            timeout_seconds=20,
            what=f"{node.id} to be ready",
        )


def seconds_until_unready(node: NodeProcess, since: float) -> tuple[float, str]:
    """Poll readiness until 503; the time since `since` and the body."""

    def unready() -> str | None:
        answer = readiness(node)
        return answer.text if answer.status_code == 503 else None

    body = wait_for(
        unready,
        timeout_seconds=10,
        what=f"{node.id} to turn unready",
        interval_seconds=0.02,
    )
    return time.monotonic() - since, body


def assert_down(node: NodeProcess) -> None:
    health = httpx.get(f"{node.url}{SERVER_HEALTH_PATH}", timeout=1.0)
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "DOWN"
    assert "DOWN" in health.json()["msg"]
    metrics = httpx.get(f"{node.url}{OPERATOR_METRICS_PATH}", timeout=1.0).json()
    assert metrics["status"] == "DOWN", metrics
    actuator = httpx.get(f"{node.url}{ACTUATOR_HEALTH_PATH}", timeout=1.0)
    assert actuator.status_code == 503, actuator.text
    assert actuator.json()["status"] == "DOWN"
    assert actuator.json()["reason"]  # the readiness rule's one line
    config = httpx.get(f"{node.url}{CONFIG_HEALTH_PATH}", timeout=1.0)
    assert config.status_code == 503, config.text
    # the reason's own words may change between two requests (a follower turns candidate)
    assert config.text.startswith("DOWN: ")
    assert config.text.removeprefix("DOWN: ").strip()
    # the process still answers: liveness is not readiness
    assert httpx.get(f"{node.url}{LIVENESS_PATH}", timeout=1.0).text == "OK"


def assert_up(node: NodeProcess) -> None:
    health = httpx.get(f"{node.url}{SERVER_HEALTH_PATH}", timeout=1.0)
    assert health.status_code == 200, health.text
    assert "healthy" in health.json()["msg"]
    metrics = httpx.get(f"{node.url}{OPERATOR_METRICS_PATH}", timeout=1.0).json()
    assert metrics["status"] == "UP", metrics
    actuator = httpx.get(f"{node.url}{ACTUATOR_HEALTH_PATH}", timeout=1.0)
    assert (actuator.status_code, actuator.json()) == (200, {"status": "UP"})
    config = httpx.get(f"{node.url}{CONFIG_HEALTH_PATH}", timeout=1.0)
    assert (config.status_code, config.text) == (200, "UP")


def test_every_member_is_ready_and_up_with_a_quorum(cluster: LocalCluster) -> None:
    all_ready(cluster)
    for node in cluster.nodes:
        assert readiness(node).text == "OK"
        assert_up(node)
    # the access log is on by default: the probes above are in each node's log
    for node in cluster.nodes:
        wait_for(
            lambda node=node: f'"GET {READINESS_PATH} HTTP/1.1" 200 ' in node.log_text(),  # type: ignore[misc]
            timeout_seconds=5,
            what=f"{node.id}'s access log line",
        )


def test_a_leader_left_alone_is_unready_within_one_election_timeout(
    cluster: LocalCluster,
) -> None:
    all_ready(cluster)
    leader = cluster.leader()
    others = [n for n in cluster.nodes if n is not leader]
    for node in others:
        node.kill()
    stopped_at = time.monotonic()
    elapsed, body = seconds_until_unready(leader, stopped_at)
    assert elapsed <= ELECTION_SECONDS + SLACK_SECONDS, (elapsed, body)
    assert body.startswith("Naming is not in readiness: ")
    assert_down(leader)
    result = naraft_command("status", "--server", leader.url, "--json")
    down = sorted(n.id for n in others)
    line = one_line_failure(result)
    assert line.startswith("naraft: 2 of 3 members unreachable: ")
    assert sorted(line.split(": ", 2)[2].split(", ")) == down
    members = json.loads(result.stdout)["members"]
    assert sorted(m["member"] for m in members if not m["reachable"]) == down
    for node in others:
        node.start()
    all_ready(cluster)
    for node in cluster.nodes:
        assert_up(node)


def test_a_follower_left_alone_is_unready_within_one_election_timeout(
    cluster: LocalCluster,
) -> None:
    all_ready(cluster)
    leader = cluster.leader()
    follower, other = [n for n in cluster.nodes if n is not leader]
    leader.kill()
    other.kill()
    try:
        stopped_at = time.monotonic()
        elapsed, body = seconds_until_unready(follower, stopped_at)
        assert elapsed <= ELECTION_SECONDS + SLACK_SECONDS, (elapsed, body)
        assert_down(follower)
        # it stays unready while alone: no leader can be elected with one vote of three
        wait_for(
            lambda: "no leader known" in readiness(follower).text or None,
            timeout_seconds=5,
            what="the lone follower to know no leader",
        )
    finally:  # the module's other tests need the quorum back, whatever failed here
        leader.start()
        other.start()
    all_ready(cluster)
    for node in cluster.nodes:
        assert_up(node)


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_status_piped_shows_whole_ids_and_exits_0(cluster: LocalCluster) -> None:
    all_ready(cluster)
    result = naraft_command("status", "--server", cluster.nodes[0].url)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["member", "role", "term", "leader", "commit", "applied", "last",
                                "log", "lag"]  # fmt: skip
    leader = cluster.leader()
    rows = lines[1 : 1 + len(cluster.nodes)]  # then notes (auth, disk, quota)
    by_member = {line.split()[0]: line.split() for line in rows}
    assert sorted(by_member) == sorted(n.id for n in cluster.nodes)  # whole, not cut
    assert {row[3] for row in by_member.values()} == {leader.id}


def test_status_json_lists_every_member(cluster: LocalCluster) -> None:
    all_ready(cluster)
    result = naraft_command("status", "--server", cluster.nodes[1].url, "--json")
    assert result.returncode == 0, result
    members = json.loads(result.stdout)["members"]
    assert sorted(m["member"] for m in members) == sorted(n.id for n in cluster.nodes)
    assert all(m["reachable"] for m in members)
    assert sum(m["role"] == "leader" for m in members) == 1


def test_cluster_up_on_a_taken_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        result = naraft_command(
            "cluster", "up", "--nodes", "3", "--base-port", str(port), "--data-dir", str(data)
        )
    line = one_line_failure(result)
    # the first taken port is named (its neighbours may be taken by others too)
    assert line.startswith(
        f"naraft: cannot start the cluster: 127.0.0.1:{port}: address already in use"
    ), line
    assert line.endswith("try another --base-port"), line
    assert not data.exists()
