"""Suite-wide options and Hypothesis profiles.

- `--rewrite`: regenerate the expected outputs of tests/raft/scenarios/*.txt.
- `--sim-seeds N`: how many seeded simulator runs tests/sim parametrizes (default 40).
- `--sim-events N`: simulated events the million-event run must reach (default 1,000,000).
- `HYPOTHESIS_PROFILE=dev|ci|nightly` selects a Hypothesis profile (`ci` under CI=true).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci",
    derandomize=True,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="regenerate the expected outputs of tests/raft/scenarios/*.txt (review the diff)",
    )
    parser.addoption("--sim-seeds", type=int, default=40, help="seeded simulator runs")
    parser.addoption(
        "--sim-events", type=int, default=1_000_000, help="events of the million-event run"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        count = int(metafunc.config.getoption("--sim-seeds"))
        metafunc.parametrize("sim_seed", range(count), ids=[f"seed={s}" for s in range(count)])
