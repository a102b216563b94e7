"""The Nacos 2.x HTTP API on a real 3-node cluster: a write through a follower reaches the
leader (forwarded, as v1's), and another node reads it; answers are Nacos's `Result`."""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

INSTANCE = "/nacos/v2/ns/instance"
LIST = "/nacos/v2/ns/instance/list"
CONFIG = "/nacos/v2/cs/config"
SERVICE = {"serviceName": "v2svc", "groupName": "G2", "namespaceId": "public"}


def followers(cluster: LocalCluster) -> list[NodeProcess]:
    leader = cluster.leader()
    return [n for n in cluster.nodes if n.address != leader.address]


def ok(data: object) -> dict[str, object]:
    return {"code": 0, "message": "success", "data": data}


def test_v2_register_on_one_node_is_listed_by_another(cluster3: LocalCluster) -> None:
    writer, reader = followers(cluster3)
    client = cluster3.client
    params = {**SERVICE, "ip": "10.1.0.1", "port": "7001", "ephemeral": "false"}
    answer = client.post(f"{writer.url}{INSTANCE}", params=params)
    assert (answer.status_code, answer.json()) == (200, ok("ok"))

    # a linearizable list (naraft's extension) sees it at once, wherever it is asked
    query = {**SERVICE, "linearizable": "true"}
    listed = client.get(f"{reader.url}{LIST}", params=query)
    assert listed.status_code == 200, listed.text
    assert [h["ip"] for h in listed.json()["data"]["hosts"]] == ["10.1.0.1"]

    # a plain list is local: the reader shows it once it has applied the entry
    def hosts() -> list[Any] | None:
        data = client.get(f"{reader.url}{LIST}", params=SERVICE).json()["data"]
        found: list[Any] = data["hosts"]
        return found or None

    (host,) = wait_for(hosts, timeout_seconds=10, what="the reader lists the instance")
    assert (host["port"], host["serviceName"], host["ephemeral"]) == (7001, "G2@@v2svc", False)

    missing = client.get(
        f"{reader.url}{INSTANCE}", params={**SERVICE, "ip": "10.9.9.9", "port": "1"}
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == 20004


def test_v2_config_publish_and_get_across_nodes(cluster3: LocalCluster) -> None:
    writer, reader = followers(cluster3)
    client = cluster3.client
    key = {"dataId": "v2.yaml", "group": "DEFAULT_GROUP", "namespaceId": "v2ns"}
    published = client.post(f"{writer.url}{CONFIG}", data={**key, "content": "k: v"})
    assert (published.status_code, published.json()) == (200, ok(True))
    for node in cluster3.nodes:  # reads pass the read barrier: no waiting
        got = client.get(f"{node.url}{CONFIG}", params=key)
        assert (got.status_code, got.json()) == (200, ok("k: v")), node.address
    v1 = client.get(
        f"{reader.url}/nacos/v1/cs/configs",
        params={"dataId": "v2.yaml", "group": "DEFAULT_GROUP", "tenant": "v2ns"},
    )
    assert (v1.status_code, v1.text) == (200, "k: v")
    deleted = client.delete(f"{reader.url}{CONFIG}", params=key)
    assert (deleted.status_code, deleted.json()) == (200, ok(True))
    gone = client.get(f"{writer.url}{CONFIG}", params=key)
    assert (gone.status_code, gone.json()["code"]) == (404, 20004)


def test_v2_admin_writes_through_a_follower_and_views_on_every_node(
    cluster3: LocalCluster,
) -> None:
    """Namespaces and switches set through a follower (forwarded to the leader) are seen
    on another node; every node lists the same members and reads a namespace's configs."""
    writer, reader = followers(cluster3)
    client = cluster3.client
    namespace = {"namespaceId": "v2admin", "namespaceName": "V2 admin"}
    created = client.post(f"{writer.url}/nacos/v2/console/namespace", data=namespace)
    assert (created.status_code, created.json()) == (200, ok(True))
    switch = {"entry": "clientBeatInterval", "value": "6500"}
    updated = client.put(f"{writer.url}/nacos/v2/ns/ops/switches", params=switch)
    assert (updated.status_code, updated.json()) == (200, ok("ok"))

    def applied() -> bool | None:
        listed = client.get(f"{reader.url}/nacos/v2/console/namespace/list").json()["data"]
        switches = client.get(f"{reader.url}/nacos/v2/ns/operator/switches").json()["data"]
        named = "v2admin" in [n["namespace"] for n in listed]
        return (named and switches["clientBeatInterval"] == 6500) or None

    wait_for(applied, timeout_seconds=10, what="the reader applies the namespace and switch")

    key = {"dataId": "v2admin.yaml", "group": "DEFAULT_GROUP", "namespaceId": "v2admin"}
    published = client.post(f"{writer.url}{CONFIG}", data={**key, "content": "a: 1"})
    assert (published.status_code, published.json()) == (200, ok(True))
    expected = sorted(n.address for n in cluster3.nodes)
    for node in cluster3.nodes:
        nodes = client.get(f"{node.url}/nacos/v2/core/cluster/node/list").json()["data"]
        assert sorted(n["address"] for n in nodes) == expected
        health = client.get(f"{node.url}/nacos/v2/core/cluster/node/self/health").json()
        assert health == ok("UP")
        configs = client.get(
            f"{node.url}/nacos/v2/cs/history/configs", params={"namespaceId": "v2admin"}
        )  # a read through the read barrier: the publish is there on every node
        assert [c["dataId"] for c in configs.json()["data"]] == ["v2admin.yaml"], node.address
