"""Fault campaigns against a real naraft cluster: `naraft chaos` (docs/fault-campaigns.md).

A campaign runs seeded fault schedules, one at a time, each on a fresh cluster of real
`naraft server` processes with real SQLite files: concurrent clients drive the key/value
and naming APIs and record a history (`naraft.checker`'s JSON-lines format) while a
nemesis kills, pauses, partitions (through `FaultProxy`, a TCP proxy in front of every
node's peer address), degrades the peer transport (its failpoints) and emulates power
loss (the storage failpoint). After healing, `checks` proves the history linearizable,
every acknowledged write present on every node, identical committed state, at most one
leader per term, and convergence within a bound.

Test tooling only: no production module imports this package.
"""

from __future__ import annotations

from naraft.chaos.runner import (
    CampaignConfig,
    CampaignResult,
    CheckOutcome,
    ScheduleResult,
    run_campaign,
)
from naraft.chaos.schedules import CI_KINDS, SOAK_KINDS, ScheduleKind

__all__ = [
    "CI_KINDS",
    "SOAK_KINDS",
    "CampaignConfig",
    "CampaignResult",
    "CheckOutcome",
    "ScheduleKind",
    "ScheduleResult",
    "run_campaign",
]
