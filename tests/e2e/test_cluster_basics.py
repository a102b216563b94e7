"""A real 3-node cluster: it elects a leader and serves writes through any node."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.harness import LocalCluster, wait_for

from naraft.client import kv_path

pytestmark = pytest.mark.e2e


def test_three_nodes_elect_one_leader(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    views = [cluster3.state(node) for node in cluster3.nodes]
    assert [v["role"] for v in views].count("leader") == 1
    assert {v["leader"] for v in views} == {leader.address}
    assert len({v["term"] for v in views}) == 1
    # Nacos 1.x's RaftPeer of each node, at its three paths (one deprecated, one alias).
    for node in cluster3.nodes:
        peers = [
            cluster3.client.get(f"{node.url}/nacos/v1/ns/{path}", timeout=5.0).json()
            for path in ("raft/peer", "operator/cluster/state", "ops/cluster/state")
        ]
        assert peers[0] == peers[1] == peers[2]
        assert (peers[0]["ip"], peers[0]["leader"]) == (node.address, leader.address)
        assert peers[0]["state"] == ("LEADER" if node is leader else "FOLLOWER")
    # Nacos's Distro views: the leader is every service's responsible member
    params = {"serviceName": "distro-svc", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"}
    registered = cluster3.client.post(f"{leader.url}/nacos/v1/ns/instance", params=params)
    assert registered.status_code == 200, registered.text
    for node in cluster3.nodes:
        responsible = cluster3.client.get(
            f"{node.url}/nacos/v1/ns/operator/distro/server",
            params={"serviceName": "distro-svc", "linearizable": "true"},
        )
        assert responsible.json() == {"responsibleServer": leader.address}, responsible.text


def test_writes_through_any_node_are_readable_from_every_node(cluster3: LocalCluster) -> None:
    indexes = []
    for i, node in enumerate(cluster3.nodes):
        answer = cluster3.put(node, f"key-{i}", f"value-{i}")
        assert answer.status_code == 200, answer.text
        indexes.append(answer.json()["index"])
    for node in cluster3.nodes:
        cluster3.wait_applied(node, max(indexes))
        for i in range(len(cluster3.nodes)):
            answer = cluster3.get(node, f"key-{i}", consistency="local")
            assert answer.status_code == 200, answer.text
            assert answer.json()["value"] == f"value-{i}"
        linearizable = cluster3.get(node, "key-0", consistency="linearizable")
        assert linearizable.json()["value"] == "value-0"


def test_compare_and_set_and_delete(cluster3: LocalCluster) -> None:
    node = cluster3.nodes[1]
    assert cluster3.put(node, "cas", "one", prev=None).status_code == 200
    refused = cluster3.put(node, "cas", "two", prev="zero")
    assert refused.status_code == 409
    assert refused.json()["current"] == "one"
    assert cluster3.put(node, "cas", "two", prev="one").status_code == 200
    deleted = cluster3.client.delete(f"{node.url}{kv_path('cas')}")
    assert deleted.json()["deleted"] is True
    assert cluster3.get(node, "cas", consistency="linearizable").status_code == 404


def test_bad_input_is_refused_with_the_field_named(cluster3: LocalCluster) -> None:
    node = cluster3.nodes[0]
    missing = cluster3.client.put(f"{node.url}{kv_path('x')}", json={"val": "y"})
    assert missing.status_code == 400
    assert missing.json()["field"] in {"value", "val"}
    not_json = cluster3.client.put(f"{node.url}{kv_path('x')}", content=b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["field"] == "body"
    big = cluster3.put(node, "x", "v" * (1 << 20 + 1))
    assert big.status_code == 413
    assert cluster3.get(node, "x", consistency="linearizable").status_code == 404


def test_metrics_are_exposed(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    cluster3.put(leader, "m", "1")

    def has_commit_metric() -> bool:
        text = cluster3.client.get(f"{leader.url}/metrics").text
        return "naraft_proposal_commit_seconds_count" in text and "naraft_raft_term" in text

    assert wait_for(has_commit_metric, timeout_seconds=5, what="metrics")


def test_a_node_without_tls_files_or_auth_never_loads_cryptography(
    cluster3: LocalCluster,
) -> None:
    """`cryptography` (certificates, and PyJWT's algorithms) is about 16 MiB a process; a
    loopback node without TLS files has auth off and must not pay for it (G8)."""
    node = cluster3.nodes[0]
    assert cluster3.put(node, "k", "v").status_code == 200
    assert cluster3.get(node, "k", consistency="linearizable").status_code == 200
    assert node.pid is not None
    maps = Path(f"/proc/{node.pid}/maps").read_text()
    assert "/cryptography/" not in maps
    assert "/aiohttp/" in maps  # the check can see a loaded extension module
