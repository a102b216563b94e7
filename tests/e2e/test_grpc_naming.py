"""Naming over the 2.x gRPC protocol on a real 3-node cluster, spoken by naraft's own
test client (`naraft.grpc.client`, the SDK's wire exchange): the same instances through
gRPC and the v1 HTTP API, pushes to subscribers on other nodes, and instances bound to
their connection (released when it closes, expired when the node holding it dies, kept
when the client has moved to another connection).

Beat timeouts are short here (unhealthy after 1.5 s, removed after 3 s), so the bounds
of docs/nacos-compat.md are checked at that scale.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import DEFAULT_ARGS, LocalCluster, local_cluster, wait_for_async

from naraft.grpc.client import Answer, GrpcTestClient, grpc_address

pytestmark = pytest.mark.e2e

REMOVE_AFTER_MS = 3000
ARGS = (
    *DEFAULT_ARGS,
    "--unhealthy-after-ms", "1500",
    "--remove-after-ms", str(REMOVE_AFTER_MS),
    "--sweep-ms", "200",
)  # fmt: skip
SERVICE = {"namespace": "public", "groupName": "DEFAULT_GROUP"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("grpc-naming"), size=3, extra_args=ARGS) as c:
        c.wait_ready()
        yield c


@pytest.fixture
async def clients() -> AsyncIterator[list[GrpcTestClient]]:
    """Clients a test opens (append connected ones); closed after it."""
    opened: list[GrpcTestClient] = []
    yield opened
    for client in opened:
        await client.close()


async def connect(
    cluster: LocalCluster, index: int, opened: list[GrpcTestClient]
) -> GrpcTestClient:
    client = await GrpcTestClient(grpc_address(cluster.nodes[index].address)).connect()
    opened.append(client)
    return client


def instance(ip: str, port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"ip": ip, "port": port, "clusterName": "DEFAULT", "weight": 1.0, "metadata": {},
            "enabled": True, "healthy": True, "ephemeral": True, **extra}  # fmt: skip


async def register(client: GrpcTestClient, service: str, ip: str, port: int = 8080) -> Answer:
    answer = await client.request(
        "InstanceRequest",
        {**SERVICE, "serviceName": service, "type": "registerInstance",
         "instance": instance(ip, port)},
    )  # fmt: skip
    assert answer.type == "InstanceResponse", answer
    assert answer.ok, answer
    return answer


def v1_hosts(cluster: LocalCluster, index: int, service: str) -> set[str]:
    answer = cluster.client.get(
        f"{cluster.nodes[index].url}/nacos/v1/ns/instance/list",
        params={"serviceName": service},
    )
    answer.raise_for_status()
    return {f"{h['ip']}:{h['port']}" for h in answer.json()["hosts"]}


async def on_every_node(cluster: LocalCluster, service: str, expected: set[str]) -> None:
    for index in range(len(cluster.nodes)):
        if not cluster.nodes[index].serving:
            continue
        await wait_for_async(
            lambda i=index: v1_hosts(cluster, i, service) == expected or None,  # type: ignore[misc]
            timeout_seconds=15,
            what=f"node {index} to list {sorted(expected)} for {service}",
        )


def hosts_of(push: Answer) -> set[str]:
    return {f"{h['ip']}:{h['port']}" for h in push.body["serviceInfo"]["hosts"]}


async def push_of(watcher: GrpcTestClient, expected: set[str], kept: set[str]) -> Answer:
    """The first push listing exactly `expected`. A push of another change may come
    first (an instance no one beats turning unhealthy on a slow run), but every push
    before it must still list `kept`: nothing expected to stay ever went. Within 20 s."""
    async with asyncio.timeout(20):
        while True:
            push = await watcher.next_push("NotifySubscriberRequest")
            hosts = hosts_of(push)
            if hosts == expected:
                return push
            assert kept <= hosts, (hosts, expected)


async def test_grpc_and_v1_share_instances_and_subscribers_hear_other_nodes(
    cluster: LocalCluster, clients: list[GrpcTestClient]
) -> None:
    service = "shared-svc"
    owner = await connect(cluster, 0, clients)
    watcher = await connect(cluster, 2, clients)
    subscribed = await watcher.request(
        "SubscribeServiceRequest",
        {**SERVICE, "serviceName": service, "clusters": "", "subscribe": True},
    )
    assert subscribed.type == "SubscribeServiceResponse", subscribed
    assert subscribed.ok, subscribed
    assert subscribed.body["serviceInfo"]["hosts"] == []

    await register(owner, service, "10.1.0.1")
    push = await push_of(watcher, {"10.1.0.1:8080"}, kept=set())
    assert push.body["serviceInfo"]["name"] == service
    assert push.body["serviceInfo"]["groupName"] == "DEFAULT_GROUP"
    await on_every_node(cluster, service, {"10.1.0.1:8080"})

    # a v1 registration through the third node is pushed too, and read over gRPC
    v1 = cluster.client.post(
        f"{cluster.nodes[1].url}/nacos/v1/ns/instance",
        params={"serviceName": service, "ip": "10.1.0.2", "port": "8080"},
    )
    assert v1.text == "ok", v1.text
    await push_of(watcher, {"10.1.0.1:8080", "10.1.0.2:8080"}, kept={"10.1.0.1:8080"})
    # the owner's node applies the v1 write on its own schedule (a local read)
    await on_every_node(cluster, service, {"10.1.0.1:8080", "10.1.0.2:8080"})
    query = await owner.request(
        "ServiceQueryRequest",
        {**SERVICE, "serviceName": service, "cluster": "", "healthOnly": False},
    )
    assert query.ok, query
    assert hosts_of(query) == {"10.1.0.1:8080", "10.1.0.2:8080"}
    listed = await owner.request(
        "ServiceListRequest", {**SERVICE, "serviceName": "", "pageNo": 1, "pageSize": 100}
    )
    assert listed.ok, listed
    assert service in listed.body["serviceNames"], listed

    # closing the owner's connection removes its instance everywhere, at once
    await owner.close()
    clients.remove(owner)
    await push_of(watcher, {"10.1.0.2:8080"}, kept={"10.1.0.2:8080"})
    await on_every_node(cluster, service, {"10.1.0.2:8080"})


async def test_an_instance_moved_to_another_connection_survives_the_old_one_closing(
    cluster: LocalCluster, clients: list[GrpcTestClient]
) -> None:
    service = "moved-svc"
    old = await connect(cluster, 0, clients)
    new = await connect(cluster, 1, clients)
    await register(old, service, "10.2.0.1")
    await register(new, service, "10.2.0.1")  # the client re-registered after a switch
    persistent = await old.request(
        "PersistentInstanceRequest",
        {**SERVICE, "serviceName": service, "type": "registerInstance",
         "instance": instance("10.2.0.9", ephemeral=False)},
    )  # fmt: skip
    assert persistent.ok, persistent
    await old.close()
    clients.remove(old)
    # nothing the old connection still owned: both stay, and stay healthy (beaten by node 1)
    watcher = await connect(cluster, 2, clients)
    await watcher.request(
        "SubscribeServiceRequest",
        {**SERVICE, "serviceName": service, "clusters": "", "subscribe": True},
    )
    await on_every_node(cluster, service, {"10.2.0.1:8080", "10.2.0.9:8080"})
    query = await watcher.request(
        "ServiceQueryRequest",
        {**SERVICE, "serviceName": service, "cluster": "", "healthOnly": True},
    )
    assert hosts_of(query) == {"10.2.0.1:8080", "10.2.0.9:8080"}, query


async def test_instances_of_a_dead_node_expire_and_a_live_ones_stay(
    cluster: LocalCluster, clients: list[GrpcTestClient]
) -> None:
    service = "dying-svc"
    leader = cluster.leader()
    follower = next(i for i, n in enumerate(cluster.nodes) if n is not leader)
    survivor = next(i for i, n in enumerate(cluster.nodes) if n is leader)
    doomed = await connect(cluster, follower, clients)
    alive = await connect(cluster, survivor, clients)
    await register(doomed, service, "10.3.0.1")
    await register(alive, service, "10.3.0.2")
    await on_every_node(cluster, service, {"10.3.0.1:8080", "10.3.0.2:8080"})
    cluster.nodes[follower].kill()
    try:
        # removed by the leader once silent for remove-after-ms (plus the sweep)
        await wait_for_async(
            lambda: v1_hosts(cluster, survivor, service) == {"10.3.0.2:8080"} or None,
            timeout_seconds=REMOVE_AFTER_MS / 1000 + 10,
            what="the dead node's instance to expire",
        )
    finally:
        cluster.nodes[follower].start()
        cluster.wait_ready()
    await on_every_node(cluster, service, {"10.3.0.2:8080"})


async def test_a_write_a_follower_forwards_to_a_just_killed_leader_goes_to_the_next_one(
    tmp_path: Path, clients: list[GrpcTestClient]
) -> None:
    """The dead leader refuses the forwarded connection, so it never saw the write: the
    follower waits for the next leader and forwards there (or runs it, if it won), as the
    HTTP forward does, instead of answering the client an error."""
    with local_cluster(tmp_path / "cluster", size=3, extra_args=ARGS) as cluster:
        old = cluster.wait_ready()
        index = next(i for i, n in enumerate(cluster.nodes) if n is not old)
        client = await connect(cluster, index, clients)
        old.kill()
        await register(client, "after-kill", "10.9.0.1")  # asserts the answer is ok
        cluster.leader(exclude=old.address, timeout_seconds=15)
        assert "10.9.0.1:8080" in v1_hosts(cluster, index, "after-kill")
        log = cluster.nodes[index].log_text()
        if f"to {old.address} failed" in log:  # the write was sent to the dead leader first
            assert "retrying InstanceRequest with the new leader" in log, log[-3000:]
