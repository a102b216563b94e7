"""Quorum arithmetic: pure functions of their arguments, tested with tables."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

from naraft.raft.types import Index, NodeId


class VoteResult(enum.Enum):
    PENDING = enum.auto()
    WON = enum.auto()
    LOST = enum.auto()


def majority(voters: Collection[NodeId]) -> int:
    """The smallest number of voters that is more than half of them."""
    return len(voters) // 2 + 1


def vote_result(voters: Collection[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON once a majority granted, LOST once a majority can no longer be reached."""
    granted = sum(1 for voter in voters if votes.get(voter) is True)
    rejected = sum(1 for voter in voters if votes.get(voter) is False)
    needed = majority(voters)
    if granted >= needed:
        return VoteResult.WON
    if len(voters) - rejected < needed:
        return VoteResult.LOST
    return VoteResult.PENDING


def committed_index(voters: Collection[NodeId], match_index: Mapping[NodeId, Index]) -> Index:
    """The highest index stored on a majority of voters (Raft §5.3).

    A voter with no known match counts as index 0.
    """
    acked = sorted((match_index.get(voter, Index(0)) for voter in voters), reverse=True)
    return acked[majority(voters) - 1]


def has_quorum(voters: Collection[NodeId], active: Collection[NodeId]) -> bool:
    """True when the voters in `active` form a majority."""
    return sum(1 for voter in voters if voter in active) >= majority(voters)
