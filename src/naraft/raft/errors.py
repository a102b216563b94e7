"""The core's own errors. Standalone: naraft.raft imports nothing else from naraft."""

from __future__ import annotations

from naraft.raft.types import NodeId


class RaftError(Exception):
    """Base of the core's errors."""


class NotLeaderError(RaftError):
    """This node cannot accept the request; `leader_hint` is the leader it knows, if any."""

    def __init__(self, leader_hint: NodeId | None) -> None:
        self.leader_hint = leader_hint
        where = f"leader is {leader_hint}" if leader_hint is not None else "no leader known"
        super().__init__(f"not the leader; {where}")


class InvariantError(RaftError):
    """The core found its own state impossible: the node must stop (fail-stop)."""
