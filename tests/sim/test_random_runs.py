"""Seeded random runs of the simulator: the paper's safety properties after every event.

A failure names its seed; replay it with `python -m naraft.sim --seed N --trace`
(add `--hunt` for the hunt-mode tests).
"""

from __future__ import annotations

import pytest

from naraft.sim import SafetyViolationError, SimCluster, run_seed
from naraft.sim.runs import draw_shape


def _replay_hint(seed: int, *, hunt: bool) -> str:
    flag = " --hunt" if hunt else ""
    return f"replay: python -m naraft.sim --seed {seed}{flag} --trace"


def test_safety_under_faults(sim_seed: int) -> None:
    try:
        result = run_seed(sim_seed)
    except SafetyViolationError as violation:
        pytest.fail(f"{violation}\n{_replay_hint(sim_seed, hunt=False)}")
    assert result.events > 1000


def test_safety_under_hunting_faults(sim_seed: int) -> None:
    seed = 10_000 + sim_seed
    try:
        run_seed(seed, hunt=True, ticks=200)
    except SafetyViolationError as violation:
        pytest.fail(f"{violation}\n{_replay_hint(seed, hunt=True)}")


def test_a_million_events_without_a_violation(request: pytest.FixtureRequest) -> None:
    """Seeds from 100,000 on until the runs add up to --sim-events simulated events."""
    target = int(request.config.getoption("--sim-events"))
    events = 0
    writes = 0
    seed = 100_000
    while events < target:
        hunt = seed % 4 == 0
        try:
            result = run_seed(seed, hunt=hunt, ticks=300 if hunt else 600)
        except SafetyViolationError as violation:
            pytest.fail(f"{violation}\n{_replay_hint(seed, hunt=hunt)}")
        events += result.events
        writes += result.acked_writes
        seed += 1
    assert writes > 0, "no write was ever acknowledged: the runs prove nothing"


def test_same_seed_same_history() -> None:
    first, second = run_seed(7, ticks=300), run_seed(7, ticks=300)
    assert first.history == second.history
    assert first.events == second.events


def test_different_seeds_differ() -> None:
    assert run_seed(1, ticks=200).history != run_seed(2, ticks=200).history


def test_clean_network_commits_every_write() -> None:
    """Without faults every write a client starts is acknowledged."""
    _, faults, _, _ = draw_shape(0)
    cluster = SimCluster(
        3,
        seed=3,
        faults=type(faults)(
            drop_rate=0.0,
            duplicate_rate=0.0,
            crash_rate=0.0,
            partition_rate=0.0,
            campaign_rate=0.0,
        ),
    )
    cluster.run(ticks=300)
    writes = [e for e in cluster.history if e.f == "write"]
    invoked = sum(1 for e in writes if e.type == "invoke")
    acked = sum(1 for e in writes if e.type == "ok")
    assert invoked > 50
    assert acked == invoked
