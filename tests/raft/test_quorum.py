"""Quorum arithmetic as tables: vote_result, committed_index, has_quorum (docs/conventions.md)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from naraft.raft import Index, NodeId
from naraft.raft.quorum import VoteResult, committed_index, has_quorum, majority, vote_result

N1, N2, N3, N4, N5 = (NodeId(f"n{i}") for i in range(1, 6))
THREE = (N1, N2, N3)
FOUR = (N1, N2, N3, N4)
FIVE = (N1, N2, N3, N4, N5)


@pytest.mark.parametrize(
    ("voters", "expected"),
    [
        pytest.param((N1,), 1, id="one"),
        pytest.param((N1, N2), 2, id="two"),
        pytest.param(THREE, 2, id="three"),
        pytest.param(FOUR, 3, id="four"),
        pytest.param(FIVE, 3, id="five"),
    ],
)
def test_majority(voters: Collection[NodeId], expected: int) -> None:
    assert majority(voters) == expected


@pytest.mark.parametrize(
    ("voters", "votes", "expected"),
    [
        pytest.param(THREE, {}, VoteResult.PENDING, id="nobody-answered"),
        pytest.param(THREE, {N1: True}, VoteResult.PENDING, id="own-vote-only"),
        pytest.param(THREE, {N1: True, N2: True}, VoteResult.WON, id="majority-granted"),
        pytest.param(THREE, {N1: True, N2: False}, VoteResult.PENDING, id="split-one-missing"),
        pytest.param(
            THREE, {N1: True, N2: False, N3: False}, VoteResult.LOST, id="majority-rejected"
        ),
        pytest.param(THREE, {N2: False, N3: False}, VoteResult.LOST, id="lost-without-own-vote"),
        pytest.param(
            THREE, {N1: True, N2: True, N3: False}, VoteResult.WON, id="won-despite-one-no"
        ),
        pytest.param(
            FOUR, {N1: True, N2: True, N3: False, N4: False}, VoteResult.LOST, id="even-tie-lost"
        ),
        pytest.param(FOUR, {N1: True, N2: True}, VoteResult.PENDING, id="four-needs-three"),
        pytest.param(FOUR, {N1: True, N2: True, N3: True}, VoteResult.WON, id="four-three-yes"),
        pytest.param(
            FIVE, {N1: True, N2: False, N3: False}, VoteResult.PENDING, id="five-two-no-pending"
        ),
        pytest.param(
            FIVE, {N1: True, N2: False, N3: False, N4: False}, VoteResult.LOST, id="five-three-no"
        ),
        pytest.param(
            THREE,
            {N1: True, NodeId("stranger"): True},
            VoteResult.PENDING,
            id="non-voter-does-not-count",
        ),
        pytest.param((N1,), {N1: True}, VoteResult.WON, id="single-node"),
    ],
)
def test_vote_result(
    voters: Collection[NodeId], votes: Mapping[NodeId, bool], expected: VoteResult
) -> None:
    assert vote_result(voters, votes) == expected


@pytest.mark.parametrize(
    ("voters", "match_index", "expected"),
    [
        pytest.param(THREE, {}, 0, id="nothing-acked"),
        pytest.param(THREE, {N1: 5}, 0, id="leader-alone"),
        pytest.param(THREE, {N1: 5, N2: 3}, 3, id="majority-at-lower-one"),
        pytest.param(THREE, {N1: 5, N2: 3, N3: 4}, 4, id="median-of-three"),
        pytest.param(THREE, {N1: 2, N2: 7, N3: 7}, 7, id="leader-behind"),
        pytest.param(FOUR, {N1: 9, N2: 8, N3: 1, N4: 1}, 1, id="four-needs-three"),
        pytest.param(FOUR, {N1: 9, N2: 8, N3: 7, N4: 1}, 7, id="four-third-highest"),
        pytest.param(FIVE, {N1: 5, N2: 5, N3: 4, N4: 1, N5: 0}, 4, id="five-third-highest"),
        pytest.param(THREE, {N1: 5, NodeId("stranger"): 5}, 0, id="non-voter-ignored"),
        pytest.param((N1,), {N1: 3}, 3, id="single-node"),
    ],
)
def test_committed_index(
    voters: Collection[NodeId], match_index: Mapping[NodeId, int], expected: int
) -> None:
    acked = {voter: Index(index) for voter, index in match_index.items()}
    assert committed_index(voters, acked) == expected


@pytest.mark.parametrize(
    ("voters", "active", "expected"),
    [
        pytest.param(THREE, set(), False, id="nobody"),
        pytest.param(THREE, {N1}, False, id="leader-alone"),
        pytest.param(THREE, {N1, N2}, True, id="two-of-three"),
        pytest.param(THREE, {N1, N2, N3}, True, id="everyone"),
        pytest.param(FOUR, {N1, N2}, False, id="half-is-not-enough"),
        pytest.param(FIVE, {N1, N4, N5}, True, id="three-of-five"),
        pytest.param(THREE, {N1, NodeId("a"), NodeId("b")}, False, id="strangers-do-not-count"),
        pytest.param((N1,), {N1}, True, id="single-node"),
    ],
)
def test_has_quorum(voters: Collection[NodeId], active: Collection[NodeId], expected: bool) -> None:
    assert has_quorum(voters, active) is expected
