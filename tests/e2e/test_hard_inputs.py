"""Inputs that once killed every node, and the state quota, against real 3-node clusters."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, local_cluster, wait_for

from naraft.client import kv_path
from naraft.naming.switches import INTEGER_SWITCHES

pytestmark = pytest.mark.e2e

SWITCHES = "/nacos/v1/ns/operator/switches"
INSTANCE = "/nacos/v1/ns/instance"


def assert_every_node_alive(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        assert node.running, f"{node.address} exited\n{cluster.logs()}"
        assert cluster.state(node)["id"] == node.address
    assert not [found for n in cluster.nodes for found in n.tracebacks()]


def test_the_poison_switch_requests_are_400_and_every_node_stays_up(
    cluster3: LocalCluster,
) -> None:
    leader = cluster3.leader()
    node = next(n for n in cluster3.nodes if n is not leader)  # a follower forwards writes
    wait_for(  # the leader's first own entries (its quota) are in: the log is quiet
        lambda: cluster3.state(leader)["quotaBytes"] is not None,
        timeout_seconds=15,
        what="the leader to replicate its quota",
    )
    before = cluster3.state(leader)
    for member in cluster3.nodes:  # the leader and both followers
        for entry in INTEGER_SWITCHES:
            for value in ("1000000000000000000000000000000", str(1 << 63), str((1 << 64) - 1)):
                answer = cluster3.client.put(
                    f"{member.url}{SWITCHES}", params={"entry": entry, "value": value}
                )
                assert answer.status_code == 400, answer.text
                assert "value" in answer.text
                assert entry in answer.text
    after = cluster3.state(leader)
    if after["term"] == before["term"]:  # (a new leader would have appended its no-op)
        assert after["commitIndex"] == before["commitIndex"]  # nothing was proposed
    assert_every_node_alive(cluster3)
    # the cluster still commits, through a follower too
    assert cluster3.put(node, "after-poison", "ok").status_code == 200
    register = cluster3.client.post(
        f"{node.url}{INSTANCE}",
        params={"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"},
    )
    assert register.status_code == 200, register.text
    switch = cluster3.client.put(
        f"{node.url}{SWITCHES}", params={"entry": "clientBeatInterval", "value": str((1 << 63) - 1)}
    )
    assert switch.status_code == 200, switch.text
    for member in cluster3.nodes:
        cluster3.wait_caught_up(member)
        shown = cluster3.client.get(f"{member.url}{SWITCHES}").json()
        assert shown["clientBeatInterval"] == (1 << 63) - 1
    assert_every_node_alive(cluster3)


QUOTA = 64 * 1024


def _quota_alarm_everywhere(cluster: LocalCluster, raised: bool) -> None:
    wait_for(
        lambda: all(cluster.state(n)["quotaAlarm"] is raised for n in cluster.nodes),
        timeout_seconds=15,
        what=f"quotaAlarm={raised} on every node",
    )


def test_a_tiny_quota_refuses_writes_serves_reads_and_clears_after_deletes(
    tmp_path: Path,
) -> None:
    args = (*FAST_TIMERS, "--quota-bytes", str(QUOTA))
    with local_cluster(tmp_path / "cluster", size=3, extra_args=args) as cluster:
        leader = cluster.wait_ready()
        node = cluster.nodes[0] if cluster.nodes[0] is not leader else cluster.nodes[1]
        wait_for(  # the leader replicates its quota: every replica checks against the same
            lambda: all(cluster.state(n)["quotaBytes"] == QUOTA for n in cluster.nodes),
            timeout_seconds=15,
            what="the quota on every node",
        )
        written: list[str] = []
        refusal = None
        for size in (8192, 2048, 512, 128):  # fill it up to the alarm margin (655 bytes)
            while True:
                key = f"fill-{len(written)}"
                answer = cluster.put(node, key, "v" * size)
                if answer.status_code != 200:
                    refusal = answer
                    break
                written.append(key)
        assert refusal is not None
        assert refusal.status_code == 507, refusal.text
        assert refusal.json()["reason"] == "quota"
        assert "quota" in refusal.json()["error"]
        _quota_alarm_everywhere(cluster, raised=True)
        state = cluster.state(node)
        assert QUOTA - 655 <= state["stateBytes"] <= QUOTA
        assert state["quotaBytes"] == QUOTA
        metrics = cluster.client.get(f"{node.url}/metrics").text
        assert "naraft_state_quota_alarm 1.0" in metrics
        # writes refused with a clear error on both APIs; reads served
        assert cluster.put(node, "one-more", "x").json()["reason"] == "quota"
        nacos = cluster.client.post(
            f"{node.url}{INSTANCE}",
            params={"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"},
        )
        assert nacos.status_code == 503
        assert "quota" in nacos.text
        for consistency in ("local", "linearizable"):
            assert cluster.get(node, written[0], consistency=consistency).status_code == 200
        # deletes apply and the alarm clears by itself
        for key in written[:3]:
            deleted = cluster.client.delete(f"{node.url}{kv_path(key)}")
            assert deleted.status_code == 200, deleted.text
        _quota_alarm_everywhere(cluster, raised=False)
        assert cluster.put(node, "after-delete", "x" * 1024).status_code == 200
        assert nacos.status_code == 503
        again = cluster.client.post(
            f"{node.url}{INSTANCE}",
            params={"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"},
        )
        assert again.status_code == 200, again.text
        assert_every_node_alive(cluster)
        # every replica holds the same state size (the quota decided the same everywhere)
        commit = cluster.wait_caught_up(node)
        for member in cluster.nodes:
            cluster.wait_applied(member, commit)
        sizes = {cluster.state(m)["stateBytes"] for m in cluster.nodes}
        assert len(sizes) == 1
