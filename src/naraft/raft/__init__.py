"""The sans-IO Raft protocol: no clock, no sockets, no disk (docs/conventions.md)."""

from __future__ import annotations

from naraft.raft.config import RaftConfig
from naraft.raft.core import PeerStatus, RaftCore, Status
from naraft.raft.errors import InvariantError, NotLeaderError, RaftError
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
    "HardState",
    "Heartbeat",
    "HeartbeatReply",
    "Index",
    "InstallSnapshot",
    "InvariantError",
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
    "VoteReply",
]
