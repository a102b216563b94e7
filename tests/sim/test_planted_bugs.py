"""The simulator must catch known Raft bugs when they are planted in the core or the shell.

Each test replaces one of the core's (or the shell's `ReadyHandler`'s) small decision
methods with a broken version and searches seeds (deterministically, from 0 up) until the
simulator reports a violation.
A simulator that cannot find these proves little when it passes (docs/conventions.md#tests).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from naraft.raft import HardState, Index, RaftCore, Term
from naraft.replica.handler import ReadyHandler
from naraft.sim import SafetyViolationError, run_seed
from naraft.storage.base import WriteBatch

MAX_SEEDS = 3000


def _first_failing_seed(*, ticks: int) -> tuple[int, str] | None:
    for seed in range(MAX_SEEDS):
        try:
            run_seed(seed, hunt=True, ticks=ticks)
        except SafetyViolationError as violation:
            return seed, str(violation)
    return None


def _vote_not_persisted(core: RaftCore) -> HardState:
    return HardState(term=core.term, voted_for=None, commit=core.commit_index)


def _no_up_to_date_check(_core: RaftCore, _last_index: Index, _last_term: Term) -> bool:
    return True


def _commit_by_counting_any_term(_core: RaftCore, _index: Index) -> bool:
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "planted", "ticks"),
    [
        pytest.param("_hard_state", _vote_not_persisted, 300, id="vote-not-persisted"),
        pytest.param("_is_up_to_date", _no_up_to_date_check, 150, id="no-up-to-date-check"),
        pytest.param("_can_commit", _commit_by_counting_any_term, 150, id="figure-8-commit"),
    ],
)
def test_simulator_catches_planted_bug(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    planted: Callable[..., object],
    ticks: int,
) -> None:
    monkeypatch.setattr(RaftCore, method, planted)
    found = _first_failing_seed(ticks=ticks)
    assert found is not None, f"no violation in {MAX_SEEDS} hunt seeds with {method} broken"
    seed, violation = found
    print(f"planted {method}: caught at hunt seed {seed}: {violation}")  # noqa: T201


def _applied_without_its_commit(_handler: ReadyHandler, batch: WriteBatch) -> WriteBatch:
    """The shell writes the applied state without the deferred commit index covering it."""
    return batch


def test_simulator_catches_planted_shell_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator drives the production Ready handler: a shell that stores an applied
    index past its stored commit index is caught (the node cannot restart from its store)."""
    monkeypatch.setattr(ReadyHandler, "_with_commit", _applied_without_its_commit)
    found = _first_failing_seed(ticks=150)
    assert found is not None, f"no violation in {MAX_SEEDS} hunt seeds with the shell broken"
    seed, violation = found
    assert "cannot restart from its store" in violation
    print(f"planted shell bug: caught at hunt seed {seed}: {violation}")  # noqa: T201
