"""Runs every scenario file in tests/raft/scenarios against a fresh ClusterEnv."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.raft.scenario import ClusterEnv, run_file

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[path.stem for path in SCENARIOS])
def test_scenario(path: Path, request: pytest.FixtureRequest) -> None:
    rewrite = bool(request.config.getoption("--rewrite", default=False))
    run_file(path, ClusterEnv().handle, rewrite=rewrite)
