"""The messages peers exchange. One-way: a reply is a message travelling the other way.

The names follow the Raft paper (Figure 2). `Heartbeat` is the seed's beat: the leader's
periodic message carrying its commit index (limited to what the follower holds) and the
read-index round it is confirming.

A `quiet` append or beat is a commit notice: it only tells a follower that the commit index
moved, and the leader needs no answer when it holds. The follower still answers a quiet
message it refuses (a stale term, a log that does not match), exactly as a loud one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from naraft.raft.types import Entry, Index, NodeId, Term


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote:
    """Ask for a vote. With `pre_vote`, `term` is the term the sender would campaign in and
    no receiver changes its own term or vote (Raft thesis §9.6). With `transfer`, the
    sender campaigns because the leader handed over to it (`TimeoutNow`): voters answer
    even inside the leader's lease, since the leader itself asked for this election."""

    term: Term
    last_log_index: Index
    last_log_term: Term
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class VoteReply:
    term: Term
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries:
    """`quiet`: a commit notice (no entries); a follower that takes it does not answer."""

    term: Term
    prev_log_index: Index
    prev_log_term: Term
    entries: tuple[Entry, ...]
    leader_commit: Index
    quiet: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendReply:
    """`match_index` is the highest index known to match the leader on success.

    On a refusal, `hint_index`/`hint_term` let the leader skip a whole conflicting term at
    once (fast back-off): `hint_term` is the follower's term at `hint_index`, or 0 when
    the follower's log simply ends before the leader's `prev_log_index`.
    """

    term: Term
    success: bool
    match_index: Index
    hint_index: Index = Index(0)
    hint_term: Term = Term(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """The leader's beat. `leader_commit` never exceeds what the receiver is known to hold.
    `quiet`: a commit notice; the follower takes it without answering."""

    term: Term
    leader_commit: Index
    read_round: int = 0
    quiet: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatReply:
    term: Term
    read_round: int = 0
    last_log_index: Index = Index(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot:
    """Tells a follower whose next entry the leader has compacted away to catch up by
    digest sync up to (`index`, `term`); the bulk transfer is the shells' business."""

    term: Term
    index: Index
    snapshot_term: Term


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow:
    """The leader hands over (Raft thesis §3.10): the receiver, whose log matches the
    leader's last entry, starts an election at once, without PreVote."""

    term: Term


Message = (
    RequestVote
    | VoteReply
    | AppendEntries
    | AppendReply
    | Heartbeat
    | HeartbeatReply
    | InstallSnapshot
    | TimeoutNow
)


class Envelope(NamedTuple):
    """A message in flight from one node to another.

    A NamedTuple rather than a frozen dataclass: just as immutable, and several times
    cheaper to build on Python 3.11, where the core builds one for every message it sends.
    """

    sender: NodeId
    recipient: NodeId
    message: Message
