"""UDP push from a real cluster to a UDP socket in the test, as a Nacos 1.x client sees it.

The test's socket plays the push receiver of a Nacos client (the npm client's, which
claims to be `Nacos-Java-Client:v1.0.0`): it lists a service on one node with `udpPort`
and `clientIP`, receives `{"type":"dom","data":…,"lastRefTime":…}` on every change of the
service made through any node, and acks (or not). The nodes run with a 300 ms ack timeout
and 3 retries so that retries show in seconds, not in Nacos's 10 s.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

from naraft.client import FAILPOINTS_PATH

pytestmark = pytest.mark.e2e

ACK_TIMEOUT_MS = 300
RETRIES = 3
PUSH_ARGS = (*FAST_TIMERS, "--push-ack-timeout-ms", str(ACK_TIMEOUT_MS),
             "--push-retries", str(RETRIES))  # fmt: skip
JAVA = {"User-Agent": "Nacos-Java-Client:v1.0.0"}
SERVICE = "G1@@pushed"


class Listener:
    """A Nacos client's push receiver on 127.0.0.1."""

    def __init__(self, *, acks: bool) -> None:
        self.acks = acks
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.raw: list[bytes] = []

    def list_from(self, node: NodeProcess, clusters: str = "") -> dict[str, Any]:
        params = {"serviceName": SERVICE, "clusters": clusters, "udpPort": str(self.port),
                  "clientIP": "127.0.0.1", "healthyOnly": "false"}  # fmt: skip
        answer = httpx.get(f"{node.url}/nacos/v1/ns/instance/list", params=params, headers=JAVA)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def receive(self, timeout_seconds: float = 15.0) -> tuple[dict[str, Any], tuple[str, int]]:
        """The next packet, decoded (gunzipped if need be), acked if this listener acks."""
        self.socket.settimeout(timeout_seconds)
        datagram, source = self.socket.recvfrom(65_536)
        self.raw.append(datagram)
        text = gzip.decompress(datagram) if datagram[:2] == b"\x1f\x8b" else datagram
        packet: dict[str, Any] = json.loads(text)
        if self.acks:
            ack = {"type": "push-ack", "lastRefTime": packet["lastRefTime"], "data": ""}
            self.socket.sendto(json.dumps(ack).encode(), source)
        return packet, source

    def nothing_within(self, seconds: float) -> bool:
        self.socket.settimeout(seconds)
        try:
            datagram, _ = self.socket.recvfrom(65_536)
        except TimeoutError:
            return True
        self.raw.append(datagram)
        return False

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path / "cluster", size=3, extra_args=PUSH_ARGS) as cluster:
        cluster.wait_ready()
        yield cluster


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener]]:
    acking, silent = Listener(acks=True), Listener(acks=False)
    try:
        yield acking, silent
    finally:
        acking.close()
        silent.close()


def register(cluster: LocalCluster, node: NodeProcess, ip: str, **extra: str) -> None:
    params = {"serviceName": SERVICE, "ip": ip, "port": "8080", "ephemeral": "false", **extra}
    answer = cluster.client.post(f"{node.url}/nacos/v1/ns/instance", params=params, timeout=10.0)
    assert (answer.status_code, answer.text) == (200, "ok")


def test_a_change_made_anywhere_is_pushed_by_the_node_the_client_listed_on(
    cluster: LocalCluster, listeners: tuple[Listener, Listener]
) -> None:
    acking, _ = listeners
    leader = cluster.leader()
    follower, other = [n for n in cluster.nodes if n is not leader]
    answer = acking.list_from(follower)
    assert answer["cacheMillis"] == 10_000  # Nacos: the push cache time for push clients
    assert answer["hosts"] == []

    register(cluster, other, "10.0.0.1")  # through the other follower, to the leader
    packet, source = acking.receive()
    assert set(packet) == {"type", "data", "lastRefTime"}
    assert packet["type"] == "dom"
    assert isinstance(packet["data"], str)
    assert isinstance(packet["lastRefTime"], int)
    assert source[0] == "127.0.0.1"
    data = json.loads(packet["data"])
    assert (data["name"], data["clusters"], data["cacheMillis"]) == (SERVICE, "", 10_000)
    assert data["dom"] == SERVICE  # grouped for a Java >= 1.0 agent
    assert [(h["ip"], h["port"], h["healthy"]) for h in data["hosts"]] == [("10.0.0.1", 8080, True)]
    host_fields = {"instanceId", "clusterName", "serviceName", "weight", "enabled", "ephemeral",
                   "metadata", "valid", "marked"}  # fmt: skip
    assert set(data["hosts"][0]) >= host_fields

    # A bigger answer (here over 1 KiB) travels gzip'd, as Nacos sends it.
    metadata = json.dumps({f"key-{i}": "v" * 40 for i in range(20)})
    register(cluster, leader, "10.0.0.2", metadata=metadata)
    packet, second_source = acking.receive()
    assert acking.raw[-1][:2] == b"\x1f\x8b"
    assert second_source == source  # one socket per node
    hosts = json.loads(packet["data"])["hosts"]
    assert [h["ip"] for h in hosts] == ["10.0.0.1", "10.0.0.2"]
    assert hosts[1]["metadata"]["key-0"] == "v" * 40


def test_an_acked_push_is_not_resent_and_an_unacked_one_is_resent_a_bounded_number_of_times(
    cluster: LocalCluster, listeners: tuple[Listener, Listener]
) -> None:
    acking, silent = listeners
    node = cluster.nodes[0]
    acking.list_from(node)
    silent.list_from(node)
    register(cluster, cluster.nodes[1], "10.0.0.1")

    first, _ = acking.receive()
    resent = [silent.receive()[0] for _ in range(1 + RETRIES)]
    assert {p["lastRefTime"] for p in resent} == {resent[0]["lastRefTime"]}
    assert [json.loads(p["data"])["hosts"][0]["ip"] for p in resent] == ["10.0.0.1"] * 4
    # Three more ack timeouts: the acked client hears nothing more, the silent one neither
    # (its retries are used up).
    assert acking.nothing_within(3 * ACK_TIMEOUT_MS / 1000)
    assert silent.nothing_within(ACK_TIMEOUT_MS / 1000)
    # Nacos's push counts on the node that pushed: two packets, the silent one's given up.
    state_url = f"{node.url}/nacos/v1/ns/ops/push/state"
    state = cluster.client.get(state_url, params={"detail": "true"}, timeout=5.0).json()
    assert state == {"succeed": 1, "total": 2, "failed": 1, "ratio": 0.5, "data": [],
                     "reset": False}  # fmt: skip

    # The next change is a new packet (a new lastRefTime) with the new list.
    register(cluster, cluster.nodes[2], "10.0.0.3")
    second, _ = acking.receive()
    assert second["lastRefTime"] > first["lastRefTime"]
    assert [h["ip"] for h in json.loads(second["data"])["hosts"]] == ["10.0.0.1", "10.0.0.3"]


def test_a_client_that_stops_listing_is_forgotten_after_the_push_cache_time(
    cluster: LocalCluster, listeners: tuple[Listener, Listener]
) -> None:
    gone, _ = listeners
    staying = Listener(acks=True)
    try:
        node = cluster.nodes[1]
        switch = cluster.client.put(
            f"{cluster.nodes[0].url}/nacos/v1/ns/operator/switches",
            params={"entry": "pushCacheMillis", "value": "1500"},
        )
        assert (switch.status_code, switch.text) == (200, "ok")
        wait_for(
            lambda: cluster.client.get(f"{node.url}/nacos/v1/ns/operator/switches").json()[
                "defaultPushCacheMillis"
            ]
            == 1500,
            timeout_seconds=15,
            what="the switch to reach the listing node",
        )
        asked_at = time.monotonic()  # the node records the listing after this moment
        assert gone.list_from(node)["cacheMillis"] == 1500

        def subscribers() -> set[int]:
            answer = cluster.client.get(
                f"{node.url}/nacos/v1/ns/service/subscribers", params={"serviceName": SERVICE}
            ).json()
            return {s["port"] for s in answer["subscribers"]}

        assert gone.port in subscribers()
        wait_for(lambda: gone.port not in subscribers(), timeout_seconds=15,
                 what="the silent target to expire", interval_seconds=0.1)  # fmt: skip
        assert time.monotonic() - asked_at >= 1.5

        staying.list_from(node)
        register(cluster, cluster.nodes[2], "10.0.0.9")
        packet, _ = staying.receive()
        assert json.loads(packet["data"])["hosts"][0]["ip"] == "10.0.0.9"
        assert gone.nothing_within(1.0)
    finally:
        staying.close()


def test_a_follower_that_catches_up_by_digest_pushes_what_changed(
    tmp_path: Path, listeners: tuple[Listener, Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A digest catch-up installs datums without applying entries; the services it changed
    are pushed all the same, not only at their next change. (The leader's transport
    failpoint drops everything it sends the follower meanwhile: a paused process would
    still find the appends in its socket buffers and apply them as entries.)"""
    acking, _ = listeners
    monkeypatch.setenv("NARAFT_FAILPOINTS", "")  # enables the debug route, no fault yet
    compacting = (*PUSH_ARGS, "--compact-entries", "200", "--compact-keep", "20")
    with local_cluster(tmp_path / "cluster", size=3, extra_args=compacting) as cluster:
        leader = cluster.wait_ready()
        follower = next(n for n in cluster.nodes if n is not leader)
        assert acking.list_from(follower)["hosts"] == []

        def drop_to_follower(spec: str) -> None:
            answer = cluster.client.put(f"{leader.url}{FAILPOINTS_PATH}", content=spec)
            assert answer.status_code == 200, answer.text

        drop_to_follower(f"peer.loss=1;peer.to={follower.address}")
        register(cluster, leader, "10.0.0.9")
        for i in range(400):  # past the compaction point: the follower needs a digest
            assert cluster.put(leader, f"filler-{i}", "x").status_code == 200
        wait_for(
            lambda: cluster.state(leader)["snapshotIndex"] > 0,
            timeout_seconds=30,
            what="the leader to compact its log",
        )
        assert acking.nothing_within(0.2)
        # a push target is forgotten 10 s after its last list (Nacos's pushCacheMillis);
        # on a loaded machine the filler writes take that long
        acking.list_from(follower)
        drop_to_follower("")
        packet, _ = acking.receive()
        hosts = json.loads(packet["data"])["hosts"]
        assert [h["ip"] for h in hosts] == ["10.0.0.9"]
        wait_for(
            lambda: cluster.state(follower)["catchUp"]["completed"] >= 1,
            timeout_seconds=10,
            what="the follower's digest catch-up to be counted",
        )
