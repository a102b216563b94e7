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


class TransferError(RaftError):
    """A leadership transfer cannot start: the target is not a voting peer of this node."""


class LeadershipTransferringError(NotLeaderError):
    """The leader is handing over to `leader_hint` and takes no proposal meanwhile (Raft
    thesis §3.10): the shell waits for the new leader, then sends the proposal there."""


class HandedOverError(NotLeaderError):
    """The leader handed leadership over to `leader_hint` while the request waited for the
    hand-over; nothing was appended. The one case where a request already forwarded to the
    old leader is forwarded once more, to the new one."""


class InvariantError(RaftError):
    """The core found its own state impossible: the node must stop (fail-stop)."""
