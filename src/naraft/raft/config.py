"""RaftConfig: the core's knobs, all counted in ticks, entries or bytes."""

from __future__ import annotations

from dataclasses import dataclass

from naraft.raft.types import NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    """`election_ticks` is the minimum election timeout; each timer is drawn in
    [election_ticks, 2 * election_ticks). The leader beats every `heartbeat_ticks`."""

    id: NodeId
    voters: tuple[NodeId, ...]
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_append: int = 256
    max_append_bytes: int = 1 << 20
    max_inflight_appends: int = 64
    max_inflight_bytes: int = 8 << 20
    # a node started to join a running cluster: it learns its configuration from the
    # leader (as a learner first) instead of being one of `voters`, which may be empty
    joining: bool = False

    def __post_init__(self) -> None:
        if self.id not in self.voters and not self.joining:
            raise ValueError(f"id {self.id!r} is not one of the voters {self.voters!r}")
        if len(set(self.voters)) != len(self.voters):
            raise ValueError(f"voters repeat an id: {self.voters!r}")
        if self.heartbeat_ticks < 1:
            raise ValueError("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ValueError("election_ticks must be greater than heartbeat_ticks")
        if self.max_entries_per_append < 1 or self.max_inflight_appends < 1:
            raise ValueError("max_entries_per_append and max_inflight_appends must be >= 1")
        if self.max_append_bytes < 1 or self.max_inflight_bytes < 1:
            raise ValueError("max_append_bytes and max_inflight_bytes must be >= 1")
