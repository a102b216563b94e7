"""What the leader knows of one follower's log, and how fast it may send to it.

PROBE: one append in flight at a time, until the follower's match is found.
REPLICATE: appends are pipelined, bounded by count and bytes in flight.
SNAPSHOT: the follower is catching up by digest sync; nothing is sent until it reports.
"""

from __future__ import annotations

import enum
from collections import deque

from naraft.raft.types import Index


class ProgressState(enum.StrEnum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    """Replication progress of one follower, as the leader sees it (Raft's nextIndex/matchIndex)."""

    def __init__(self, next_index: Index) -> None:
        self.match_index = Index(0)
        self.next_index = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False  # PROBE: an append is in flight; wait for its answer
        self.pending_snapshot = Index(0)  # SNAPSHOT: the index the follower is fetching
        self.recent_active = False  # heard from since the last CheckQuorum round
        self.sent_commit = Index(0)  # highest commit index sent to it
        # The last index any append or snapshot sent to it in this term reached: the most a
        # success reply can truthfully claim.
        self.highest_sent = Index(0)
        self.match_at_last_beat = Index(0)  # match index when the previous beat was answered
        self._inflight: deque[tuple[Index, int]] = deque()  # (last index, bytes) per append
        self._inflight_bytes = 0

    @property
    def inflight_count(self) -> int:
        return len(self._inflight)

    @property
    def inflight_bytes(self) -> int:
        return self._inflight_bytes

    def add_inflight(self, last_index: Index, size: int) -> None:
        self._inflight.append((last_index, size))
        self._inflight_bytes += size

    def free_inflight_through(self, index: Index) -> None:
        while self._inflight and self._inflight[0][0] <= index:
            self._inflight_bytes -= self._inflight.popleft()[1]

    def become_probe(self, next_index: Index) -> None:
        self.state = ProgressState.PROBE
        self.next_index = max(next_index, Index(self.match_index + 1))
        self.probe_sent = False
        self._reset_inflight()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_index = Index(self.match_index + 1)
        self.probe_sent = False
        self._reset_inflight()

    def become_snapshot(self, index: Index) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = index
        self.highest_sent = max(self.highest_sent, index)
        self.probe_sent = False
        self._reset_inflight()

    def _reset_inflight(self) -> None:
        self._inflight.clear()
        self._inflight_bytes = 0
