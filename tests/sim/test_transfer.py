"""Leadership transfer in the simulator (Raft thesis §3.10), beside the random runs that
draw transfers as one of their faults (`FaultProfile.transfer_rate`)."""

from __future__ import annotations

import pytest

from naraft.sim import SimCluster
from naraft.sim.cluster import FaultProfile

CLEAN = FaultProfile(
    drop_rate=0.0, duplicate_rate=0.0, crash_rate=0.0, partition_rate=0.0, campaign_rate=0.0
)


@pytest.mark.parametrize("seed", range(5))
def test_hand_over_on_a_clean_network_is_quick_and_loses_no_write(seed: int) -> None:
    """Under client load, every hand-over elects the target within one election timeout
    (it never waits for a timer), and every write started is acknowledged or refused,
    none lost (the run's invariants check durability and linearizability)."""
    cluster = SimCluster(3, seed=seed, faults=CLEAN)
    cluster.run_until(30, chaos=False)
    for _ in range(5):
        leader = cluster.leader()
        assert leader is not None
        target = next(n for n in cluster.ids if n != leader)
        started = cluster.now
        cluster.transfer(leader, target)
        cluster.run_until(started + 10, chaos=False)  # one election timeout (10 ticks)
        assert cluster.leader() == target, f"seed {seed}: no hand-over to {target} in 10 ticks"
        cluster.run_until(cluster.now + 10, chaos=False)
    cluster.settle()
    writes = [e for e in cluster.history if e.f == "write"]
    assert sum(1 for e in writes if e.type == "ok") > 20


def test_hand_over_to_a_crashed_node_is_abandoned() -> None:
    """The leader stops taking proposals while it hands over; a target that never answers
    costs two election timeouts, then the same leader takes writes again."""
    cluster = SimCluster(3, seed=11, faults=CLEAN)
    cluster.run_until(30, chaos=False)
    leader = cluster.leader()
    assert leader is not None
    target = next(n for n in cluster.ids if n != leader)
    cluster.crash(target)
    cluster.transfer(leader, target)
    core = cluster.nodes[leader].core
    assert core is not None
    assert core.transferee == target
    cluster.run_until(cluster.now + 22, chaos=False)
    assert cluster.leader() == leader
    assert core.transferee is None
    acked_before = len(cluster.acked_writes)
    cluster.run_until(cluster.now + 20, chaos=False)
    assert len(cluster.acked_writes) > acked_before
