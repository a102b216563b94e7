"""Membership changes in the simulator: leaders add spare nodes as learners, promote them
once caught up and remove voters (the leader too) while nodes crash, restart and are
partitioned; every invariant of `naraft.sim.invariants` holds after every event and the
client history is linearizable. The random runs draw such runs too (`draw_shape`); a
planted bug that lets two changes be in flight at once is caught."""

from __future__ import annotations

import pytest

from naraft.raft import RaftCore
from naraft.raft.membership import ChangeKind, MembershipChange
from naraft.sim import SafetyViolationError, SimCluster
from naraft.sim.cluster import FaultProfile
from naraft.sim.runs import check_linearizable

CHANGING = FaultProfile(
    membership_rate=0.3, crash_rate=0.01, partition_rate=0.02, compact_every_entries=16
)
CLEAN = FaultProfile(
    drop_rate=0.0, duplicate_rate=0.0, crash_rate=0.0, partition_rate=0.0, campaign_rate=0.0
)


@pytest.mark.parametrize("seed", range(8))
def test_membership_changes_under_faults_keep_every_invariant(seed: int) -> None:
    cluster = SimCluster(3, seed=seed, faults=CHANGING, spares=2)
    cluster.run(ticks=400)  # heals, settles and checks convergence of the final members
    check_linearizable(cluster.history)
    assert cluster.membership_changes >= 5, f"seed {seed}: too few changes to mean anything"
    assert len(cluster.acked_writes) > 50


def test_a_node_is_added_caught_up_promoted_and_its_old_member_removed() -> None:
    """An operator's replacement, step by step on a clean network: the new node catches up
    as a learner, votes once promoted, and the cluster keeps committing without the old."""
    cluster = SimCluster(3, seed=5, faults=CLEAN, spares=1)
    cluster.run_until(30, chaos=False)
    newcomer = cluster.ids[3]
    assert cluster.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, newcomer))
    cluster.run_until(cluster.now + 20, chaos=False)
    assert cluster.change_membership(MembershipChange(ChangeKind.PROMOTE, newcomer))
    cluster.run_until(cluster.now + 20, chaos=False)
    leader = cluster.leader()
    assert leader is not None
    old = next(n for n in cluster.bootstrap if n != leader)
    assert cluster.change_membership(MembershipChange(ChangeKind.REMOVE, old))
    cluster.run_until(cluster.now + 60, chaos=False)  # the removed node is wiped as a spare
    core = cluster.nodes[leader].core
    assert core is not None
    assert core.membership.voters == {*cluster.bootstrap, newcomer} - {old}
    acked = len(cluster.acked_writes)
    cluster.crash(next(n for n in core.membership.voters if n != leader))
    cluster.run_until(cluster.now + 20, chaos=False)  # 2 of 3 voters, the newcomer among them
    assert len(cluster.acked_writes) > acked
    cluster.settle()


def test_removing_the_leader_elects_another_at_once() -> None:
    cluster = SimCluster(3, seed=2, faults=CLEAN)
    cluster.run_until(30, chaos=False)
    leader = cluster.leader()
    assert leader is not None
    assert cluster.change_membership(MembershipChange(ChangeKind.REMOVE, leader))
    started = cluster.now
    cluster.run_until(started + 10, chaos=False)  # within one election timeout: a hand-over
    successor = cluster.leader()
    assert successor is not None
    assert successor != leader
    cluster.settle()


def test_simulator_catches_two_membership_changes_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug: a leader takes a new change before the previous one committed, so two
    configurations without a common majority can both decide."""
    monkeypatch.setattr(RaftCore, "_change_in_flight", lambda _self: False)
    for seed in range(40):
        cluster = SimCluster(3, seed=seed, faults=CHANGING, spares=2)
        try:
            cluster.run(ticks=400)
            check_linearizable(cluster.history)
        except SafetyViolationError as violation:
            print(f"two changes in flight: caught at seed {seed}: {violation}")  # noqa: T201
            return
    pytest.fail("no violation in 40 seeds with two membership changes in flight")
