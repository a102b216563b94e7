"""End-to-end fixtures: real `naraft server` processes on loopback (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.harness import LocalCluster, local_cluster


@pytest.fixture
def cluster3(tmp_path: Path) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path / "cluster", size=3) as cluster:
        cluster.wait_ready()
        yield cluster
