"""Rolling upgrades: members whose peer protocol ranges share a version (builds one version
apart, stood in for by `--peer-protocol`) form one working cluster; a member sharing no
version is refused, each side saying so in one line, and the others keep their quorum."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, wait_for

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
