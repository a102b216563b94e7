"""Identifiers and the values every layer shares: entries, hard state, roles.

Owns nothing mutable. Must not import anything outside the standard library.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType

NodeId = NewType("NodeId", str)
Term = NewType("Term", int)
Index = NewType("Index", int)


class Role(enum.StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Entry:
    """One slot of the replicated log. `command` is opaque to the core; b"" is a no-op."""

    term: Term
    index: Index
    command: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class HardState:
    """What a node must have on disk before it says anything: Raft's persistent state.

    `commit` is persisted too, so that a restarted node does not re-learn it from zero
    (it may only ever grow).
    """

    term: Term = Term(0)
    voted_for: NodeId | None = None
    commit: Index = Index(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    """The boundary of the compacted log: the state up to `index` is held as a snapshot."""

    index: Index = Index(0)
    term: Term = Term(0)


NO_SNAPSHOT = SnapshotMeta()
