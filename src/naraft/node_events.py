"""`NodeEvents`: the replica's and the peer client's callbacks, fanned out to subscribers.

The replica and the peer client take their callbacks when they are built, but the parts
that react to them (the digest service, the leader watch, the beat keeper) need the replica
themselves and so are built after it. Those parts subscribe here once built; nothing
reaches the replica or the peer client before `run` starts them, so no event is missed.
Callbacks run on the event loop and must not block or raise.
"""

from __future__ import annotations

from collections.abc import Callable

from naraft.raft import Index, NodeId, RoleChange, SnapshotMeta
from naraft.raft.membership import Membership
from naraft.state.datums import DatumChanges


class NodeEvents:
    """A `ReplicaObserver` plus the replica's and peer client's hooks, as lists."""

    def __init__(self) -> None:
        self.role_changes: list[Callable[[RoleChange], None]] = []
        self.persisted: list[Callable[[float, int], None]] = []
        self.committed: list[Callable[[float], None]] = []
        self.applied: list[Callable[[DatumChanges, Index], None]] = []
        self.snapshot_needed: list[Callable[[SnapshotMeta, NodeId | None], None]] = []
        self.peer_unreachable: list[Callable[[NodeId, bool], None]] = []
        self.membership: list[Callable[[Membership], None]] = []

    def on_role_change(self, change: RoleChange) -> None:
        for subscriber in self.role_changes:
            subscriber(change)

    def on_persisted(self, seconds: float, entries: int) -> None:
        for subscriber in self.persisted:
            subscriber(seconds, entries)

    def on_committed(self, seconds: float) -> None:
        for subscriber in self.committed:
            subscriber(seconds)

    def on_applied(self, changes: DatumChanges, index: Index) -> None:
        for subscriber in self.applied:
            subscriber(changes, index)

    def on_snapshot_needed(self, wanted: SnapshotMeta, leader: NodeId | None) -> None:
        for subscriber in self.snapshot_needed:
            subscriber(wanted, leader)

    def on_membership(self, membership: Membership) -> None:
        for subscriber in self.membership:
            subscriber(membership)

    def on_peer_unreachable(self, peer: NodeId, refused: bool) -> None:
        for subscriber in self.peer_unreachable:
            subscriber(peer, refused)
