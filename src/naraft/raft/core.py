"""The Raft state machine for one node, with no IO of its own.

Inputs arrive through `tick`, `step`, `propose`, `read_index`, `campaign`,
`forget_leader`, `transfer_leadership` and `restore_snapshot`. Outputs accumulate until the
shell collects them with `ready` and acknowledges them with `advance`
(docs/conventions.md#the-ready-contract).

Rule 1: no clock, no socket, no disk; randomness only from the `random.Random` handed in.
Rule 2: a peer can never make the core raise; stale or malformed messages are dropped.

The seed's mechanisms live here, made safe: the tick-driven randomized election timer
(`leaderDueMs`), the leader's beat (`Heartbeat`, carrying the commit index), and the
majority vote, now with persisted votes, the log up-to-date check, PreVote and
CheckQuorum, and commit by counting replicas of current-term entries only.

This module is over 600 lines because it is the whole protocol of the paper's Figure 2
plus its extensions; splitting the handlers across files would scatter one state machine.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Final

from naraft.raft import quorum
from naraft.raft.config import RaftConfig
from naraft.raft.errors import (
    InvariantError,
    LeadershipTransferringError,
    NotLeaderError,
    TransferError,
)
from naraft.raft.log import LogView, RaftLog
from naraft.raft.membership import (
    Membership,
    MembershipChange,
    MembershipError,
    decode_membership,
    encode_membership,
)
from naraft.raft.messages import (
    AppendEntries,
    AppendReply,
    Envelope,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
    VoteReply,
)
from naraft.raft.progress import Progress, ProgressState
from naraft.raft.ready import ReadState, Ready, RoleChange
from naraft.raft.types import (
    NO_SNAPSHOT,
    Entry,
    HardState,
    Index,
    NodeId,
    Role,
    SnapshotMeta,
    Term,
)

# Python 3.11 reads `Role.LEADER` through EnumType.__getattr__, several times the cost of a
# global: the hot paths compare with these module names, the same member objects.
_LEADER: Final = Role.LEADER
_FOLLOWER: Final = Role.FOLLOWER
_PRE_CANDIDATE: Final = Role.PRE_CANDIDATE
_CANDIDATE: Final = Role.CANDIDATE
_PROBE: Final = ProgressState.PROBE
_REPLICATE: Final = ProgressState.REPLICATE
_SNAPSHOT: Final = ProgressState.SNAPSHOT

_ENTRY_OVERHEAD_BYTES = 16
_TRANSFER_TIMEOUTS = 2  # election timeouts a hand-over may take before it is abandoned


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    match_index: Index
    next_index: Index
    state: ProgressState
    recent_active: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A read-only view of the core, for the shell's state endpoint and tests."""

    id: NodeId
    role: Role
    term: Term
    voted_for: NodeId | None
    leader: NodeId | None
    commit_index: Index
    applied_index: Index
    last_index: Index
    last_term: Term
    persisted_index: Index
    snapshot: SnapshotMeta
    peers: dict[NodeId, PeerStatus]
    transferee: NodeId | None = None  # a leader handing over: to whom
    membership: Membership | None = None  # the newest configuration in the log


@dataclass(slots=True)
class _PendingRead:
    request_id: int
    index: Index
    round: int


class RaftCore:
    """One node's Raft protocol state; see the module docstring for the contract."""

    def __init__(
        self,
        config: RaftConfig,
        *,
        rng: random.Random,
        hard_state: HardState | None = None,
        log: tuple[Entry, ...] = (),
        snapshot: SnapshotMeta = NO_SNAPSHOT,
        applied: Index | None = None,
        membership: Membership | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        """`membership`: the configuration as of `snapshot` (the state machine keeps it);
        None: `config.voters` (a new cluster). Membership entries in `log` supersede it."""
        self._config = config
        self._id = config.id
        self._rng = rng
        self._logger = logger or logging.getLogger(__name__)
        state = hard_state or HardState()
        self._term: Term = state.term
        self._voted_for: NodeId | None = state.voted_for
        self._log = RaftLog(log, snapshot)
        self._base_membership = (
            membership if membership is not None else Membership(frozenset(config.voters))
        )
        self._changes: list[tuple[Index, Membership]] = [
            (entry.index, found)
            for entry in self._log.entries()
            if (found := decode_membership(entry.command)) is not None
        ]
        self._membership = self._base_membership
        self._peers: tuple[NodeId, ...] = ()
        self._solo = False
        # The commit index may only grow; a restarted node starts from what it persisted.
        self._commit: Index = Index(min(max(state.commit, snapshot.index), self._log.last_index))
        self._applied: Index = Index(max(applied if applied is not None else 0, snapshot.index))
        if self._applied > self._commit:
            raise InvariantError(f"applied {self._applied} is past commit {self._commit}")
        self._role = _FOLLOWER
        self._leader: NodeId | None = None
        self._persisted_hard_state = HardState(
            term=self._term, voted_for=self._voted_for, commit=self._commit
        )
        self._persisted_index: Index = self._log.last_index  # durable through here
        self._unstable_from: Index = Index(self._log.last_index + 1)  # not yet handed out
        self._messages: list[Envelope] = []
        self._role_change: RoleChange | None = None
        self._ready_in_flight = False
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._election_timeout = self._draw_election_timeout()
        self._hurry_term: Term | None = None  # forget_leader armed hurry_election here
        self._contending = False  # in a PreVote round started by hurry_election
        self._foreign_warned: tuple[NodeId, Term] | None = None  # last foreign-append warning
        # PreVotes ignored only because of the current leader's lease, answered if it dies
        self._ignored_pre_votes: dict[NodeId, RequestVote] = {}
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._broadcast_pending = False
        self._read_round = 0  # highest read round started by this leader
        self._read_round_pending = False  # reads are waiting for a new round to start
        self._read_acks: dict[NodeId, int] = {}
        self._pending_reads: list[_PendingRead] = []
        self._reads_awaiting_commit: list[int] = []  # before the no-op of this term commits
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[int] = []
        self._snapshot_to_fetch: SnapshotMeta | None = None
        self._fetching: SnapshotMeta | None = None
        self._transferee: NodeId | None = None  # the leader is handing over to this peer
        self._transfer_elapsed = 0  # ticks since the hand-over started
        self._refresh_membership()
        if self._solo:
            # A one-node cluster elects itself at once (the seed's standalone mode).
            self._election_timeout = 1

    # ------------------------------------------------------------------ views

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> Term:
        return self._term

    @property
    def leader(self) -> NodeId | None:
        return self._leader

    @property
    def is_leader(self) -> bool:
        return self._role is _LEADER

    @property
    def config(self) -> RaftConfig:
        return self._config

    @property
    def membership(self) -> Membership:
        """The newest configuration in the log (in use from its append, Raft §4.1)."""
        return self._membership

    @property
    def membership_pending(self) -> bool:
        """A membership entry is appended and not yet committed."""
        return self._change_in_flight()

    @property
    def transferee(self) -> NodeId | None:
        """The peer this leader is handing over to, while it does."""
        return self._transferee

    @property
    def commit_index(self) -> Index:
        return self._commit

    @property
    def applied_index(self) -> Index:
        return self._applied

    @property
    def log(self) -> tuple[Entry, ...]:
        """The entries after the snapshot boundary (a copy)."""
        return self._log.entries()

    @property
    def log_view(self) -> LogView:
        """A read-only view of the log (bounds, terms, slices) for code outside the core."""
        return LogView(self._log)

    @property
    def snapshot(self) -> SnapshotMeta:
        return self._log.snapshot

    def term_at(self, index: Index) -> Term | None:
        """The term of the entry at `index`, if this node still holds it (or its boundary)."""
        return self._log.term_at(index)

    def status(self) -> Status:
        peers = {
            peer: PeerStatus(
                match_index=pr.match_index,
                next_index=pr.next_index,
                state=pr.state,
                recent_active=pr.recent_active,
            )
            for peer, pr in self._progress.items()
        }
        return Status(
            id=self._id,
            role=self._role,
            term=self._term,
            voted_for=self._voted_for,
            leader=self._leader,
            commit_index=self._commit,
            applied_index=self._applied,
            last_index=self._log.last_index,
            last_term=self._log.last_term,
            persisted_index=self._persisted_index,
            snapshot=self._log.snapshot,
            peers=peers,
            transferee=self._transferee,
            membership=self._membership,
        )

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One unit of logical time (the seed's 500 ms task, shortened by config)."""
        self._contending = False  # only near-simultaneous rivals need the tie-break
        if self._role is _LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._election_timeout and self._is_voter:
                self._start_election()

    def campaign(self) -> None:
        """Start an election now, skipping PreVote (tests, leadership hand-over)."""
        if self._role is not _LEADER and self._is_voter:
            self._become_candidate()

    def forget_leader(self) -> float | None:
        """The shell saw the leader's port refuse connections: stop trusting its lease and
        campaign soon instead of waiting out the election timer.

        Every follower sees the refusal at about the same instant, so campaigning at once
        splits the vote, round after round. Returns a random delay in ticks (with sub-tick
        resolution, from the injected RNG) after which the shell calls `hurry_election`;
        without that call the timer starts the PreVote within one tick after the delay.
        None if there was no leader to forget.
        """
        if self._role is not _FOLLOWER or self._leader is None:
            return None
        self._logger.info("%s forgets leader %s at term %d", self._id, self._leader, self._term)
        self._leader = None
        self._role_change = RoleChange(role=self._role, term=self._term, leader=None)
        self._grant_pre_votes_ignored_in_lease()
        delay = self._draw_refusal_delay()
        self._hurry_term = self._term
        remaining = max(1, math.ceil(delay) + 1)
        if self._election_timeout - self._election_elapsed > remaining:
            self._election_elapsed = self._election_timeout - remaining
        return delay

    def _grant_pre_votes_ignored_in_lease(self) -> None:
        """A peer that saw the leader die first asked for PreVotes while this node still
        trusted the leader, and got no answer (a lease ignores them). The lease is over
        now: grant what would be granted, so that peer wins at once instead of both
        campaigning against each other after its round times out."""
        ignored, self._ignored_pre_votes = self._ignored_pre_votes, {}
        for sender, request in ignored.items():
            if request.term > self._term and self._is_up_to_date(
                request.last_log_index, request.last_log_term
            ):
                self._send(sender, VoteReply(term=request.term, granted=True, pre_vote=True))

    def _yield_to(self, rival: NodeId) -> None:
        """This follower saw the leader die and waits out its drawn delay, and has just
        granted `rival` a PreVote: the rival is a round trip from winning. Campaigning now
        as well could split the vote (each would then keep its own), so the follower drops
        its hurry and gives the rival a whole election timeout, as granting a real vote
        does. If the rival fails, the election timer campaigns as it would without the
        refusal."""
        self._logger.debug("%s yields to %s's PreVote at term %d", self._id, rival, self._term)
        self._hurry_term = None
        self._election_elapsed = 0

    def hurry_election(self) -> None:
        """The delay returned by `forget_leader` has passed: start the PreVote now, unless
        this node has since heard of a leader, moved to another term or campaigned."""
        if (
            self._hurry_term == self._term
            and self._role is _FOLLOWER
            and self._leader is None
            and self._is_voter
        ):
            self._start_election()
            self._contending = self._config.pre_vote and not self._solo
        self._hurry_term = None

    def transfer_leadership(self, target: NodeId) -> None:
        """Hand leadership to `target` (Raft thesis §3.10): bring its log up to ours, then
        tell it to campaign at once (`TimeoutNow`). No proposal is taken meanwhile, so the
        log stops growing; the hand-over is abandoned after two election timeouts (the
        target may be down, or slow to catch up), and proposals are taken again. A target
        that is this node is a no-op."""
        if self._role is not _LEADER:
            raise NotLeaderError(self._leader)
        if target == self._id:
            return
        if target not in self._progress or target not in self._membership.voters:
            raise TransferError(f"{target} is not a voting member of this cluster")
        if self._transferee == target:
            return
        self._logger.info("%s hands leadership over to %s at term %d", self._id, target, self._term)
        self._transferee = target
        self._transfer_elapsed = 0
        self._hand_over_when_caught_up(target, self._progress[target])

    def _hand_over_when_caught_up(self, target: NodeId, pr: Progress) -> None:
        if pr.match_index == self._log.last_index:
            self._send(target, TimeoutNow(term=self._term))
        else:
            self._send_appends(target, pr)

    def propose(self, command: bytes) -> Index:
        """Append `command` to the log. Returns its index; it is committed later, or never."""
        if self._role is not _LEADER:
            raise NotLeaderError(self._leader)
        if self._transferee is not None:
            raise LeadershipTransferringError(self._transferee)
        if decode_membership(command) is not None:
            raise MembershipError("membership entries are proposed with propose_membership")
        index = self._append(command)
        self._broadcast_pending = True
        if self._solo:
            self._maybe_commit()
        return index

    def propose_membership(self, change: MembershipChange) -> Index:
        """Append the configuration `change` makes of the newest one (one server at a
        time, thesis §4.1); it is in use at once, here and on every node that appends it.
        MembershipError if another change has not committed yet, if this leader has not
        committed an entry of its term yet, or if the change cannot be made."""
        if self._role is not _LEADER:
            raise NotLeaderError(self._leader)
        if self._transferee is not None:
            raise LeadershipTransferringError(self._transferee)
        if self._log.term_at(self._commit) != self._term:
            raise MembershipError("this leader has not committed an entry of its term yet")
        if self._change_in_flight():
            raise MembershipError(
                f"the membership change at index {self._changes[-1][0]} has not committed yet"
            )
        membership = self._membership.changed(change)
        index = self._append(encode_membership(membership, change))
        self._logger.info(
            "%s proposes %s %s at %d: %s",
            self._id,
            change.kind.value,
            change.node,
            index,
            membership.describe(),
        )
        self._broadcast_pending = True
        if self._solo:
            self._maybe_commit()
        return index

    def read_index(self, request_id: int) -> None:
        """Ask for a linearizable read point; it arrives as a `ReadState` in a later Ready
        (or the id in `dropped_reads` if leadership is lost first)."""
        if self._role is not _LEADER:
            raise NotLeaderError(self._leader)
        if self._log.term_at(self._commit) != self._term:
            # A new leader does not know the commit index until its no-op commits (§6.4).
            self._reads_awaiting_commit.append(request_id)
            return
        self._queue_read(request_id)

    def step(self, envelope: Envelope) -> None:
        """Handle one message from a peer. Stale, unknown or malformed messages are dropped."""
        sender, message = envelope.sender, envelope.message
        if sender == self._id or envelope.recipient != self._id:
            self._logger.debug("%s dropped %s from %s to %s", self._id, message, sender,
                               envelope.recipient)  # fmt: skip
            return
        # A sender outside this node's configuration is heard too: a node whose log has
        # not yet reached the entry that added a member must still follow it as leader and
        # answer its votes (Raft §4.1). Only the leader's progress is keyed by member.
        if message.term > self._term:
            if not self._accept_higher_term(sender, message):
                return
        elif message.term < self._term:
            self._answer_stale(sender, message)
            return

        match message:  # the most frequent kinds first
            case Heartbeat():
                self._on_heartbeat(sender, message)
            case HeartbeatReply():
                self._on_heartbeat_reply(sender, message)
            case AppendEntries():
                self._on_append_entries(sender, message)
            case AppendReply():
                self._on_append_reply(sender, message)
            case RequestVote():
                self._on_request_vote(sender, message)
            case VoteReply():
                self._on_vote_reply(sender, message)
            case InstallSnapshot():
                self._on_install_snapshot(sender, message)
            case TimeoutNow():
                self._on_timeout_now(sender)

    def restore_snapshot(
        self, snapshot: SnapshotMeta, membership: Membership | None = None
    ) -> None:
        """The shell installed the leader's state at `snapshot` (digest sync) and durably
        reset its stored log to start after it; the state machine holds that state, and
        `membership` is the configuration it records (None: keep the one in use).

        The shell installs only a snapshot past `commit_index`; an older one is ignored.
        """
        if snapshot.index <= self._commit:
            self._fetching = None
            return
        # The log restarts after the snapshot: entries past it are re-sent by the leader.
        self._base_membership = membership if membership is not None else self._membership
        self._changes.clear()
        self._log.reset(snapshot)
        self._refresh_membership()
        self._unstable_from = Index(snapshot.index + 1)
        self._persisted_index = snapshot.index
        self._commit = snapshot.index
        self._applied = snapshot.index
        self._fetching = None
        self._logger.info("%s restored snapshot at %d/%d", self._id, snapshot.index, snapshot.term)
        if self._leader is not None:
            self._send(
                self._leader, AppendReply(term=self._term, success=True, match_index=snapshot.index)
            )

    def snapshot_failed(self) -> None:
        """The shell could not finish a digest sync; the leader will ask again."""
        self._fetching = None

    def compact(self, index: Index) -> None:
        """Drop log entries through `index` (<= applied); the state there is the snapshot."""
        if index > self._applied:
            raise RuntimeError(f"cannot compact through {index}: applied is {self._applied}")
        term = self._log.term_at(index)
        if term is None or index <= self._log.snapshot.index:
            return
        self._log.compact(SnapshotMeta(index=index, term=term))
        while self._changes and self._changes[0][0] <= index:
            self._base_membership = self._changes.pop(0)[1]

    # ------------------------------------------------------------------ Ready / advance

    def has_ready(self) -> bool:
        if self._ready_in_flight:
            return False
        return bool(
            self._messages
            or self._broadcast_pending
            or self._read_round_pending
            or self._role_change is not None
            or self._read_states
            or self._dropped_reads
            or self._snapshot_to_fetch is not None
            or self._applied < self._commit
            or self._unstable_from <= self._log.last_index
            or self._changed_hard_state() is not None
        )

    def _changed_hard_state(self) -> HardState | None:
        """The hard state to persist, or None if it is the one persisted already."""
        persisted = self._persisted_hard_state
        if (
            self._term == persisted.term
            and self._voted_for == persisted.voted_for
            and self._commit == persisted.commit
        ):
            return None  # the common case, without building a HardState
        hard_state = self._hard_state()
        return hard_state if hard_state != persisted else None

    def ready(self) -> Ready:
        """Collect the work for the shell. Exactly one Ready may be in flight."""
        if self._ready_in_flight:
            raise RuntimeError("ready() called again before advance()")
        if self._role is _LEADER:
            self._flush_broadcast()
        hard_state = self._changed_hard_state()
        log = self._log
        last_index = log.last_index
        entries = (
            log.slice(self._unstable_from, Index(last_index + 1))
            if self._unstable_from <= last_index
            else ()
        )
        before = self._persisted_hard_state
        messages = tuple(self._messages)
        self._messages.clear()
        committed = (
            log.slice(Index(self._applied + 1), Index(self._commit + 1))
            if self._applied < self._commit
            else ()
        )
        read_states: tuple[ReadState, ...] = ()
        if self._read_states:
            read_states = tuple(self._read_states)
            self._read_states.clear()
        dropped_reads: tuple[int, ...] = ()
        if self._dropped_reads:
            dropped_reads = tuple(self._dropped_reads)
            self._dropped_reads.clear()
        new_term_or_vote = hard_state is not None and (
            hard_state.term != before.term or hard_state.voted_for != before.voted_for
        )
        must_sync = bool(entries) or new_term_or_vote
        # A leader's replication may leave while its own write runs (thesis §10.2.1): it
        # counts itself only through `_persisted_index`, which `advance` moves.
        messages_first = self._role is _LEADER and not new_term_or_vote and bool(messages)
        # Positional, in field order, each value named as its field: a call with ten
        # keywords costs four times as much on Python 3.11, once per Ready.
        ready = Ready(
            hard_state,
            entries,
            messages,
            committed,
            self._role_change,
            read_states,
            self._snapshot_to_fetch,
            dropped_reads,
            must_sync,
            messages_first,
        )
        self._role_change = None
        self._snapshot_to_fetch = None
        self._ready_in_flight = True
        return ready

    def advance(self, ready: Ready) -> None:
        """Everything in `ready` is durable, sent and applied."""
        if not self._ready_in_flight:
            raise RuntimeError("advance() without a Ready in flight")
        self._ready_in_flight = False
        if ready.hard_state is not None:
            self._persisted_hard_state = ready.hard_state
        if ready.entries:
            last = ready.entries[-1]
            if self._log.term_at(last.index) == last.term:
                self._persisted_index = max(self._persisted_index, last.index)
                self._unstable_from = max(self._unstable_from, Index(last.index + 1))
        if ready.committed:
            self._applied = max(self._applied, ready.committed[-1].index)
        if self._role is _LEADER and ready.entries:
            self._maybe_commit()

    # ------------------------------------------------------------------ planted-bug seams
    # Small methods that the simulator's planted-bug tests replace (docs/conventions.md#tests).

    def _hard_state(self) -> HardState:
        return HardState(term=self._term, voted_for=self._voted_for, commit=self._commit)

    def _is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        """Raft §5.4.1: the candidate's log is at least as up to date as ours."""
        my_term = self._log.last_term
        return last_term > my_term or (last_term == my_term and last_index >= self._log.last_index)

    def _change_in_flight(self) -> bool:
        """A membership change is appended but not committed (only one at a time)."""
        return bool(self._changes) and self._changes[-1][0] > self._commit

    def _can_commit(self, index: Index) -> bool:
        """Only entries of the current term commit by counting replicas (Raft §5.4.2)."""
        return self._log.term_at(index) == self._term

    def _outranks(self, sender: NodeId, message: RequestVote) -> bool:
        """Two followers that saw the dead leader at once may still ask for PreVotes at the
        same moment; if each granted the other, both would become candidates and split the
        vote. In the first PreVote round after `hurry_election`, a pre-candidate refuses a
        rival for the same term with exactly its own log and a smaller id, so only the
        larger id is granted by both. Only until the next tick (a rival that asks later
        did not ask at the same moment), only while this round can still win (no voter
        refused it), and never in a later round: otherwise every rival is granted as before,
        so that a voter still in the dead leader's lease cannot leave both stuck."""
        return (
            self._contending
            and self._role is _PRE_CANDIDATE
            and message.term == self._term + 1
            and message.last_log_index == self._log.last_index
            and message.last_log_term == self._log.last_term
            and sender < self._id
        )

    def _counts_vote(self, reply: VoteReply) -> bool:
        """A vote counts only for the election it answers."""
        if reply.pre_vote:
            return self._role is _PRE_CANDIDATE and reply.term == self._term + 1
        return self._role is _CANDIDATE and reply.term == self._term

    # ------------------------------------------------------------------ terms

    def _accept_higher_term(self, sender: NodeId, message: Message) -> bool:
        """React to a message from a later term; False means drop the message."""
        if isinstance(message, RequestVote):
            if self._in_lease() and not message.transfer:
                self._logger.debug("%s ignores vote from %s: leader lease", self._id, sender)
                if message.pre_vote:
                    self._ignored_pre_votes[sender] = message
                return False
            if message.pre_vote:
                return True  # a PreVote changes nobody's term
            self._become_follower(message.term, None)
            return True
        if isinstance(message, VoteReply) and message.pre_vote and message.granted:
            return True  # granted for the term we would campaign in
        leader = (
            sender if isinstance(message, AppendEntries | Heartbeat | InstallSnapshot) else None
        )
        self._become_follower(message.term, leader)
        return True

    def _answer_stale(self, sender: NodeId, message: Message) -> None:
        """A message from an earlier term: tell stale leaders and pre-candidates our term."""
        match message:
            case AppendEntries() | Heartbeat() | InstallSnapshot():
                self._send(sender, HeartbeatReply(term=self._term))
            case RequestVote() if message.pre_vote:
                self._send(sender, VoteReply(term=self._term, granted=False, pre_vote=True))
            case RequestVote() | VoteReply() | AppendReply() | HeartbeatReply() | TimeoutNow():
                pass  # stale answers and requests need no reply

    def _in_lease(self) -> bool:
        """A node that is or heard a leader within the election timeout refuses to help
        depose it (CheckQuorum's lease, Raft thesis §4.2.3; PreVote's rule, §9.6). A leader
        restarts its count every election timeout, so it is always in its own lease."""
        return (
            (self._config.check_quorum or self._config.pre_vote)
            and self._leader is not None
            and self._election_elapsed < self._config.election_ticks
        )

    # ------------------------------------------------------------------ roles

    def _draw_election_timeout(self) -> int:
        ticks = self._config.election_ticks
        return self._rng.randrange(ticks, 2 * ticks)

    def _draw_refusal_delay(self) -> float:
        """How long a follower that saw its leader die waits before campaigning, in ticks:
        uniform over a quarter of an election timeout (250 ms by default), so that two
        followers that saw the same refusal start their PreVotes a round trip apart far
        more often than not, while a failover stays well under a second."""
        return self._rng.uniform(0.0, self._config.election_ticks / 4)

    def _reset_timers(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._election_timeout = self._draw_election_timeout()

    def _set_role(self, role: Role, leader: NodeId | None, *, force: bool = False) -> None:
        if force or role is not self._role or leader != self._leader:
            self._role_change = RoleChange(role=role, term=self._term, leader=leader)
            self._logger.info(
                "%s is %s at term %d, leader=%s", self._id, role.value, self._term, leader
            )
        self._role = role
        self._leader = leader

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        term_changed = term != self._term
        if term_changed:
            self._term = term
            self._voted_for = None
            self._ignored_pre_votes.clear()
        was_leader = self._role is _LEADER
        self._set_role(_FOLLOWER, leader, force=term_changed)
        self._reset_timers()
        self._votes.clear()
        if was_leader or self._pending_reads or self._reads_awaiting_commit:
            self._drop_reads()
        self._progress.clear()
        self._broadcast_pending = False
        self._transferee = None

    def _start_election(self) -> None:
        self._hurry_term = None
        self._contending = False
        if self._config.pre_vote and not self._solo:
            self._become_pre_candidate()
        else:
            self._become_candidate()

    def _become_pre_candidate(self) -> None:
        self._set_role(_PRE_CANDIDATE, None)
        self._reset_timers()
        self._votes = {self._id: True}
        self._ask_votes(Term(self._term + 1), pre_vote=True)

    def _become_candidate(self, *, transfer: bool = False) -> None:
        self._term = Term(self._term + 1)
        self._voted_for = self._id
        self._set_role(_CANDIDATE, None, force=True)
        self._reset_timers()
        self._votes = {self._id: True}
        self._ask_votes(self._term, pre_vote=False, transfer=transfer)
        self._tally_votes(pre_vote=False)

    def _ask_votes(self, term: Term, *, pre_vote: bool, transfer: bool = False) -> None:
        request = RequestVote(
            term=term,
            last_log_index=self._log.last_index,
            last_log_term=self._log.last_term,
            pre_vote=pre_vote,
            transfer=transfer,
        )
        for peer in self._peers:
            if peer in self._membership.voters:
                self._send(peer, request)

    def _become_leader(self) -> None:
        self._set_role(_LEADER, self._id)
        self._reset_timers()
        self._votes.clear()
        self._transferee = None
        next_index = Index(self._log.last_index + 1)
        self._progress = {peer: Progress(next_index) for peer in self._peers}
        self._read_round = 0
        self._read_acks.clear()
        # A no-op of the new term lets earlier entries commit (Raft §5.4.2, §8).
        self._append(b"")
        self._broadcast_pending = True
        if self._solo:
            self._maybe_commit()

    def _tally_votes(self, *, pre_vote: bool) -> None:
        match quorum.vote_result(self._membership.voters, self._votes):
            case quorum.VoteResult.WON if pre_vote:
                self._become_candidate()
            case quorum.VoteResult.WON:
                self._become_leader()
            case quorum.VoteResult.LOST:
                self._become_follower(self._term, None)
            case quorum.VoteResult.PENDING:
                pass

    # ------------------------------------------------------------------ votes

    def _on_request_vote(self, sender: NodeId, message: RequestVote) -> None:
        if not self._membership.voters:
            # A joining node that has not yet learnt any configuration has an empty log and
            # no memory of votes it may have cast under the same id before it was removed and
            # wiped: it would vouch for any stale candidate. It votes once the leader's log
            # or snapshot has told it the members (it is added as a learner first, so no
            # quorum ever waits for its vote before then).
            self._send(sender, VoteReply(term=self._term, granted=False, pre_vote=message.pre_vote))
            return
        up_to_date = self._is_up_to_date(message.last_log_index, message.last_log_term)
        if message.pre_vote:
            granted = (
                message.term > self._term and up_to_date and not self._outranks(sender, message)
            )
            if granted and self._hurry_term is not None and self._role is _FOLLOWER:
                self._yield_to(sender)
            term = message.term if granted else self._term
            self._send(sender, VoteReply(term=term, granted=granted, pre_vote=True))
            return
        can_vote = self._voted_for is None or self._voted_for == sender
        granted = can_vote and up_to_date and self._role is not _LEADER
        if granted:
            self._voted_for = sender
            self._election_elapsed = 0
        self._logger.debug(
            "%s %s vote for %s at term %d",
            self._id,
            "grants" if granted else "refuses",
            sender,
            self._term,
        )
        # The vote leaves only after the hard state holding it is durable (Ready order).
        self._send(sender, VoteReply(term=self._term, granted=granted))

    def _on_vote_reply(self, sender: NodeId, message: VoteReply) -> None:
        if message.pre_vote and not message.granted and self._role is _PRE_CANDIDATE:
            # Refused (a voter still in the dead leader's lease, or with a longer log): this
            # round may not win, so it must not hold back a rival that can (see _outranks).
            self._contending = False
        if not self._counts_vote(message):
            return
        self._votes[sender] = message.granted
        self._tally_votes(pre_vote=message.pre_vote)

    # ------------------------------------------------------------------ follower side

    def _hear_from_leader(self, sender: NodeId) -> None:
        self._election_elapsed = 0
        self._ignored_pre_votes.clear()  # the lease holds: those PreVotes were disruptive
        if self._role is not _FOLLOWER or self._leader != sender:
            self._set_role(_FOLLOWER, sender)
            self._votes.clear()

    def _on_append_entries(self, sender: NodeId, message: AppendEntries) -> None:
        if self._role is _LEADER:
            raise InvariantError(f"two leaders at term {self._term}: {self._id} and {sender}")
        self._hear_from_leader(sender)
        prev = message.prev_log_index
        if prev < self._commit:
            self._on_append_below_commit(sender, message)
            return
        if not self._log.matches(prev, message.prev_log_term):
            self._reject_append(sender, prev)
            return
        for entry in message.entries:
            existing = self._log.term_at(entry.index)
            if entry.index <= self._log.snapshot.index or existing == entry.term:
                continue
            if existing is not None:
                if entry.index <= self._commit:
                    raise InvariantError(
                        f"{self._id} asked to overwrite committed entry {entry.index}"
                    )
                self._truncate_from(entry.index)
            self._log.append(entry)
            self._note_membership(entry)
        last_new = Index(prev + len(message.entries))
        self._advance_commit_to(min(message.leader_commit, last_new))
        if not message.quiet:
            self._send(sender, AppendReply(term=self._term, success=True, match_index=last_new))

    def _on_append_below_commit(self, sender: NodeId, message: AppendEntries) -> None:
        """An append that starts inside our committed prefix (a late or repeated one).

        The reply claims only what this message proves we share with the leader: through
        `prev + len(entries)`, never past our commit index. A message whose terms contradict
        our committed entries comes from another cluster's log (a node started on a foreign
        data directory, or a replay): it is dropped, so that the leader never counts us for
        entries we do not hold.
        """
        prev = message.prev_log_index
        if not self._agrees_with_committed(prev, message.prev_log_term, message.entries):
            self._warn_foreign(sender, "an append")
            return
        if message.quiet:
            return  # a commit notice we hold: nothing to tell
        proved = Index(min(self._commit, prev + len(message.entries)))
        self._send(sender, AppendReply(term=self._term, success=True, match_index=proved))

    def _warn_foreign(self, sender: NodeId, what: str) -> None:
        """Once per leader and term at WARNING: the leader probes again at every beat."""
        first = self._foreign_warned != (sender, self._term)
        self._foreign_warned = (sender, self._term)
        self._logger.log(
            logging.WARNING if first else logging.DEBUG,
            "%s dropped %s from %s that contradicts its committed log at term %d"
            " (another cluster's data?)",
            self._id,
            what,
            sender,
            self._term,
        )

    def _agrees_with_committed(
        self, prev: Index, prev_term: Term, entries: tuple[Entry, ...]
    ) -> bool:
        """Every position of the message at or below our commit index that we still hold
        carries the term we committed there (compacted positions cannot be checked)."""
        positions = [(prev, prev_term), *((entry.index, entry.term) for entry in entries)]
        for index, term in positions:
            if index > self._commit or index <= self._log.snapshot.index:
                continue
            if self._log.term_at(index) != term:
                return False
        return True

    def _reject_append(self, sender: NodeId, prev: Index) -> None:
        if prev > self._log.last_index:
            hint_index, hint_term = self._log.last_index, Term(0)
        else:
            hint_index = self._log.first_index_of_term_at(prev)
            hint_term = self._log.term_at(prev) or Term(0)
        self._send(
            sender,
            AppendReply(
                term=self._term,
                success=False,
                match_index=prev,
                hint_index=hint_index,
                hint_term=hint_term,
            ),
        )

    def _truncate_from(self, index: Index) -> None:
        self._log.truncate_from(index)
        self._unstable_from = min(self._unstable_from, index)
        self._persisted_index = min(self._persisted_index, Index(index - 1))
        if self._changes and self._changes[-1][0] >= index:
            # a configuration goes with its entry: back to the one before (Raft §4.1)
            self._changes = [(i, m) for i, m in self._changes if i < index]
            self._refresh_membership()

    def _note_membership(self, entry: Entry) -> None:
        """Use the configuration of an appended membership entry at once."""
        membership = decode_membership(entry.command)
        if membership is not None:
            self._changes.append((entry.index, membership))
            self._refresh_membership()

    @property
    def _is_voter(self) -> bool:
        return self._id in self._membership.voters

    def _refresh_membership(self) -> None:
        """Derive the peers (and, on a leader, their progress) from the newest configuration."""
        membership = self._changes[-1][1] if self._changes else self._base_membership
        self._membership = membership
        self._peers = tuple(sorted(membership.members - {self._id}))
        self._solo = membership.voters == {self._id}
        if self._role is _LEADER:
            next_index = Index(self._log.last_index + 1)
            for peer in self._peers:
                if peer not in self._progress:
                    self._progress[peer] = Progress(next_index)
            for gone in set(self._progress) - set(self._peers):
                del self._progress[gone]
                self._read_acks.pop(gone, None)

    def _advance_commit_to(self, index: Index) -> None:
        if index > self._commit:
            self._commit = index

    def _on_heartbeat(self, sender: NodeId, message: Heartbeat) -> None:
        if self._role is _LEADER:
            raise InvariantError(f"two leaders at term {self._term}: {self._id} and {sender}")
        self._hear_from_leader(sender)
        last_index = self._log.last_index
        # The leader sends at most what it knows we hold, so this never passes our log.
        self._advance_commit_to(min(message.leader_commit, last_index))
        if message.quiet:
            return  # a commit notice: the leader's periodic beats are the ones answered
        self._send(
            sender,
            HeartbeatReply(
                term=self._term, read_round=message.read_round, last_log_index=last_index
            ),
        )

    def _on_timeout_now(self, sender: NodeId) -> None:
        """The leader of our term hands over to us: campaign now, skipping PreVote (the
        voters, still in that leader's lease, would refuse it) and telling the voters so."""
        if self._role is _LEADER:
            raise InvariantError(f"two leaders at term {self._term}: {self._id} and {sender}")
        if not self._is_voter:
            return  # a learner, or a node removed meanwhile, never campaigns
        self._logger.info(
            "%s campaigns at once: %s hands over at term %d", self._id, sender, self._term
        )
        self._become_candidate(transfer=True)

    def _on_install_snapshot(self, sender: NodeId, message: InstallSnapshot) -> None:
        if self._role is _LEADER:
            raise InvariantError(f"two leaders at term {self._term}: {self._id} and {sender}")
        self._hear_from_leader(sender)
        if message.index <= self._commit:
            # We hold the committed prefix through the snapshot's index; that is all the
            # message proves (our own commit may belong to a longer, or foreign, log).
            if not self._agrees_with_committed(message.index, message.snapshot_term, ()):
                self._warn_foreign(sender, "a snapshot")
                return
            self._send(
                sender, AppendReply(term=self._term, success=True, match_index=message.index)
            )
            return
        wanted = SnapshotMeta(index=message.index, term=message.snapshot_term)
        if self._fetching != wanted:
            self._fetching = wanted
            self._snapshot_to_fetch = wanted

    # ------------------------------------------------------------------ leader side

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= _TRANSFER_TIMEOUTS * self._config.election_ticks:
                self._logger.info(
                    "%s gives up handing over to %s at term %d",
                    self._id,
                    self._transferee,
                    self._term,
                )
                self._transferee = None
        if self._election_elapsed >= self._config.election_ticks:
            self._election_elapsed = 0
            if self._config.check_quorum and not self._check_quorum():
                self._logger.info("%s steps down: no quorum heard at term %d", self._id, self._term)
                self._become_follower(self._term, None)
                return
        if self._heartbeat_elapsed >= self._config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _check_quorum(self) -> bool:
        active = {self._id} | {p for p, pr in self._progress.items() if pr.recent_active}
        for pr in self._progress.values():
            pr.recent_active = False
        return quorum.has_quorum(self._membership.voters, active)

    def _broadcast_heartbeat(self) -> None:
        term, own_commit, read_round = self._term, self._commit, self._read_round
        beat: Heartbeat | None = None
        for peer, pr in self._progress.items():
            commit = min(own_commit, pr.match_index)
            if commit > pr.sent_commit:
                pr.sent_commit = commit
            if beat is None or beat.leader_commit != commit:
                beat = Heartbeat(term=term, leader_commit=commit, read_round=read_round)
            self._send(peer, beat)  # peers at the same commit index share one (immutable) beat

    def _append(self, command: bytes) -> Index:
        index = Index(self._log.last_index + 1)
        entry = Entry(term=self._term, index=index, command=command)
        self._log.append(entry)
        self._note_membership(entry)
        return index

    def _flush_broadcast(self) -> None:
        """Send what proposals, commits and reads of this cycle need: one pass per peer."""
        if self._read_round_pending:
            self._read_round_pending = False
            self._read_round += 1
            for pending in self._pending_reads:
                if pending.round == 0:
                    pending.round = self._read_round
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()
        if not self._broadcast_pending:
            return
        self._broadcast_pending = False
        for peer, pr in self._progress.items():
            self._send_appends(peer, pr)
            self._send_commit_if_behind(peer, pr)

    def _send_commit_if_behind(self, peer: NodeId, pr: Progress) -> None:
        """Tell `peer` the commit index it has not been sent (up to what it holds), in a quiet
        beat: the follower does not answer it, since the periodic beats are answered and this
        one would tell the leader nothing new (that answer cost a frame each way per write)."""
        commit = min(self._commit, pr.match_index)
        if pr.sent_commit < commit:
            pr.sent_commit = commit
            self._send(
                peer,
                Heartbeat(
                    term=self._term, leader_commit=commit, read_round=self._read_round, quiet=True
                ),
            )
        self._send_commit_behind_appends(peer, pr)

    def _send_commit_behind_appends(self, peer: NodeId, pr: Progress) -> None:
        """The commit passed entries that are on their way to `peer`, not yet acknowledged
        (another voter made the quorum first). An empty append right behind them, on the
        same ordered stream, carries the commit: the follower checks that it holds the
        last of them and commits through it, as etcd's followers do, instead of waiting a
        round trip for its own acknowledgement to come back as a heartbeat. A local read
        on that follower then lags the client's answer less. It is quiet: the follower's
        answer to the entries themselves tells the leader what it holds."""
        if pr.state is not _REPLICATE:
            return
        last_sent = Index(pr.next_index - 1)
        commit = min(self._commit, last_sent)
        if commit <= pr.sent_commit:
            return
        last_term = self._log.term_at(last_sent)
        if last_term is None:
            return
        pr.sent_commit = commit
        self._send(
            peer,
            AppendEntries(
                term=self._term,
                prev_log_index=last_sent,
                prev_log_term=last_term,
                entries=(),
                leader_commit=self._commit,
                quiet=True,
            ),
        )

    def _send_appends(self, peer: NodeId, pr: Progress) -> None:
        """Send as many appends as flow control allows (one while probing)."""
        while self._send_one_append(peer, pr):
            pass

    def _send_one_append(self, peer: NodeId, pr: Progress) -> bool:
        """Send one append if allowed; True if another may follow at once."""
        state = pr.state
        if state is _SNAPSHOT:
            return False
        log, config = self._log, self._config
        if state is _PROBE:
            if pr.probe_sent:
                return False
        elif (
            pr.next_index == log.last_index + 1  # all sent: the common case
            or pr.inflight_count >= config.max_inflight_appends
            or pr.inflight_bytes >= config.max_inflight_bytes
        ):
            return False
        prev = Index(pr.next_index - 1)
        prev_term = log.term_at(prev)
        if prev_term is None:
            snapshot = log.snapshot
            pr.become_snapshot(snapshot.index)
            self._send(
                peer,
                InstallSnapshot(term=self._term, index=snapshot.index, snapshot_term=snapshot.term),
            )
            return False
        end = Index(pr.next_index + config.max_entries_per_append)
        entries = log.slice(pr.next_index, end, max_bytes=config.max_append_bytes)
        if not entries and state is _REPLICATE:
            return False
        commit = self._commit
        sent = Index(prev + len(entries))
        pr.sent_commit = max(pr.sent_commit, min(commit, sent))
        pr.highest_sent = max(pr.highest_sent, sent)
        self._send(
            peer,
            AppendEntries(
                term=self._term,
                prev_log_index=prev,
                prev_log_term=prev_term,
                entries=entries,
                leader_commit=commit,
            ),
        )
        if state is _PROBE:
            pr.probe_sent = True
            return False
        last = entries[-1].index
        pr.next_index = Index(last + 1)
        pr.add_inflight(last, sum(len(e.command) + _ENTRY_OVERHEAD_BYTES for e in entries))
        return pr.next_index <= log.last_index

    def _on_append_reply(self, sender: NodeId, message: AppendReply) -> None:
        pr = self._progress.get(sender)
        if self._role is not _LEADER or pr is None:
            return
        pr.recent_active = True
        if message.success:
            # A success claims only what we sent this follower in this term; a larger claim
            # (a buggy or foreign node) must never count towards a commit.
            claimed = min(message.match_index, pr.highest_sent)
            if claimed > pr.match_index:
                pr.match_index = claimed
                pr.free_inflight_through(claimed)
                if pr.state is not _REPLICATE:
                    pr.become_replicate()
                self._maybe_commit()
            elif pr.state is _PROBE:
                pr.probe_sent = False
            if pr.state is _SNAPSHOT and pr.match_index >= pr.pending_snapshot:
                pr.become_replicate()
            pr.next_index = max(pr.next_index, Index(pr.match_index + 1))
            if sender == self._transferee:
                self._hand_over_when_caught_up(sender, pr)
                return
        else:
            rejected = message.match_index
            if rejected < pr.match_index or (pr.state is _PROBE and rejected != pr.next_index - 1):
                return  # an answer to an append that is no longer current
            pr.become_probe(self._next_after_rejection(message))
        self._send_appends(sender, pr)
        if not self._broadcast_pending:
            # The commit may have passed this follower's entries before it acknowledged them
            # (another voter was first), with no append going to it: tell it now, not at the
            # next beat, or its reads and listeners lag by up to a heartbeat interval. (A
            # pending broadcast tells every follower its commit index anyway.)
            self._send_commit_if_behind(sender, pr)

    def _next_after_rejection(self, message: AppendReply) -> Index:
        """Fast back-off: skip the follower's whole conflicting term at once."""
        if message.hint_term == 0:
            candidate = Index(message.hint_index + 1)
        else:
            ours = self._log.last_index_of_term(message.hint_term)
            candidate = Index(ours + 1) if ours is not None else message.hint_index
        return max(Index(1), min(candidate, message.match_index))

    def _on_heartbeat_reply(self, sender: NodeId, message: HeartbeatReply) -> None:
        pr = self._progress.get(sender)
        if self._role is not _LEADER or pr is None:
            return
        pr.recent_active = True
        if message.read_round > self._read_acks.get(sender, 0):
            self._read_acks[sender] = message.read_round
            self._release_reads()
        if (
            message.last_log_index < pr.match_index
            and message.last_log_index <= self._log.snapshot.index
            and pr.state is not _SNAPSHOT
        ):
            # It holds less than it acknowledged, not even our compacted prefix: its data
            # directory was wiped and it came back empty. Probe from what it has (it gets a
            # snapshot); the commit index never moves back.
            pr.match_index = message.last_log_index
            pr.become_probe(Index(message.last_log_index + 1))
        if pr.state is _PROBE:
            pr.probe_sent = False
        elif (
            pr.state is _REPLICATE
            and pr.match_index < self._log.last_index
            and pr.match_index == pr.match_at_last_beat
        ):
            # No progress over a whole beat while entries are outstanding: an append or its
            # answer was lost. Probe from the last known match.
            pr.become_probe(Index(pr.match_index + 1))
        pr.match_at_last_beat = pr.match_index
        if pr.state is _SNAPSHOT and message.last_log_index >= pr.pending_snapshot:
            # The follower installed the snapshot but its report was lost: probe from there.
            pr.become_probe(Index(message.last_log_index + 1))
        elif pr.state is _SNAPSHOT:
            snapshot = self._log.snapshot
            pr.become_snapshot(snapshot.index)
            self._send(
                sender,
                InstallSnapshot(term=self._term, index=snapshot.index, snapshot_term=snapshot.term),
            )
            return
        if sender == self._transferee:
            self._hand_over_when_caught_up(sender, pr)  # again, if the TimeoutNow was lost
        elif pr.match_index < self._log.last_index:
            self._send_appends(sender, pr)

    def _maybe_commit(self) -> None:
        acked = {peer: pr.match_index for peer, pr in self._progress.items()}
        # The leader counts itself only for what is durable here
        # (docs/conventions.md#the-ready-contract).
        acked[self._id] = self._persisted_index
        candidate = quorum.committed_index(self._membership.voters, acked)
        if candidate > self._commit and self._can_commit(candidate):
            self._commit = candidate
            self._broadcast_pending = True
            if not self._is_voter and not self._change_in_flight():
                self._step_down_removed()
                return
            if self._reads_awaiting_commit and self._log.term_at(self._commit) == self._term:
                waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
                for request_id in waiting:
                    self._queue_read(request_id)

    # ------------------------------------------------------------------ read index

    def _step_down_removed(self) -> None:
        """The configuration that removed this leader has committed: hand over to the most
        caught-up voter at once (`TimeoutNow`), then follow; a non-voter never campaigns."""
        voters = [p for p in self._progress if p in self._membership.voters]
        best = max(voters, key=lambda p: (self._progress[p].match_index, p), default=None)
        self._flush_broadcast()  # the new commit index reaches the voters first
        if best is not None:
            self._send(best, TimeoutNow(term=self._term))
        self._logger.info(
            "%s steps down at term %d: removed from the cluster (%s)",
            self._id,
            self._term,
            self._membership.describe(),
        )
        self._become_follower(self._term, None)

    def _queue_read(self, request_id: int) -> None:
        if self._solo:
            self._read_states.append(ReadState(request_id=request_id, index=self._commit))
            return
        self._pending_reads.append(_PendingRead(request_id, self._commit, 0))
        # One round in flight at a time (as etcd's read loop): reads that arrive while a
        # round is out wait for the next one, started when it is confirmed. Under load that
        # is one beat per peer per round trip instead of one per Ready cycle.
        if not self._read_round_pending and self._confirmed_read_round() >= self._read_round:
            self._read_round_pending = True

    def _confirmed_read_round(self) -> int:
        """The highest read round a majority of voters (the leader included) acknowledged."""
        voters = self._membership.voters
        rounds = sorted(
            (self._read_round if v == self._id else self._read_acks.get(v, 0)) for v in voters
        )
        return rounds[len(rounds) - quorum.majority(voters)]

    def _release_reads(self) -> None:
        confirmed = self._confirmed_read_round()
        still: list[_PendingRead] = []
        for pending in self._pending_reads:
            if 0 < pending.round <= confirmed:
                self._read_states.append(
                    ReadState(request_id=pending.request_id, index=pending.index)
                )
            else:
                still.append(pending)
        self._pending_reads = still
        if still and confirmed >= self._read_round:
            self._read_round_pending = True  # the reads that waited for this round to end

    def _drop_reads(self) -> None:
        self._dropped_reads.extend(p.request_id for p in self._pending_reads)
        self._dropped_reads.extend(self._reads_awaiting_commit)
        self._pending_reads.clear()
        self._reads_awaiting_commit.clear()
        self._read_round_pending = False

    # ------------------------------------------------------------------ output

    def _send(self, recipient: NodeId, message: Message) -> None:
        self._messages.append(Envelope(self._id, recipient, message))
