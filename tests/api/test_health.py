"""The readiness rule (`naraft.api.health.readiness_reason`) case by case, and the health
routes of an application with no node wired (handler tests): always ready."""

from __future__ import annotations

from typing import Any

from naraft.api.health import (
    ACTUATOR_HEALTH_PATH,
    CONFIG_HEALTH_PATH,
    LIVENESS_PATH,
    READINESS_PATH,
    readiness_reason,
)
from naraft.raft import NO_SNAPSHOT, NodeId, PeerStatus, ProgressState, Role, Status

A, B, C = NodeId("a:1"), NodeId("b:1"), NodeId("c:1")
ELECTION = 1.0


def status(role: Role, *, leader: NodeId | None, commit: int = 10, applied: int = 10) -> Status:
    peer = PeerStatus(
        match_index=commit, next_index=commit + 1, state=ProgressState.REPLICATE,
        recent_active=True,
    )  # fmt: skip
    return Status(
        id=A, role=role, term=3, voted_for=None, leader=leader, commit_index=commit,
        applied_index=applied, last_index=commit, last_term=3, persisted_index=commit,
        snapshot=NO_SNAPSHOT, peers={B: peer, C: peer} if role is Role.LEADER else {},
    )  # fmt: skip


def silence(**seconds: float) -> object:
    by_peer = {NodeId(f"{name}:1"): value for name, value in seconds.items()}
    return lambda peer: by_peer.get(peer, float("inf"))


def reason(s: Status, **seconds: float) -> str | None:
    return readiness_reason(s, silent_for=silence(**seconds), election_seconds=ELECTION)  # type: ignore[arg-type]


def test_a_leader_hearing_a_majority_is_ready() -> None:
    assert reason(status(Role.LEADER, leader=A), b=0.1, c=5.0) is None


def test_a_leader_hearing_no_one_within_the_election_timeout_is_not() -> None:
    text = reason(status(Role.LEADER, leader=A), b=1.0, c=5.0)
    assert text == "leader without a quorum: heard from 1 of 3 members in 1 s"


def test_a_follower_needs_a_leader_heard_within_the_election_timeout() -> None:
    assert reason(status(Role.FOLLOWER, leader=B), b=0.2) is None
    assert reason(status(Role.FOLLOWER, leader=B), b=1.5) == "no word from the leader b:1 in 1 s"
    assert reason(status(Role.PRE_CANDIDATE, leader=None)) == (
        "no leader known (pre-candidate, term 3)"
    )


def test_a_follower_far_behind_the_commit_index_is_not_ready() -> None:
    assert reason(status(Role.FOLLOWER, leader=B, commit=5000, applied=4000), b=0.1) is None
    text = reason(status(Role.FOLLOWER, leader=B, commit=5000, applied=3999), b=0.1)
    assert text == "applied index 3999 is 1001 entries behind the commit index 5000"


async def test_without_a_node_the_probes_answer_ok(env: Any) -> None:
    for path in (LIVENESS_PATH, READINESS_PATH):
        assert await env.text("GET", path) == (200, "OK")
    assert await env.json("GET", ACTUATOR_HEALTH_PATH) == {"status": "UP"}
    assert await env.text("GET", CONFIG_HEALTH_PATH) == (200, "UP")
