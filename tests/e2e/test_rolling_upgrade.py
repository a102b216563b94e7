"""Rolling upgrades: members whose peer protocol ranges share a version (builds one version
apart, stood in for by `--peer-protocol`) form one working cluster; a member sharing no
version is refused, each side saying so in one line, and the others keep their quorum."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, naraft_command, wait_for

from naraft.client import transfer_leadership

pytestmark = pytest.mark.timeout(120)


def speaking(node: NodeProcess, protocol: str) -> None:
    node.spec = dataclasses.replace(
        node.spec, extra_args=(*node.spec.extra_args, "--peer-protocol", protocol)
    )


def test_adjacent_versions_work_together_and_a_stranger_is_refused(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster", size=3)
    # two builds of version 2 that still speak 1, one build of version 3 that still speaks 2
    for node, protocol in zip(cluster.nodes, ("1..2", "1..2", "2..3"), strict=True):
        speaking(node, protocol)
    with cluster:
        leader = cluster.wait_ready()
        assert cluster.put(leader, "mixed", "v1").status_code == 200
        for node in cluster.nodes:
            cluster.wait_caught_up(node)
            assert cluster.get(node, "mixed").json()["value"] == "v1"

        # the version-3 member restarts as a build that dropped version 2
        stranger = cluster.nodes[2]
        stranger.terminate()
        speaking(stranger, "3..3")
        stranger.start()
        others = cluster.nodes[:2]
        refusal = (
            f"refusing peer {stranger.id}: it speaks peer protocol 3..3, this node 1..2; "
            "members must share a version (upgrade one version at a time)"
        )
        wait_for(
            lambda: any(refusal in node.log_text() for node in others),
            timeout_seconds=20,
            what="a member to refuse the stranger",
        )
        wait_for(
            lambda: "refuses this node: incompatible peer protocol" in stranger.log_text(),
            timeout_seconds=20,
            what="the stranger to hear the refusal",
        )
        assert all(node.log_text().count(refusal) <= 1 for node in others)  # once, not per batch
        leader = cluster.leader(among=others)
        assert cluster.put(leader, "mixed", "v2").status_code == 200
        assert cluster.state(stranger)["appliedIndex"] < cluster.state(leader)["appliedIndex"]


def test_a_new_command_waits_for_every_member_and_the_cluster_never_goes_back(
    tmp_path: Path,
) -> None:
    """Batch metadata (a command version 3 brought) is refused while a member runs the
    build before it; once every member speaks 3 the leader records the version, the
    command applies everywhere, and a member cannot return to the older build."""
    cluster = LocalCluster(tmp_path / "cluster", size=3)
    old = cluster.nodes[2]
    speaking(old, "1..2")  # the build before: it reads format 2, but not the command
    instance = {"serviceName": "orders", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"}
    batch = {
        "serviceName": "orders",
        "consistencyType": "persist",
        "metadata": '{"zone": "b"}',
    }
    with cluster:
        leader = cluster.wait_ready(timeout_seconds=30)
        if leader is old:  # a real build 2 leader would not know the route at all
            transfer_leadership(leader.url, cluster.nodes[0].id)
            leader = cluster.leader(exclude=old.id)
        base = f"{leader.url}/nacos/v1/ns/instance"
        assert cluster.client.post(base, params=instance).text == "ok"
        refused = cluster.client.put(f"{base}/metadata/batch", params=batch)
        assert refused.status_code == 503, refused.text
        assert f"{old.id} (speaks 1..2)" in refused.text

        new_spec = dataclasses.replace(old.spec, extra_args=cluster.nodes[0].spec.extra_args)
        old.terminate()
        old.spec = new_spec  # upgraded: this build
        old.start()

        def updated() -> bool:
            answer = cluster.client.put(
                f"{cluster.leader().url}/nacos/v1/ns/instance/metadata/batch", params=batch
            )
            return answer.status_code == 200

        wait_for(updated, timeout_seconds=30, what="the upgraded cluster to take the command")
        leader = cluster.leader()
        for node in cluster.nodes:
            cluster.wait_caught_up(node)
            detail = cluster.client.get(f"{node.url}/nacos/v1/ns/instance", params=instance)
            assert detail.json()["metadata"] == {"zone": "b"}, node.id
            assert cluster.state(node)["clusterVersion"] == 3, node.id

        status = naraft_command("status", "--server", leader.url)
        assert "the cluster records version 3; a member cannot go back" in status.stdout

        # a downgrade: the member's data records version 3, the older build refuses to start
        old.terminate()
        speaking(old, "1..2")
        old.start()
        wait_for(lambda: old.exit_code is not None, timeout_seconds=20, what="the refusal")
        assert old.exit_code != 0
        assert "records peer protocol 3, and this build speaks 1..2" in old.log_text()
        leader = cluster.leader(among=cluster.nodes[:2])
        assert cluster.put(leader, "after", "v").status_code == 200
