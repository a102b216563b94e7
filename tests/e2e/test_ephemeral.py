"""Ephemeral instances on a real cluster with fast timers: beats, expiry, leader-change grace.

Nodes run with `--unhealthy-after-ms`, `--remove-after-ms` and `--sweep-ms` set to a
second or two instead of Nacos's 15 s / 30 s / 5 s. Clients beat every 200 ms, as the
Nacos beat JSON on `PUT /instance/beat`. Everything is observed through
`/instance/list` on every node; nothing waits on a guess.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

from naraft.naming.beats import encode_beats
from naraft.transport import PeerSigner

pytestmark = pytest.mark.e2e

UNHEALTHY_AFTER_MS = 1_000
REMOVE_AFTER_MS = 4_000
TIMER_ARGS = (*FAST_TIMERS, "--unhealthy-after-ms", str(UNHEALTHY_AFTER_MS),
              "--remove-after-ms", str(REMOVE_AFTER_MS), "--sweep-ms", "100")  # fmt: skip
SERVICE = "G1@@expiring"
BEAT_EVERY_SECONDS = 0.2


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path / "cluster", size=3, extra_args=TIMER_ARGS) as cluster:
        cluster.wait_ready()
        yield cluster


class Beater(threading.Thread):
    """A client beating one instance every 200 ms, failing over along `nodes` on errors."""

    def __init__(self, nodes: Sequence[NodeProcess], ip: str) -> None:
        super().__init__(name=f"beater-{ip}", daemon=True)
        self.nodes = list(nodes)
        self.ip = ip
        self.stopped = threading.Event()
        self.answers: list[int] = []
        self.failures = 0

    def run(self) -> None:
        beat = json.dumps({"serviceName": SERVICE, "ip": self.ip, "port": 8080, "weight": 1.0,
                           "ephemeral": True, "cluster": "DEFAULT"})  # fmt: skip
        current = 0
        with httpx.Client(timeout=2.0) as client:
            while not self.stopped.wait(BEAT_EVERY_SECONDS):
                node = self.nodes[current % len(self.nodes)]
                try:
                    answer = client.put(
                        f"{node.url}/nacos/v1/ns/instance/beat",
                        params={"serviceName": SERVICE, "beat": beat},
                    )
                    answer.raise_for_status()
                    self.answers.append(answer.json()["code"])
                except (httpx.HTTPError, ValueError):
                    self.failures += 1
                    current += 1  # fail over to the next server, as the clients do

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def register(cluster: LocalCluster, node: NodeProcess, ip: str) -> None:
    params = {"serviceName": SERVICE, "ip": ip, "port": "8080", "ephemeral": "true"}
    answer = cluster.client.post(f"{node.url}/nacos/v1/ns/instance", params=params, timeout=10.0)
    assert (answer.status_code, answer.text) == (200, "ok")


def hosts(cluster: LocalCluster, node: NodeProcess) -> dict[str, dict[str, Any]]:
    """ip → host of SERVICE as `node` lists it."""
    answer = cluster.client.get(
        f"{node.url}/nacos/v1/ns/instance/list", params={"serviceName": SERVICE}, timeout=2.0
    )
    answer.raise_for_status()
    return {h["ip"]: h for h in answer.json()["hosts"]}


def everywhere(
    cluster: LocalCluster, nodes: Sequence[NodeProcess], ip: str, state: str, *, keep: str
) -> bool:
    """Whether every node lists `ip` as `state` (healthy/unhealthy/absent); fails at once
    if any node does not list `keep` as healthy (or, after a failover, present)."""
    for node in nodes:
        listed = hosts(cluster, node)
        assert keep in listed, f"{keep} was removed on {node.address}: {listed}"
        host = listed.get(ip)
        seen = "absent" if host is None else ("healthy" if host["healthy"] else "unhealthy")
        if seen != state:
            return False
    return True


def last_log_index(cluster: LocalCluster, node: NodeProcess) -> int:
    return int(cluster.state(node)["lastLogIndex"])


@pytest.fixture
def beaters() -> Iterator[list[Beater]]:
    started: list[Beater] = []
    try:
        yield started
    finally:
        for beater in started:
            beater.stop()


def test_an_instance_without_beats_turns_unhealthy_then_is_removed_while_a_beaten_one_stays(
    cluster: LocalCluster, beaters: list[Beater]
) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    register(cluster, follower, "10.0.0.1")  # beaten, through a follower only
    beater = Beater([follower], "10.0.0.1")
    beaters.append(beater)
    beater.start()
    register(cluster, follower, "10.0.0.2")  # never beaten

    def silent_is(state: str) -> bool:
        return everywhere(cluster, cluster.nodes, "10.0.0.2", state, keep="10.0.0.1")

    wait_for(lambda: silent_is("unhealthy"), timeout_seconds=20, what="10.0.0.2 unhealthy")
    wait_for(lambda: silent_is("absent"), timeout_seconds=20, what="10.0.0.2 removed")
    for node in cluster.nodes:
        assert hosts(cluster, node)["10.0.0.1"]["healthy"] is True
    assert beater.answers
    assert set(beater.answers) == {10200}


def test_beats_through_followers_keep_instances_healthy_and_never_become_log_entries(
    cluster: LocalCluster, beaters: list[Beater]
) -> None:
    leader = cluster.leader()
    ips = ["10.0.1.1", "10.0.1.2", "10.0.1.3"]
    for ip in ips:
        register(cluster, leader, ip)
    for node in cluster.nodes:
        cluster.wait_applied(node, last_log_index(cluster, leader))
    before = last_log_index(cluster, leader)
    followers = [n for n in cluster.nodes if n is not leader]
    # One client beats the leader, two beat a follower each (their beats are forwarded).
    for ip, node in zip(ips, [leader, *followers], strict=True):
        beater = Beater([node], ip)
        beaters.append(beater)
        beater.start()

    # Three unhealthy periods of beats: nobody turns unhealthy, nothing is appended.
    deadline = time.monotonic() + 3 * UNHEALTHY_AFTER_MS / 1000
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            listed = hosts(cluster, node)
            assert all(listed[ip]["healthy"] for ip in ips), listed
        assert last_log_index(cluster, leader) == before
        time.sleep(0.1)
    assert all(len(b.answers) >= 5 for b in beaters)
    assert last_log_index(cluster, leader) == before
    assert cluster.leader() is leader


def test_a_new_leader_gives_every_ephemeral_instance_a_fresh_grace_period(
    cluster: LocalCluster, beaters: list[Beater]
) -> None:
    leader = cluster.leader()
    register(cluster, leader, "10.0.2.1")  # its client keeps beating, failing over
    beater = Beater(cluster.nodes, "10.0.2.1")
    beaters.append(beater)
    beater.start()
    register(cluster, leader, "10.0.2.2")  # silent
    survivors = [n for n in cluster.nodes if n is not leader]

    def silent_is(state: str, nodes: Sequence[NodeProcess]) -> bool:
        return everywhere(cluster, nodes, "10.0.2.2", state, keep="10.0.2.1")

    # Silent for longer than the unhealthy timeout: under this leader it would be removed
    # REMOVE_AFTER_MS after its registration.
    wait_for(lambda: silent_is("unhealthy", cluster.nodes), timeout_seconds=20, what="unhealthy")
    killed_at = time.monotonic()
    leader.kill()
    new_leader = cluster.leader(timeout_seconds=30, exclude=leader.address)
    assert new_leader is not leader

    wait_for(
        lambda: silent_is("absent", survivors),
        timeout_seconds=30,
        what="the silent instance removed by the new leader",
        interval_seconds=0.1,
    )
    # The new leader started the grace period when it took over, after the kill.
    assert time.monotonic() - killed_at >= REMOVE_AFTER_MS / 1000
    wait_for(
        lambda: all(hosts(cluster, n)["10.0.2.1"]["healthy"] for n in survivors),
        timeout_seconds=20,
        what="the beaten instance healthy on the survivors",
    )


def test_the_leader_beat_endpoint_takes_only_signed_batches_and_only_on_the_leader(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    body = encode_beats([])
    path = "/naraft/v1/beats"

    def post(node: NodeProcess, payload: bytes, headers: dict[str, str]) -> int:
        answer = cluster.client.post(f"{node.url}{path}", content=payload, headers=headers)
        return answer.status_code

    def signed(to: NodeProcess, payload: bytes, secret: bytes) -> dict[str, str]:
        sender = next(n for n in cluster.nodes if n is not to)
        # the id the members compute from their token and member list
        cluster_id = cluster.client.get(f"{to.url}/nacos/v1/ns/raft/state").json()["clusterId"]
        signer = PeerSigner(secret, cluster_id=cluster_id, self_id=sender.address)
        return signer.headers("POST", path, to.address, payload)

    secret = cluster.secret.encode()
    assert post(leader, body, {}) == 403
    assert post(leader, body, signed(leader, body, b"another secret of some length")) == 403
    assert post(leader, b"{}", signed(leader, b"{}", secret)) == 400
    assert post(follower, body, signed(follower, body, secret)) == 503
    headers = signed(leader, body, secret)
    assert post(leader, body, headers) == 204
    assert post(leader, body, headers) == 403  # the same request again: a replay
