"""2.x connections on a real cluster: every change of a followed service reaches each
subscriber with the service's state after that change, per clusters string (the view a
node builds once per change and shares among its subscribers must never be a stale one);
an idle SDK's keep-alive (`HealthCheckRequest`) is answered with success.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.e2e.harness import LocalCluster

from naraft.grpc.client import GrpcTestClient, grpc_address

pytestmark = pytest.mark.e2e

SERVICE = "pushed"


def instance_body(ip: str, cluster: str) -> dict[str, Any]:
    return {
        "namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": SERVICE,
        "type": "registerInstance",
        "instance": {"ip": ip, "port": 8080, "weight": 1.0, "healthy": True, "enabled": True,
                     "ephemeral": True, "clusterName": cluster, "metadata": {}},
    }  # fmt: skip


def subscribe_body(clusters: str) -> dict[str, Any]:
    return {"namespace": "public", "groupName": "DEFAULT_GROUP", "serviceName": SERVICE,
            "clusters": clusters, "subscribe": True}  # fmt: skip


async def until_ips(client: GrpcTestClient, ips: set[str]) -> None:
    """Pushes until one carries exactly `ips` (bounded by next_push's timeout)."""
    while True:
        push = await client.next_push("NotifySubscriberRequest", timeout_seconds=10.0)
        if {host["ip"] for host in push.body["serviceInfo"]["hosts"]} == ips:
            return


@pytest.mark.usefixtures("no_leftover_event_loop")
def test_each_change_reaches_every_subscriber_with_its_clusters_view(
    cluster3: LocalCluster,
) -> None:
    leader = cluster3.wait_ready()
    follower = next(n for n in cluster3.nodes if n.id != leader.id)

    async def scenario() -> None:
        async with (
            GrpcTestClient(grpc_address(leader.address)) as writer,
            GrpcTestClient(grpc_address(follower.address)) as everything,
            GrpcTestClient(grpc_address(follower.address)) as only_a,
            GrpcTestClient(grpc_address(leader.address)) as on_leader,
        ):
            for client, clusters in ((everything, ""), (only_a, "A"), (on_leader, "")):
                assert (await client.request("SubscribeServiceRequest",
                                             subscribe_body(clusters))).ok  # fmt: skip
            wanted_all: set[str] = set()
            wanted_a: set[str] = set()
            for i, cluster in enumerate(("A", "B", "A", "B")):
                ip = f"10.1.0.{i + 1}"
                assert (await writer.request("InstanceRequest", instance_body(ip, cluster))).ok
                wanted_all.add(ip)
                if cluster == "A":
                    wanted_a.add(ip)
                await asyncio.gather(
                    until_ips(everything, wanted_all),
                    until_ips(only_a, wanted_a),
                    until_ips(on_leader, wanted_all),
                )

    asyncio.run(scenario())


@pytest.mark.usefixtures("no_leftover_event_loop")
def test_a_registered_connections_health_check_succeeds(cluster3: LocalCluster) -> None:
    node = cluster3.wait_ready()

    async def scenario() -> None:
        async with GrpcTestClient(grpc_address(node.address)) as client:
            answer = await client.request("HealthCheckRequest", {})
            assert answer.type == "HealthCheckResponse"
            assert answer.ok

    asyncio.run(scenario())
