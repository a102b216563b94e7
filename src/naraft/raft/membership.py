"""Cluster membership as log entries: one server at a time (Raft thesis §4.1).

A membership entry holds the whole configuration it creates (voters and learners) and the
one change that made it from the previous one: add a learner, promote a learner to voter,
or remove a member. A node uses the newest configuration in its log as soon as it has
appended it, committed or not; a truncated entry takes its configuration with it. The
leader takes the next change only once the previous one has committed, and only once an
entry of its own term has committed (so that a change made by an earlier leader and not yet
known to be committed cannot overlap a new one).

Learners receive the log but never vote and never campaign; promoting one makes it count
for elections and commits from the moment the promotion is appended. Adding a voter
directly is not offered: a node first catches up as a learner, so that adding it never
leaves a majority waiting on an empty log.

The entry is a command with a reserved prefix, opaque to the state machine's other
appliers (it starts with a zero byte; every other command is a JSON object), so storage,
transport and digest sync carry it unchanged.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from naraft.raft.errors import RaftError
from naraft.raft.types import NodeId

MEMBERSHIP_MARKER: Final = b"\x00naraft.membership\x00"
MAX_MEMBERS: Final = 64
MAX_ID_CHARS: Final = 256


class MembershipError(RaftError):
    """A membership change that cannot be made now (another is in flight, no entry of
    this term has committed yet) or at all (no such member, the last voter)."""


class ChangeKind(enum.StrEnum):
    ADD_LEARNER = "add-learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class MembershipChange:
    kind: ChangeKind
    node: NodeId


@dataclass(frozen=True, slots=True)
class Membership:
    """Who votes and who only listens. Voters and learners never overlap."""

    voters: frozenset[NodeId]
    learners: frozenset[NodeId] = frozenset()

    @staticmethod
    def of(voters: Iterable[str], learners: Iterable[str] = ()) -> Membership:
        return Membership(
            frozenset(NodeId(v) for v in voters), frozenset(NodeId(n) for n in learners)
        )

    @property
    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners

    def changed(self, change: MembershipChange) -> Membership:
        """The configuration `change` makes of this one; MembershipError if it cannot."""
        node = change.node
        if not node or len(node) > MAX_ID_CHARS:
            raise MembershipError(f"a member id must be 1..{MAX_ID_CHARS} characters")
        match change.kind:
            case ChangeKind.ADD_LEARNER:
                if node in self.members:
                    raise MembershipError(f"{node} is a member already")
                if len(self.members) >= MAX_MEMBERS:
                    raise MembershipError(f"a cluster holds at most {MAX_MEMBERS} members")
                return Membership(self.voters, self.learners | {node})
            case ChangeKind.PROMOTE:
                if node in self.voters:
                    raise MembershipError(f"{node} is a voter already")
                if node not in self.learners:
                    raise MembershipError(f"{node} is not a learner: add it first")
                return Membership(self.voters | {node}, self.learners - {node})
            case ChangeKind.REMOVE:
                if node not in self.members:
                    raise MembershipError(f"{node} is not a member")
                if self.voters == {node}:
                    raise MembershipError(f"{node} is the last voter")
                return Membership(self.voters - {node}, self.learners - {node})

    def describe(self) -> str:
        learners = f" learners={','.join(sorted(self.learners))}" if self.learners else ""
        return f"voters={','.join(sorted(self.voters))}{learners}"


def encode_membership(membership: Membership, change: MembershipChange) -> bytes:
    """The entry command that makes `membership` (by `change`)."""
    body = {
        "voters": sorted(membership.voters),
        "learners": sorted(membership.learners),
        "change": {"kind": change.kind.value, "node": change.node},
    }
    return MEMBERSHIP_MARKER + json.dumps(body, separators=(",", ":")).encode()


def is_membership_command(command: bytes) -> bool:
    return command.startswith(MEMBERSHIP_MARKER)


def decode_membership(command: bytes) -> Membership | None:
    """The configuration an entry makes, or None: not a membership entry, or one that does
    not decode to a valid configuration (ignored; no build writes one)."""
    if not command.startswith(MEMBERSHIP_MARKER):
        return None
    try:
        body: Any = json.loads(command[len(MEMBERSHIP_MARKER) :])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    voters, learners = body.get("voters"), body.get("learners", [])
    if not isinstance(voters, list) or not isinstance(learners, list):
        return None
    if not _ids(voters) or not _ids(learners, allow_empty=True):
        return None
    membership = Membership.of(voters, learners)
    if membership.voters & membership.learners or len(membership.members) > MAX_MEMBERS:
        return None
    return membership


def decode_change(command: bytes) -> MembershipChange | None:
    """The change a membership entry records (for logs and the state machine), or None."""
    if decode_membership(command) is None:
        return None
    change = json.loads(command[len(MEMBERSHIP_MARKER) :]).get("change")
    if not isinstance(change, dict):
        return None
    kind, node = change.get("kind"), change.get("node")
    if kind not in {k.value for k in ChangeKind} or not isinstance(node, str) or not node:
        return None
    return MembershipChange(ChangeKind(kind), NodeId(node[:MAX_ID_CHARS]))


def _ids(value: object, *, allow_empty: bool = False) -> bool:
    if not isinstance(value, list) or (not value and not allow_empty):
        return False
    return all(isinstance(v, str) and 0 < len(v) <= MAX_ID_CHARS for v in value) and len(
        set(value)
    ) == len(value)
