"""One seeded simulation run: a cluster shape and fault mix drawn from the seed, run, checked.

`run_seed(seed)` is what the tests parametrize and what `python -m naraft.sim --seed N`
replays; the same seed always draws the same shape, faults and history.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from naraft.checker import OpFunction, OpRecord, RecordType, Verdict, check_history
from naraft.sim.cluster import FaultProfile, HistoryEvent, SimCluster
from naraft.sim.invariants import SafetyViolationError


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    seed: int
    size: int
    events: int
    acked_writes: int
    history: tuple[HistoryEvent, ...]
    description: str


def draw_shape(seed: int, *, hunt: bool = False) -> tuple[int, FaultProfile, bool, bool]:
    """The cluster size, fault profile and PreVote/CheckQuorum settings for `seed`.

    `hunt` draws from harsher mixes aimed at known hazards: crashes right after a vote,
    leaders crashing often, long delays, simultaneous campaigns.
    """
    rng = random.Random(f"shape-{seed}")
    if hunt:
        return _draw_hunt(rng)
    size = rng.choice((3, 3, 5))
    faults = FaultProfile(
        drop_rate=rng.choice((0.0, 0.02, 0.1)),
        duplicate_rate=rng.choice((0.0, 0.02)),
        max_delay_ticks=rng.choice((0.3, 0.8, 2.5)),
        crash_rate=rng.choice((0.002, 0.01)),
        partition_rate=rng.choice((0.002, 0.01)),
        campaign_rate=rng.choice((0.0, 0.005)),
        compact_every_entries=rng.choice((0, 0, 16)),
    )
    pre_vote = rng.random() < 0.7
    check_quorum = rng.random() < 0.7
    # Drawn last, so that every earlier draw of a seed's shape stays what it was. Not in
    # hunt mode: orderly elections after a leader's death hide the hazards hunts look for.
    faults = dataclasses.replace(faults, detect_refusal=rng.random() < 0.5)
    faults = dataclasses.replace(faults, transfer_rate=rng.choice((0.0, 0.02)))
    faults = dataclasses.replace(faults, membership_rate=rng.choice((0.0, 0.0, 0.05)))
    return size, faults, pre_vote, check_quorum


def spares_for(faults: FaultProfile) -> int:
    """Nodes kept outside the cluster to be added: two when the run changes membership."""
    return 2 if faults.membership_rate else 0


def _draw_hunt(rng: random.Random) -> tuple[int, FaultProfile, bool, bool]:
    size = rng.choice((3, 5, 5))
    faults = FaultProfile(
        drop_rate=rng.choice((0.0, 0.05)),
        max_delay_ticks=rng.choice((1.0, 3.0, 6.0)),
        crash_rate=rng.choice((0.01, 0.03)),
        restart_after_ticks=(2, 20),
        partition_rate=rng.choice((0.0, 0.01, 0.03)),
        heal_after_ticks=(5, 30),
        campaign_rate=rng.choice((0.01, 0.05)),
        leader_crash_rate=rng.choice((0.02, 0.1)),
        crash_after_vote_rate=rng.choice((0.0, 0.3)),
        max_entries_per_append=rng.choice((1, 8)),
    )
    pre_vote, check_quorum = rng.random() < 0.3, rng.random() < 0.3
    faults = dataclasses.replace(faults, transfer_rate=rng.choice((0.0, 0.05)))
    return size, faults, pre_vote, check_quorum


def run_seed(
    seed: int,
    *,
    ticks: int = 600,
    trace: Callable[[str], None] | None = None,
    crash_mid_ready_rate: float = 0.0005,
    hunt: bool = False,
) -> RunResult:
    """Run the simulation for `seed`; raises SafetyViolationError on any breach."""
    size, faults, pre_vote, check_quorum = draw_shape(seed, hunt=hunt)
    cluster = SimCluster(
        size,
        seed=seed,
        faults=faults,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        trace=trace,
        spares=spares_for(faults),
    )
    cluster.crash_mid_ready_rate = crash_mid_ready_rate
    cluster.run(ticks=ticks)
    check_linearizable(cluster.history)
    return RunResult(
        seed=seed,
        size=size,
        events=cluster.events,
        acked_writes=len(cluster.acked_writes),
        history=tuple(cluster.history),
        description=(
            f"seed={seed} nodes={size} prevote={pre_vote} checkquorum={check_quorum} {faults}"
        ),
    )


# The enums by value, looked up once per history event (cheaper than calling the enum)
_RECORD_TYPES = {member.value: member for member in RecordType}
_FUNCTIONS = {member.value: member for member in OpFunction}


def to_records(history: tuple[HistoryEvent, ...] | list[HistoryEvent]) -> list[OpRecord]:
    """The simulator's history in the checker's record format (times in micro-ticks)."""
    return [
        OpRecord(
            process=event.process,
            type=_RECORD_TYPES[event.type],
            function=_FUNCTIONS[event.f],
            key=event.key,
            value=event.value,
            time=round(event.time * 1_000_000),
        )
        for event in history
    ]


def check_linearizable(history: tuple[HistoryEvent, ...] | list[HistoryEvent]) -> None:
    """Raise SafetyViolationError unless the client history is linearizable."""
    result = check_history(to_records(history))
    for key, key_result in result.key_results.items():
        if key_result.verdict is Verdict.NOT_LINEARIZABLE:
            raise SafetyViolationError(f"linearizability: key {key}: {key_result.explanation}")
