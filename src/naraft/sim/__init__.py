"""Deterministic simulation of a naraft cluster's Raft cores (tests and `python -m naraft.sim`).

Production code never imports this package (an import-linter contract).
"""

from __future__ import annotations

from naraft.sim.cluster import FaultProfile, HistoryEvent, SimCluster
from naraft.sim.invariants import SafetyMonitor, SafetyViolationError
from naraft.sim.runs import RunResult, run_seed

__all__ = [
    "FaultProfile",
    "HistoryEvent",
    "RunResult",
    "SafetyMonitor",
    "SafetyViolationError",
    "SimCluster",
    "run_seed",
]
