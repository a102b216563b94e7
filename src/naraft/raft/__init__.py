"""The sans-IO Raft protocol: no clock, no sockets, no disk (docs/conventions.md)."""

from __future__ import annotations

from naraft.raft.config import RaftConfig
from naraft.raft.core import PeerStatus, RaftCore, Status
from naraft.raft.errors import (
    HandedOverError,
    InvariantError,
    LeadershipTransferringError,
    NotLeaderError,
    RaftError,
    TransferError,
)
from naraft.raft.log import LogView
from naraft.raft.messages import (
    AppendEntries,
    AppendReply,
    Envelope,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
    VoteReply,
)
from naraft.raft.progress import ProgressState
from naraft.raft.ready import ReadState, Ready, RoleChange
from naraft.raft.types import NO_SNAPSHOT, Entry, HardState, Index, NodeId, Role, SnapshotMeta, Term

__all__ = [
    "NO_SNAPSHOT",
    "AppendEntries",
    "AppendReply",
    "Entry",
    "Envelope",
    "HandedOverError",
    "HardState",
    "Heartbeat",
    "HeartbeatReply",
    "Index",
    "InstallSnapshot",
    "InvariantError",
    "LeadershipTransferringError",
    "LogView",
    "Message",
    "NodeId",
    "NotLeaderError",
    "PeerStatus",
    "ProgressState",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "RequestVote",
    "Role",
    "RoleChange",
    "SnapshotMeta",
    "Status",
    "Term",
    "TimeoutNow",
    "TransferError",
    "VoteReply",
]
