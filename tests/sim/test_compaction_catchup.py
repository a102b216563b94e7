"""Seeded simulations with aggressive log compaction under crashes and partitions: lagging
nodes must catch up by digest sync (the leader's applied state at a known index), and every
safety invariant, durability of acknowledged writes and linearizability still hold.

A failure names its seed; replay with the test's parameters (see `_cluster`)."""

from __future__ import annotations

import pytest

from naraft.sim import SafetyViolationError, SimCluster
from naraft.sim.cluster import FaultProfile
from naraft.sim.runs import check_linearizable

SEEDS = range(12)


def _cluster(seed: int, trace: list[str]) -> SimCluster:
    faults = FaultProfile(
        drop_rate=0.05,
        crash_rate=0.02,
        restart_after_ticks=(20, 120),  # long enough for the others to compact past it
        partition_rate=0.01,
        heal_after_ticks=(30, 120),
        client_rate=0.9,
        keys=5,
        compact_every_entries=6,
    )
    return SimCluster(3 if seed % 2 else 5, seed=seed, faults=faults, trace=trace.append, clients=4)


def _run(seed: int) -> tuple[SimCluster, int]:
    trace: list[str] = []
    cluster = _cluster(seed, trace)
    try:
        cluster.run(ticks=500)
        check_linearizable(cluster.history)
    except SafetyViolationError as violation:
        pytest.fail(f"seed={seed}: {violation}")
    return cluster, sum("digest-synced" in line for line in trace)


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={s}" for s in SEEDS])
def test_compaction_with_crashes_and_partitions_keeps_every_invariant(seed: int) -> None:
    cluster, _installs = _run(seed)
    assert cluster.acked_writes, "no write was acknowledged: the run proves nothing"


def test_lagging_nodes_really_catch_up_by_digest_sync() -> None:
    installs = sum(_run(seed)[1] for seed in SEEDS[:6])
    assert installs >= 3, f"only {installs} digest catch-ups in 6 runs: the test is too gentle"
