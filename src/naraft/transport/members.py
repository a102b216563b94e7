"""`MemberView`: the one mutable set of cluster members a node's peer parts read.

The peer client, every `PeerVerifier` (Raft messages, beats, digests, forwarded gRPC
writes, forwarded identities) and the operator's server list all ask this view who the
members are, so a membership change reaches all of them at once. The node updates it from
the Raft core's configuration (voters and learners: a learner receives the log and answers,
so it must be able to sign). Ids are `host:port`; this node is one of them when it is a
member. Subscribers hear every change (on the event loop; they must not block or raise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Final

MAX_VIEW_MEMBERS: Final = 64  # as the core's MAX_MEMBERS


class MemberView:
    """A set of member ids that changes as the cluster's configuration does."""

    def __init__(self, members: Iterable[str]) -> None:
        self._members = frozenset(members)
        self._subscribers: list[Callable[[frozenset[str], frozenset[str]], None]] = []

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._members))

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> frozenset[str]:
        return self._members

    def subscribe(self, subscriber: Callable[[frozenset[str], frozenset[str]], None]) -> None:
        """`subscriber(added, removed)` after each change."""
        self._subscribers.append(subscriber)

    def update(self, members: Iterable[str]) -> bool:
        """Make `members` the view; returns whether anything changed."""
        new = frozenset(members)
        if len(new) > MAX_VIEW_MEMBERS:
            raise ValueError(f"at most {MAX_VIEW_MEMBERS} members, not {len(new)}")
        added, removed = new - self._members, self._members - new
        if not added and not removed:
            return False
        self._members = new
        for subscriber in self._subscribers:
            subscriber(added, removed)
        return True
