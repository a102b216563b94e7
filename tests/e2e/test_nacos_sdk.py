"""Acceptance: the real Nacos 1.x Python client, `nacos-sdk-python==2.0.11`, unchanged,
against a real 3-node naraft cluster given as its server list.

The client (read from its source, `nacos/client.py`) sends every parameter in the query
string, booleans as `True`/`False`, expects the body `ok` for writes, stays on its first
server and fails over to the next on connection errors, timeouts and 500/502/503. Its
`subscribe` polls `instance/list` on a timer thread and diffs hosts by `instanceId`.

Reads are served from the answering node's applied state (as in Nacos), so a read right
after a write through another node is awaited, never assumed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nacos  # type: ignore[import-untyped]
import pytest
from nacos.exception import NacosException  # type: ignore[import-untyped]
from nacos.listener import SubscribeListener  # type: ignore[import-untyped]
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

pytestmark = [
    pytest.mark.e2e,
    # nacos/client.py builds `ssl.SSLContext()` for every request, even over plain HTTP:
    # "ssl.SSLContext() without protocol argument…" and "ssl.PROTOCOL_TLS is deprecated".
    pytest.mark.filterwarnings(r"ignore:ssl\.(SSLContext|PROTOCOL_TLS):DeprecationWarning"),
]

UNHEALTHY_AFTER_MS = 1_500
REMOVE_AFTER_MS = 3_000
TIMER_ARGS = (*FAST_TIMERS, "--unhealthy-after-ms", str(UNHEALTHY_AFTER_MS),
              "--remove-after-ms", str(REMOVE_AFTER_MS), "--sweep-ms", "100")  # fmt: skip
NAMESPACE = "sdk-e2e"

logger = logging.getLogger(__name__)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path / "cluster", size=3, extra_args=TIMER_ARGS) as cluster:
        cluster.wait_ready()
        yield cluster


ClientFactory = Callable[..., Any]


@pytest.fixture
def new_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Makes `nacos.NacosClient`s; stops their heartbeat and subscription threads after."""
    clients: list[Any] = []

    def make(servers: list[NodeProcess], namespace: str | None = NAMESPACE) -> Any:
        client = nacos.NacosClient(
            server_addresses=",".join(n.address for n in servers),
            namespace=namespace,
            logDir=str(tmp_path / "nacos-logs"),
        )
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            stop_threads(client)


def stop_threads(client: Any) -> None:
    """Stop a client's subscription timers and heartbeat threads, and wait for them."""
    timers = list(client.subscribe_timer_manager.all_timers().values())
    client.stop_subscribe()

    def all_timers_stopped() -> bool:
        # A timer caught running its poll schedules the next one: cancel until none is left.
        for timer in timers:
            timer.cancel()
        return not any(timer.alive() for timer in timers)

    wait_for(all_timers_stopped, timeout_seconds=15, what="subscription timers to stop")
    for task in client.heartbeats.values():
        task.stop()
    for task in client.heartbeats.values():
        task.join(timeout=15)


def listed(client: Any, service: str, **options: Any) -> dict[str, dict[str, Any]]:
    """ip:port → host, as the client lists the service."""
    answer = client.list_naming_instance(service, **options)
    return {f"{h['ip']}:{h['port']}": h for h in answer["hosts"]}


def listed_on(
    cluster: LocalCluster, node: NodeProcess, service: str, group: str, namespace: str = NAMESPACE
) -> dict[str, dict[str, Any]]:
    params = {"serviceName": service, "groupName": group, "namespaceId": namespace}
    answer = cluster.client.get(f"{node.url}/nacos/v1/ns/instance/list", params=params)
    answer.raise_for_status()
    return {f"{h['ip']}:{h['port']}": h for h in answer.json()["hosts"]}


def test_the_client_registers_lists_modifies_and_deregisters_instances(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    client = new_client(cluster.nodes)
    assert client.add_naming_instance(
        "orders", "10.0.0.1", 9001, cluster_name="c1", weight=2.5,
        metadata={"k": "v", "n": 1}, ephemeral=False, group_name="G1",
    ) is True  # fmt: skip
    assert client.add_naming_instance("orders", "10.0.0.2", 9002, group_name="G1") is True

    def both_listed() -> dict[str, dict[str, Any]] | None:
        hosts = listed(client, "orders", group_name="G1")
        return hosts if hosts.keys() == {"10.0.0.1:9001", "10.0.0.2:9002"} else None

    both = wait_for(both_listed, timeout_seconds=15, what="both instances listed")
    persistent, ephemeral = both["10.0.0.1:9001"], both["10.0.0.2:9002"]
    assert persistent == {
        "ip": "10.0.0.1", "port": 9001, "valid": True, "healthy": True, "marked": False,
        "instanceId": "10.0.0.1#9001#c1#G1@@orders", "metadata": {"k": "v", "n": "1"},
        "enabled": True, "weight": 2.5, "clusterName": "c1", "serviceName": "orders",
        "ephemeral": False,
    }  # fmt: skip
    # No cluster_name: the client sends `clusterName=None`, which Nacos stores as is.
    assert (ephemeral["clusterName"], ephemeral["ephemeral"]) == ("None", True)
    assert ephemeral["instanceId"] == "10.0.0.2#9002#None#G1@@orders"

    answer = client.list_naming_instance("orders", clusters="c1", group_name="G1")
    assert (answer["name"], answer["clusters"], answer["cacheMillis"]) == ("G1@@orders", "c1", 3000)
    assert [h["ip"] for h in answer["hosts"]] == ["10.0.0.1"]
    detail = client.get_naming_instance("G1@@orders", "10.0.0.1", 9001, cluster_name="c1")
    assert detail == {
        "service": "G1@@orders", "ip": "10.0.0.1", "port": 9001, "clusterName": "c1",
        "weight": 2.5, "healthy": True, "instanceId": "10.0.0.1#9001#c1#G1@@orders",
        "metadata": {"k": "v", "n": "1"},
    }  # fmt: skip
    with pytest.raises(NacosException):  # 404: not retried on another server
        client.get_naming_instance("G1@@orders", "10.9.9.9", 9001, cluster_name="c1")

    # Groups and namespaces isolate.
    assert listed(client, "orders") == {}
    assert listed(new_client(cluster.nodes, None), "orders", group_name="G1") == {}

    # modify: weight and metadata replaced, then disabled (hidden from lists).
    assert client.modify_naming_instance(
        "orders", "10.0.0.1", 9001, cluster_name="c1", weight=5, metadata={"k": "v2"},
        ephemeral=False, group_name="G1",
    ) is True  # fmt: skip
    wait_for(
        lambda: listed(client, "orders", group_name="G1")["10.0.0.1:9001"]["metadata"]
        == {"k": "v2"},
        timeout_seconds=15,
        what="the modified metadata",
    )
    assert listed(client, "orders", group_name="G1")["10.0.0.1:9001"]["weight"] == 5.0
    assert client.modify_naming_instance(
        "orders", "10.0.0.1", 9001, cluster_name="c1", enable=False, ephemeral=False,
        group_name="G1",
    ) is True  # fmt: skip
    wait_for(
        lambda: "10.0.0.1:9001" not in listed(client, "orders", group_name="G1"),
        timeout_seconds=15,
        what="the disabled instance hidden",
    )

    # deregister, seen on every node.
    assert client.remove_naming_instance(
        "orders", "10.0.0.2", 9002, cluster_name="None", group_name="G1"
    ) is True  # fmt: skip
    assert client.remove_naming_instance(
        "orders", "10.0.0.1", 9001, cluster_name="c1", ephemeral=False, group_name="G1"
    ) is True  # fmt: skip
    for node in cluster.nodes:
        wait_for(
            lambda node=node: cluster.client.get(
                f"{node.url}/nacos/v1/ns/instance",
                params={
                    "serviceName": "G1@@orders",
                    "ip": "10.0.0.1",
                    "port": "9001",
                    "clusterName": "c1",
                    "namespaceId": NAMESPACE,
                },  # fmt: skip
            ).status_code
            == 404
            and listed_on(cluster, node, "orders", "G1") == {},
            timeout_seconds=15,
            what=f"both instances gone on {node.address}",
        )


def test_the_client_heartbeat_keeps_an_instance_alive_and_re_registers_it(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    client = new_client(cluster.nodes)
    # A beat for an instance the cluster does not know re-registers it from the beat.
    answer = client.send_heartbeat(
        "beating", "10.0.1.1", 7001, cluster_name="c2", metadata={"a": "b"}, group_name="G1"
    )
    assert answer == {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}
    wait_for(
        lambda: listed(client, "beating", group_name="G1")["10.0.1.1:7001"]["metadata"]
        == {"a": "b"},
        timeout_seconds=15,
        what="the instance re-registered from its beat",
    )

    # The client's own heartbeat thread (every 0.3 s) keeps an instance healthy; one
    # registered without beats turns unhealthy and is removed. (The cluster is named: without
    # one the client registers `clusterName=None`, stored as cluster "None" as in Nacos, but
    # beats with no cluster, which is DEFAULT, so its beats re-create a second instance in
    # DEFAULT. Real Nacos 1.4.8 does the same.)
    assert client.add_naming_instance(
        "beating", "10.0.1.2", 7002, cluster_name="c2", group_name="G1", heartbeat_interval=0.3
    ) is True  # fmt: skip
    assert client.add_naming_instance(
        "beating", "10.0.1.3", 7003, cluster_name="c2", group_name="G1"
    ) is True  # fmt: skip
    for node in cluster.nodes:
        wait_for(
            lambda node=node: "10.0.1.3:7003" not in listed_on(cluster, node, "beating", "G1")
            and "10.0.1.2:7002" in listed_on(cluster, node, "beating", "G1"),
            timeout_seconds=20,
            what=f"the silent instance removed on {node.address}",
        )
    assert listed(client, "beating", group_name="G1")["10.0.1.2:7002"]["healthy"] is True

    # Deregistering stops the client's beats, so the instance stays gone.
    assert client.remove_naming_instance(
        "beating", "10.0.1.2", 7002, cluster_name="c2", group_name="G1"
    ) is True  # fmt: skip
    heartbeat = client.heartbeats["beating#10.0.1.2#7002"]
    heartbeat.join(timeout=10)
    assert not heartbeat.is_alive()
    for node in cluster.nodes:
        wait_for(
            lambda node=node: "10.0.1.2:7002" not in listed_on(cluster, node, "beating", "G1"),
            timeout_seconds=15,
            what="the deregistered instance gone",
        )


def test_the_client_subscription_hears_instances_added_modified_and_removed(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    client = new_client(cluster.nodes)
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def on_change(event: str, instance: Any) -> None:
        events.put((event, instance.instance))

    listener = SubscribeListener(on_change, "test-listener")
    client.subscribe([listener], 0.3, service_name="watched", group_name="G1")

    def next_event() -> tuple[str, dict[str, Any]]:
        return events.get(timeout=15)

    # Changes made through the client, and through other nodes by someone else.
    assert client.add_naming_instance(
        "watched", "10.0.2.1", 8001, cluster_name="c1", ephemeral=False, group_name="G1"
    ) is True  # fmt: skip
    event, host = next_event()
    assert (event, host["ip"], host["weight"]) == ("ADDED", "10.0.2.1", 1.0)

    other = cluster.nodes[2]
    params = {"serviceName": "watched", "groupName": "G1", "namespaceId": NAMESPACE,
              "clusterName": "c1", "ip": "10.0.2.1", "port": "8001", "ephemeral": "false",
              "weight": "3"}  # fmt: skip
    assert cluster.client.put(f"{other.url}/nacos/v1/ns/instance", params=params).text == "ok"
    event, host = next_event()
    assert (event, host["ip"], host["weight"]) == ("MODIFIED", "10.0.2.1", 3.0)

    params = {**params, "ip": "10.0.2.2", "weight": "1"}
    assert cluster.client.post(f"{other.url}/nacos/v1/ns/instance", params=params).text == "ok"
    event, host = next_event()
    assert (event, host["ip"]) == ("ADDED", "10.0.2.2")

    assert client.remove_naming_instance(
        "watched", "10.0.2.1", 8001, cluster_name="c1", ephemeral=False, group_name="G1"
    ) is True  # fmt: skip
    event, host = next_event()
    assert (event, host["ip"]) == ("DELETED", "10.0.2.1")
    assert events.empty()


def test_the_client_keeps_registering_through_a_leader_kill_and_nothing_acknowledged_is_lost(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    leader = cluster.leader()
    # The leader first: the client sticks to it, so the kill hits the client head on.
    servers = [leader, *(n for n in cluster.nodes if n is not leader)]
    client = new_client(servers)
    acknowledged: list[str] = []
    refused: list[str] = []
    attempts_after_kill = threading.Event()
    killed = threading.Event()
    stop = threading.Event()

    def register_loop() -> None:
        for number in range(1, 10_000):
            if stop.is_set():
                return
            ip = f"10.3.{number // 250}.{number % 250 + 1}"
            try:
                ok = client.add_naming_instance(
                    "failover", ip, 9000, ephemeral=False, group_name="G1"
                )
            except NacosException as error:  # every server refused this one
                refused.append(f"{ip}: {error!r}")
                continue
            except OSError as error:
                # In flight when its server died (http.client.RemoteDisconnected): the
                # client passes that on without failing over; its outcome is unknown.
                refused.append(f"{ip}: {error!r}")
                continue
            if ok:
                acknowledged.append(ip)
                if killed.is_set() and len(acknowledged) >= after_kill_target[0]:
                    attempts_after_kill.set()

    after_kill_target = [1 << 30]
    worker = threading.Thread(target=register_loop, name="registrations", daemon=True)
    worker.start()
    try:
        wait_for(lambda: len(acknowledged) >= 30, timeout_seconds=30, what="30 registrations")
        killed_at_count = len(acknowledged)
        after_kill_target[0] = killed_at_count + 30
        killed.set()
        leader.kill()
        # The client goes on: 30 more registrations acknowledged after the kill.
        assert attempts_after_kill.wait(timeout=60), (
            f"stuck at {len(acknowledged)} acknowledged; refused: {refused[-5:]}"
        )
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()

    new_leader = cluster.leader(exclude=leader.address, timeout_seconds=30)
    assert new_leader is not leader
    leader.start()  # the killed node comes back and catches up
    expected = {f"{ip}:9000" for ip in acknowledged}
    for node in cluster.nodes:
        wait_for(
            lambda node=node: expected <= listed_on(cluster, node, "failover", "G1").keys(),
            timeout_seconds=30,
            what=f"every acknowledged registration on {node.address}",
        )
    # Reported, not asserted: registrations that died in flight with the leader (1-2 per
    # kill; followers wait for the new leader instead of answering 503 on a refused forward).
    logger.warning(
        "leader kill: acknowledged=%d refused=%d first refused: %s",
        len(acknowledged),
        len(refused),
        refused[:3],
    )
