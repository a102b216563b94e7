"""Health that tells the truth: readiness turns 503 within one election timeout of losing
the quorum, the Nacos health endpoints say DOWN meanwhile, and all is well again once the
stopped members are back. Real processes; one cluster for the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, local_cluster, wait_for

from naraft.client import (
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
    # the process still answers: liveness is not readiness
    assert httpx.get(f"{node.url}{LIVENESS_PATH}", timeout=1.0).text == "OK"


def assert_up(node: NodeProcess) -> None:
    health = httpx.get(f"{node.url}{SERVER_HEALTH_PATH}", timeout=1.0)
    assert health.status_code == 200, health.text
    assert "healthy" in health.json()["msg"]
    metrics = httpx.get(f"{node.url}{OPERATOR_METRICS_PATH}", timeout=1.0).json()
    assert metrics["status"] == "UP", metrics


def test_every_member_is_ready_and_up_with_a_quorum(cluster: LocalCluster) -> None:
    all_ready(cluster)
    for node in cluster.nodes:
        assert readiness(node).text == "OK"
        assert_up(node)


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
    leader.start()
    other.start()
    all_ready(cluster)
    for node in cluster.nodes:
        assert_up(node)
