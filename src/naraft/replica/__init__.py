"""The IO shell around one RaftCore (`shell`) and its synchronous Ready handler (`handler`)."""

from __future__ import annotations

from naraft.replica.handler import ReadyHandler, StateMachine
from naraft.replica.shell import (
    CompactionPolicy,
    LogStore,
    PeerSender,
    Replica,
    ReplicaObserver,
    ReplicaTimings,
)

__all__ = [
    "CompactionPolicy",
    "LogStore",
    "PeerSender",
    "ReadyHandler",
    "Replica",
    "ReplicaObserver",
    "ReplicaTimings",
    "StateMachine",
]
