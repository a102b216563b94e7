"""Suite-wide options and Hypothesis profiles.

- `--rewrite`: regenerate the expected outputs of tests/raft/scenarios/*.txt.
- `--sim-seeds N`: how many seeded simulator runs tests/sim parametrizes (default 40).
- `--sim-events N`: simulated events the million-event run must reach (default 1,000,000).
- `HYPOTHESIS_PROFILE=dev|ci|nightly` selects a Hypothesis profile (`ci` under CI=true).

The suite runs on two pytest-xdist workers (`-n 2 --dist loadgroup` in pyproject.toml; `-n 0`
runs it in one process). The tests of one module that starts real naraft processes (marked
`e2e`, or in tests/e2e) form one group, run by one worker one after another: a module's
cluster fixture starts once, and at most two clusters (one per worker) share the two cores.
The hook runs before xdist's own, which reads the groups (after it, they are ignored).
"""

from __future__ import annotations

import asyncio
import os
import warnings

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


PROCESS_DIR = "e2e"
LONG_FIRST = (
    "tests/chaos/test_campaign.py",
    "tests/sim/test_planted_bugs.py",
    "tests/sim/test_random_runs.py",
    "tests/e2e/test_failover.py",
    "tests/e2e/test_membership.py",
    "tests/e2e/test_sdk3_naming.py",
)
"""The modules of the longest units (minutes of campaigns, planted-bug hunts, kill stories):
scheduled first, so that the two workers share them and neither ends the run alone on one
(`--no-loadscope-reorder` in pyproject.toml keeps xdist to this order)."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    items.sort(key=lambda item: item.path.relative_to(root).as_posix() not in LONG_FIRST)
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue  # a module that named its own group
        if item.path.parent.name == PROCESS_DIR or item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group(f"processes:{item.path.stem}"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_seed" in metafunc.fixturenames:
        count = int(metafunc.config.getoption("--sim-seeds"))
        metafunc.parametrize("sim_seed", range(count), ids=[f"seed={s}" for s in range(count)])


@pytest.fixture
def no_leftover_event_loop() -> None:
    """Close the event loop that pytest-asyncio leaves behind after an async test (its
    `_provide_clean_event_loop` sets a fresh, never-closed loop on the policy).

    A sync test that calls `asyncio.run` replaces that loop; it then becomes garbage, and
    whenever the collector gets to it, its self-pipe reports `ResourceWarning: unclosed
    <socket.socket family=1 ...>`, charged to whatever test is running then (it was the
    chaos campaign, minutes later). Closing it here and leaving no loop set is the state
    `asyncio.run` leaves behind anyway."""
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:  # no loop set
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    policy.set_event_loop(None)
