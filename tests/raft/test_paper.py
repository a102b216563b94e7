"""The rules of the Raft paper's Figure 2, one test each, through the core's public API.

Each docstring cites the section it checks: §5.1 to §5.4 of the Raft paper (Ongaro and
Ousterhout, 2014); §4.2.3, §6.2, §6.4 and §9.6 of Ongaro's thesis (2014). The pattern is
etcd's raft_paper_test.go: drive one core by hand with `step`, `tick` and `ready`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

import pytest

from naraft.raft import (
    AppendEntries,
    AppendReply,
    Entry,
    Envelope,
    HardState,
    Heartbeat,
    HeartbeatReply,
    Index,
    InstallSnapshot,
    Message,
    NodeId,
    NotLeaderError,
    RaftConfig,
    RaftCore,
    Ready,
    RequestVote,
    Role,
    Term,
    VoteReply,
)

N1, N2, N3, N4, N5 = (NodeId(f"n{i}") for i in range(1, 6))
THREE = (N1, N2, N3)
ELECTION_TICKS = 10


# ---------------------------------------------------------------------------- factories


def make_core(
    node: NodeId = N1,
    voters: Sequence[NodeId] = THREE,
    *,
    seed: int = 1,
    term: int = 0,
    voted_for: NodeId | None = None,
    commit: int = 0,
    log: str = "",
    pre_vote: bool = False,
    check_quorum: bool = False,
    **options: int,
) -> RaftCore:
    """A core as if booted from disk: `log` is written `"1/1 2/1 3/2"` (index/term).

    PreVote and CheckQuorum are off unless asked for, so that each test shows one rule.
    """
    config = RaftConfig(
        id=node,
        voters=tuple(voters),
        election_ticks=ELECTION_TICKS,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        **options,
    )
    hard_state = HardState(term=Term(term), voted_for=voted_for, commit=Index(commit))
    return RaftCore(config, rng=random.Random(seed), hard_state=hard_state, log=entries(log))


def entries(spec: str) -> tuple[Entry, ...]:
    result: list[Entry] = []
    for word in spec.split():
        index, term = (int(part) for part in word.split("/"))
        result.append(Entry(term=Term(term), index=Index(index), command=f"c{index}".encode()))
    return tuple(result)


def positions(log: Iterable[Entry]) -> str:
    return " ".join(f"{entry.index}/{entry.term}" for entry in log)


def drain(core: RaftCore) -> list[Ready]:
    """Play the shell: take every Ready and acknowledge it as persisted, sent and applied."""
    readies: list[Ready] = []
    while core.has_ready():
        ready = core.ready()
        readies.append(ready)
        core.advance(ready)
    return readies


def sent(readies: Iterable[Ready]) -> list[Envelope]:
    return [envelope for ready in readies for envelope in ready.messages]


def sent_messages(core: RaftCore) -> list[tuple[NodeId, Message]]:
    return [(envelope.recipient, envelope.message) for envelope in sent(drain(core))]


def deliver(core: RaftCore, sender: NodeId, message: Message) -> None:
    core.step(Envelope(sender, core.id, message))


def elect(core: RaftCore) -> None:
    """Make a fresh 3-voter `core` leader of the next term and commit its no-op."""
    core.campaign()
    drain(core)
    deliver(core, N2, VoteReply(term=core.term, granted=True))
    assert core.role is Role.LEADER
    drain(core)
    deliver(
        core, N2, AppendReply(term=core.term, success=True, match_index=core.status().last_index)
    )
    drain(core)


def append(term: int, prev: str, log: str = "", commit: int = 0) -> AppendEntries:
    prev_index, prev_term = (int(part) for part in prev.split("/"))
    return AppendEntries(
        term=Term(term),
        prev_log_index=Index(prev_index),
        prev_log_term=Term(prev_term),
        entries=entries(log),
        leader_commit=Index(commit),
    )


def vote(term: int, last: str, *, pre_vote: bool = False) -> RequestVote:
    last_index, last_term = (int(part) for part in last.split("/"))
    return RequestVote(
        term=Term(term),
        last_log_index=Index(last_index),
        last_log_term=Term(last_term),
        pre_vote=pre_vote,
    )


def replies_of(core: RaftCore, kind: type[Message]) -> list[Message]:
    return [message for _, message in sent_messages(core) if isinstance(message, kind)]


# ---------------------------------------------------------------------------- §5.1 terms


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(append(3, "0/0"), id="append-entries"),
        pytest.param(Heartbeat(term=Term(3), leader_commit=Index(0)), id="heartbeat"),
        pytest.param(vote(3, "0/0"), id="request-vote"),
        pytest.param(AppendReply(term=Term(3), success=False, match_index=Index(0)), id="reply"),
        pytest.param(HeartbeatReply(term=Term(3)), id="heartbeat-reply"),
    ],
)
def test_any_message_of_a_later_term_moves_a_follower_to_that_term(message: Message) -> None:
    """§5.1: "If a server's current term is smaller than the other's, it updates its
    current term to the larger value" — and forgets the vote it cast in the old term."""
    core = make_core(term=1, voted_for=N3)
    deliver(core, N2, message)
    assert core.term == 3
    assert core.status().voted_for in (None, N2)  # N2 only if it granted a vote in term 3
    assert core.role is Role.FOLLOWER


def test_leader_steps_down_on_a_reply_of_a_later_term() -> None:
    """§5.1: "If a candidate or leader discovers that its term is out of date, it
    immediately reverts to follower state." """
    core = make_core()
    elect(core)
    deliver(core, N3, AppendReply(term=Term(core.term + 1), success=False, match_index=Index(0)))
    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, 2, None)


def test_stale_append_entries_is_refused_with_the_current_term() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the
    request"; the answer carries the current term so the stale leader steps down."""
    core = make_core(term=2, log="1/1")
    deliver(core, N2, append(1, "1/1", "2/1", commit=2))
    assert positions(core.log) == "1/1"
    assert core.commit_index == 0
    answers = sent_messages(core)
    assert [(to, type(m), m.term) for to, m in answers] == [(N2, HeartbeatReply, 2)]


def test_stale_vote_request_is_not_granted() -> None:
    """§5.1 and Figure 2 (RequestVote 1): "Reply false if term < currentTerm"."""
    core = make_core(term=2)
    deliver(core, N2, vote(1, "5/1"))
    assert core.status().voted_for is None
    assert not [m for m in replies_of(core, VoteReply) if isinstance(m, VoteReply) and m.granted]


def test_stale_vote_reply_is_not_counted() -> None:
    """§5.1: a vote granted for an earlier term says nothing about this election."""
    core = make_core()
    core.campaign()
    core.campaign()  # a second election: term 2
    drain(core)
    deliver(core, N2, VoteReply(term=Term(1), granted=True))
    assert core.status().role is Role.CANDIDATE
    deliver(core, N2, VoteReply(term=Term(2), granted=True))
    assert core.status().role is Role.LEADER


def test_stale_append_reply_is_ignored_by_the_leader() -> None:
    """§5.1: a reply from an earlier term is dropped; it must not move matchIndex."""
    core = make_core(term=1, log="1/1 2/1 3/1")
    elect(core)  # term 2, no-op at 4
    before = core.status().peers[N3].match_index
    deliver(core, N3, AppendReply(term=Term(1), success=True, match_index=Index(3)))
    assert core.status().peers[N3].match_index == before


def test_messages_from_itself_or_for_another_node_are_dropped() -> None:
    """Rule 2 of the core: a misrouted or looped-back message does nothing."""
    core = make_core()
    deliver(core, N1, append(5, "0/0", "1/5"))  # from itself
    core.step(Envelope(N2, N3, append(5, "0/0", "1/5")))  # addressed to another node
    assert (core.term, core.log) == (0, ())


def test_a_leader_outside_the_known_configuration_is_followed() -> None:
    """§4.1: a node whose log has not yet reached the entry that added a member must still
    follow that member once it leads (the transport, not the core, decides who is a member
    of the cluster at all: it takes only requests signed by one)."""
    core = make_core()
    newcomer = NodeId("n4")
    deliver(core, newcomer, append(5, "0/0", "1/5", commit=1))
    assert (core.term, core.leader, [e.index for e in core.log]) == (5, newcomer, [1])


# ---------------------------------------------------------------------------- §5.2 election


def test_follower_campaigns_after_a_randomized_election_timeout() -> None:
    """§5.2: "If a follower receives no communication over a period of time called the
    election timeout, then it ... begins an election"; timeouts are chosen randomly from a
    fixed interval, here [election_ticks, 2 * election_ticks)."""
    fired_at: set[int] = set()
    for seed in range(30):
        core = make_core(seed=seed)
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
            assert ticks < 2 * ELECTION_TICKS
        fired_at.add(ticks)
        assert ticks >= ELECTION_TICKS
    assert len(fired_at) > 1, "every seed drew the same timeout: not randomized"


def test_candidate_persists_term_and_own_vote_in_the_ready_that_asks_for_votes() -> None:
    """§5.2: "a follower increments its current term ... votes for itself and issues
    RequestVote RPCs"; Figure 2: currentTerm and votedFor are persisted before responding
    to (here: before sending) RPCs, so they travel in the same Ready as the requests."""
    core = make_core(log="1/1")
    core.campaign()
    ready = core.ready()
    assert ready.hard_state is not None
    assert (ready.hard_state.term, ready.hard_state.voted_for) == (1, N1)
    requests = [(e.recipient, e.message) for e in ready.messages]
    assert requests == [(N2, vote(1, "1/1")), (N3, vote(1, "1/1"))]


def test_granted_vote_is_in_the_hard_state_of_the_ready_that_sends_it() -> None:
    """Figure 2: votedFor is persistent state, "updated on stable storage before
    responding to RPCs". The shell persists a Ready before sending its messages."""
    core = make_core()
    deliver(core, N2, vote(1, "0/0"))
    ready = core.ready()
    assert ready.hard_state is not None
    assert (ready.hard_state.term, ready.hard_state.voted_for) == (1, N2)
    assert [e.message for e in ready.messages] == [VoteReply(term=Term(1), granted=True)]


def test_one_vote_per_term_first_come_first_served() -> None:
    """§5.2: "each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis"; asking again is answered the same way."""
    core = make_core()
    deliver(core, N2, vote(1, "0/0"))
    deliver(core, N3, vote(1, "0/0"))
    deliver(core, N2, vote(1, "0/0"))
    answers = [(to, m) for to, m in sent_messages(core)]
    assert answers == [
        (N2, VoteReply(term=Term(1), granted=True)),
        (N3, VoteReply(term=Term(1), granted=False)),
        (N2, VoteReply(term=Term(1), granted=True)),
    ]


def test_vote_survives_a_restart() -> None:
    """Figure 2: votedFor is persistent; a node rebuilt from its hard state refuses a second
    candidate in the same term."""
    core = make_core()
    deliver(core, N2, vote(1, "0/0"))
    hard_state = drain(core)[0].hard_state
    assert hard_state is not None
    rebooted = RaftCore(core_config(), rng=random.Random(2), hard_state=hard_state)
    deliver(rebooted, N3, vote(1, "0/0"))
    assert replies_of(rebooted, VoteReply) == [VoteReply(term=Term(1), granted=False)]


def core_config() -> RaftConfig:
    return RaftConfig(id=N1, voters=THREE, pre_vote=False, check_quorum=False)


def test_granting_a_vote_restarts_the_election_timer() -> None:
    """Figure 2 (Followers): convert to candidate only "if election timeout elapses without
    receiving AppendEntries RPC from current leader or granting vote to candidate"."""
    core = make_core()
    for _ in range(ELECTION_TICKS - 1):
        core.tick()
    deliver(core, N2, vote(1, "0/0"))
    for _ in range(ELECTION_TICKS - 1):
        core.tick()
    assert core.role is Role.FOLLOWER


@pytest.mark.parametrize(
    ("voters", "granted_by", "expected"),
    [
        pytest.param(THREE, (N2,), Role.LEADER, id="3-voters-one-grant-wins"),
        pytest.param((N1, N2, N3, N4, N5), (N2,), Role.CANDIDATE, id="5-voters-one-grant-waits"),
        pytest.param((N1, N2, N3, N4, N5), (N2, N3), Role.LEADER, id="5-voters-two-grants-win"),
    ],
)
def test_candidate_wins_with_votes_from_a_majority(
    voters: Sequence[NodeId], granted_by: Sequence[NodeId], expected: Role
) -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the
    servers in the full cluster for the same term" (its own vote included)."""
    core = make_core(voters=voters)
    core.campaign()
    for voter in granted_by:
        deliver(core, voter, VoteReply(term=Term(1), granted=True))
    assert core.role is expected


def test_candidate_that_a_majority_refuses_returns_to_follower() -> None:
    """§5.2: with a majority refusing, the election is lost; the candidate waits as a
    follower instead of holding the term."""
    core = make_core()
    core.campaign()
    deliver(core, N2, VoteReply(term=Term(1), granted=False))
    deliver(core, N3, VoteReply(term=Term(1), granted=False))
    assert (core.role, core.term) == (Role.FOLLOWER, 1)


def test_candidate_steps_down_on_append_entries_of_its_own_term() -> None:
    """§5.2: "If the leader's term ... is at least as large as the candidate's current
    term, then the candidate recognizes the leader as legitimate and returns to follower
    state." """
    core = make_core()
    core.campaign()
    deliver(core, N2, append(1, "0/0", "1/1"))
    assert (core.role, core.term, core.leader) == (Role.FOLLOWER, 1, N2)
    assert positions(core.log) == "1/1"


def test_leader_beats_every_heartbeat_tick() -> None:
    """§5.2: "Leaders send periodic heartbeats ... to all followers in order to maintain
    their authority"."""
    core = make_core(heartbeat_ticks=2)
    elect(core)
    beats: list[int] = []
    for _ in range(6):
        core.tick()
        beats.append(sum(isinstance(m, Heartbeat) for _, m in sent_messages(core)))
    assert beats == [0, 2, 0, 2, 0, 2]


def test_follower_learns_the_leader_from_its_first_message() -> None:
    """§5.2: a follower recognizes the leader of a term by its AppendEntries; `status()`
    reports it, for the shell to forward requests."""
    core = make_core(term=1)
    assert core.status().leader is None
    deliver(core, N3, Heartbeat(term=Term(2), leader_commit=Index(0)))
    assert (core.status().leader, core.term) == (N3, 2)
    role_changes = [r.role_change for r in drain(core) if r.role_change is not None]
    assert [(c.role, c.term, c.leader) for c in role_changes] == [(Role.FOLLOWER, 2, N3)]


def test_proposal_on_a_follower_names_the_leader() -> None:
    """§8: "If the client contacts a follower, the follower will reject its request and
    supply information about the most recent leader it has heard from"."""
    core = make_core()
    deliver(core, N3, append(1, "0/0"))
    with pytest.raises(NotLeaderError) as refused:
        core.propose(b"x")
    assert refused.value.leader_hint == N3


# ---------------------------------------------------------------------------- §5.3 replication


def test_follower_refuses_append_whose_previous_entry_does_not_match() -> None:
    """Figure 2 (AppendEntries 2): "Reply false if log doesn't contain an entry at
    prevLogIndex whose term matches prevLogTerm"."""
    core = make_core(term=2, log="1/1 2/1")
    deliver(core, N2, append(2, "2/2", "3/2"))
    assert positions(core.log) == "1/1 2/1"
    answers = replies_of(core, AppendReply)
    assert len(answers) == 1
    assert isinstance(answers[0], AppendReply)
    assert not answers[0].success


def test_a_follower_takes_a_quiet_commit_notice_without_answering() -> None:
    """naraft: a leader marks its commit notices quiet (the beat telling a caught-up
    follower the new commit index, the empty append behind entries still on their way). A
    follower that takes one says nothing: the leader learns nothing from the answer, and it
    cost a frame each way per write."""
    core = make_core(term=2, log="1/1 2/2 3/2")
    deliver(core, N2, Heartbeat(term=Term(2), leader_commit=Index(2), quiet=True))
    assert core.commit_index == 2
    assert sent_messages(core) == []
    deliver(core, N2, dataclasses.replace(append(2, "3/2", commit=3), quiet=True))
    assert core.commit_index == 3
    assert sent_messages(core) == []
    deliver(core, N2, dataclasses.replace(append(2, "1/1", commit=3), quiet=True))  # a late one
    assert sent_messages(core) == []
    deliver(core, N2, Heartbeat(term=Term(2), leader_commit=Index(3)))  # a periodic beat
    assert [type(m) for _, m in sent_messages(core)] == [HeartbeatReply]


def test_a_follower_answers_a_quiet_notice_it_refuses() -> None:
    """Quiet spares only the answer that says "taken": a refusal is the leader's news."""
    core = make_core(term=2, log="1/1 2/1")
    deliver(core, N2, dataclasses.replace(append(2, "2/2", commit=2), quiet=True))
    answers = replies_of(core, AppendReply)
    assert len(answers) == 1
    assert isinstance(answers[0], AppendReply)
    assert not answers[0].success
    core = make_core(term=3, log="1/1")
    deliver(core, N2, Heartbeat(term=Term(2), leader_commit=Index(1), quiet=True))
    assert [(to, type(m), m.term) for to, m in sent_messages(core)] == [(N2, HeartbeatReply, 3)]


def test_follower_replaces_a_conflicting_suffix() -> None:
    """Figure 2 (AppendEntries 3, 4): "If an existing entry conflicts with a new one (same
    index but different terms), delete the existing entry and all that follow it"; then
    append any new entries. The Ready re-persists from the first replaced index."""
    core = make_core(term=2, log="1/1 2/1 3/1 4/1")
    deliver(core, N2, append(3, "1/1", "2/3 3/3"))
    assert positions(core.log) == "1/1 2/3 3/3"
    readies = drain(core)
    assert positions(e for r in readies for e in r.entries) == "2/3 3/3"
    assert core.status().persisted_index == 3


def test_follower_keeps_entries_after_an_older_shorter_append() -> None:
    """Figure 2 (AppendEntries 3): only a *conflicting* entry truncates. A delayed append
    carrying a prefix the follower already has must not delete the entries after it."""
    core = make_core(term=1, log="1/1 2/1 3/1")
    deliver(core, N2, append(1, "0/0", "1/1"))
    assert positions(core.log) == "1/1 2/1 3/1"


def test_follower_commit_is_the_smaller_of_leader_commit_and_its_last_new_entry() -> None:
    """Figure 2 (AppendEntries 5): "If leaderCommit > commitIndex, set commitIndex =
    min(leaderCommit, index of last new entry)"."""
    core = make_core(term=1, log="1/1 2/1 3/1 4/9")  # 4/9 is a stale leftover
    deliver(core, N2, append(1, "1/1", "2/1", commit=4))
    assert core.commit_index == 2


def test_commit_index_never_decreases() -> None:
    """Figure 2: commitIndex "increases monotonically"; a late message with a smaller
    leader commit leaves it alone, on followers and across restarts."""
    core = make_core(term=1, log="1/1 2/1 3/1")
    deliver(core, N2, Heartbeat(term=Term(1), leader_commit=Index(3)))
    deliver(core, N2, Heartbeat(term=Term(1), leader_commit=Index(1)))
    deliver(core, N2, append(1, "1/1", "2/1", commit=1))
    assert core.commit_index == 3
    hard_states = [r.hard_state for r in drain(core) if r.hard_state is not None]
    assert hard_states[-1].commit == 3
    rebooted = RaftCore(
        core_config(), rng=random.Random(3), hard_state=hard_states[-1], log=core.log
    )
    assert rebooted.commit_index == 3


def test_leader_commits_on_a_majority_and_hands_out_entries_to_apply_once() -> None:
    """§5.3: "The leader decides when it is safe to apply a log entry ... once the leader
    that created the entry has replicated it on a majority"; Figure 2 (All servers):
    apply log[lastApplied] when commitIndex > lastApplied, in order, once."""
    core = make_core()
    elect(core)
    index = core.propose(b"x")
    drain(core)
    # N2 is replicating (elect() matched it), so the entry went to it at once.
    deliver(core, N2, AppendReply(term=core.term, success=True, match_index=index))
    assert core.commit_index == index
    applied = [e for r in drain(core) for e in r.committed]
    assert [(e.index, e.command) for e in applied] == [(index, b"x")]
    assert core.status().applied_index == index
    deliver(core, N2, AppendReply(term=core.term, success=True, match_index=index))
    assert [e for r in drain(core) for e in r.committed] == []


def test_leader_counts_itself_only_for_entries_it_has_persisted() -> None:
    """§5.3 and docs/conventions.md#the-ready-contract: the leader is one of the majority
    only for entries the shell has made durable (acknowledged through advance)."""
    core = make_core()
    elect(core)
    index = core.propose(b"x")
    ready = core.ready()
    assert [e.index for e in ready.entries] == [index]
    deliver(core, N2, AppendReply(term=core.term, success=True, match_index=index))
    assert core.commit_index < index, "committed before the leader's own write was durable"
    core.advance(ready)
    assert core.commit_index == index


def test_only_a_leaders_replication_may_leave_before_its_write() -> None:
    """§10.2.1 and docs/conventions.md#the-ready-contract: a leader's appends may leave
    while it writes them; a vote request, a granted vote and a follower's acknowledgement
    wait for the write that makes them true."""
    candidate = make_core()
    candidate.campaign()
    campaign = candidate.ready()
    assert campaign.must_sync
    assert any(isinstance(e.message, RequestVote) for e in campaign.messages)
    assert not campaign.messages_first
    candidate.advance(campaign)

    leader = make_core()
    elect(leader)
    leader.propose(b"x")
    replication = leader.ready()
    assert replication.entries
    assert any(isinstance(e.message, AppendEntries) for e in replication.messages)
    assert replication.messages_first
    leader.advance(replication)

    voter = make_core()
    deliver(voter, N2, vote(1, "0/0"))
    granted = voter.ready()
    assert [e.message for e in granted.messages] == [VoteReply(term=Term(1), granted=True)]
    assert not granted.messages_first
    voter.advance(granted)

    follower = make_core()
    deliver(follower, N2, append(1, "0/0", "1/1"))
    acked = follower.ready()
    assert acked.entries
    assert any(isinstance(e.message, AppendReply) for e in acked.messages)
    assert not acked.messages_first


def test_every_entry_a_leader_sends_is_persisted_no_later_than_the_send() -> None:
    """§5.3 with Figure 2's persistence rule: an entry leaves in an append only in the same
    Ready that persists it, or after it."""
    core = make_core()
    elect(core)
    core.propose(b"x")
    core.propose(b"y")
    persisted = core.status().persisted_index
    for ready in drain(core):
        persisted = max([persisted, *(e.index for e in ready.entries)])
        for envelope in ready.messages:
            if isinstance(envelope.message, AppendEntries):
                assert all(e.index <= persisted for e in envelope.message.entries)


def test_leader_repairs_a_follower_by_backing_off() -> None:
    """§5.3: "After a rejection, the leader decrements nextIndex and retries"; with the
    conflict hint ("the term of the conflicting entry and the first index it stores for
    that term") it skips the follower's whole conflicting term at once."""
    core = make_core(term=2, log="1/1 2/2 3/2 4/2 5/2")
    elect(core)  # term 3; no-op at 6; N3 was probed after 5/2
    # N3 holds 1/1 2/1 ... 7/1 from an old leader: its entry at 5 has term 1, whose run
    # starts at index 1.
    deliver(
        core,
        N3,
        AppendReply(
            term=core.term,
            success=False,
            match_index=Index(5),
            hint_index=Index(1),
            hint_term=Term(1),
        ),
    )
    appends = [m for to, m in sent_messages(core) if to == N3 and isinstance(m, AppendEntries)]
    assert [(m.prev_log_index, m.prev_log_term) for m in appends] == [(1, 1)]
    assert positions(appends[0].entries) == "2/2 3/2 4/2 5/2 6/3"


def test_lost_append_is_sent_again_after_a_beat_without_progress() -> None:
    """§5.3: "If followers crash or run slowly, or if network packets are lost, the leader
    retries AppendEntries RPCs indefinitely until all followers eventually store all log
    entries" — even when no new proposal arrives."""
    core = make_core()
    elect(core)
    index = core.propose(b"x")
    drain(core)  # the appends carrying x are lost
    resent: list[AppendEntries] = []
    for _ in range(3 * ELECTION_TICKS):
        core.tick()
        for to, message in sent_messages(core):
            if isinstance(message, Heartbeat):
                deliver(core, to, HeartbeatReply(term=core.term, last_log_index=Index(index - 1)))
            if to == N3 and isinstance(message, AppendEntries):
                resent.append(message)
    assert any(index in (e.index for e in m.entries) for m in resent)


# ---------------------------------------------------------------------------- §5.4 safety


@pytest.mark.parametrize(
    ("own_log", "candidate_last", "granted"),
    [
        pytest.param("1/1 2/2", "2/2", True, id="same-last-term-same-length"),
        pytest.param("1/1 2/2", "3/2", True, id="same-last-term-longer"),
        pytest.param("1/1 2/2", "1/2", False, id="same-last-term-shorter"),
        pytest.param("1/1 2/2", "1/3", True, id="later-last-term-shorter"),
        pytest.param("1/1 2/2", "9/1", False, id="earlier-last-term-longer"),
        pytest.param("", "0/0", True, id="both-empty"),
        pytest.param("1/1", "0/0", False, id="candidate-empty"),
    ],
)
def test_vote_only_for_a_log_at_least_as_up_to_date(
    own_log: str, candidate_last: str, granted: bool
) -> None:
    """§5.4.1: "If the logs have last entries with different terms, then the log with the
    later term is more up-to-date. If the logs end with the same term, then whichever log
    is longer is more up-to-date." """
    core = make_core(term=2, log=own_log)
    deliver(core, N2, vote(3, candidate_last))
    assert replies_of(core, VoteReply) == [VoteReply(term=Term(3), granted=granted)]
    assert core.status().voted_for == (N2 if granted else None)


def test_new_leader_appends_a_no_op_of_its_term() -> None:
    """§8: "each leader commit[s] a blank no-op entry into the log at the start of its
    term"; it goes out in the first appends."""
    core = make_core(term=1, log="1/1 2/1")
    core.campaign()
    deliver(core, N2, VoteReply(term=Term(2), granted=True))
    assert [(e.index, e.term, e.command) for e in core.log][-1] == (3, 2, b"")
    appends = [m for _, m in sent_messages(core) if isinstance(m, AppendEntries)]
    assert {positions(m.entries) for m in appends} == {"3/2"}


def test_entry_of_an_earlier_term_does_not_commit_by_counting_replicas() -> None:
    """§5.4.2 (Figure 8): "Raft never commits log entries from previous terms by counting
    replicas. Only log entries from the leader's current term are committed by counting
    replicas"; earlier entries then commit with them."""
    core = make_core(term=2, log="1/1 2/1")
    core.campaign()  # term 3, no-op at 3
    deliver(core, N2, VoteReply(term=Term(3), granted=True))
    drain(core)
    deliver(core, N2, AppendReply(term=Term(3), success=True, match_index=Index(2)))
    deliver(core, N3, AppendReply(term=Term(3), success=True, match_index=Index(2)))
    assert core.commit_index == 0, "2/1 is on every voter but is from an earlier term"
    deliver(core, N2, AppendReply(term=Term(3), success=True, match_index=Index(3)))
    assert core.commit_index == 3


def test_follower_keeps_its_committed_prefix_and_replaces_what_follows() -> None:
    """§5.4.3 (Leader Completeness): a leader's append never conflicts with a follower's
    committed prefix; a follower that knows commit=2 keeps entries 1..2 when a new
    leader's append agrees with them and replaces only what follows."""
    core = make_core(term=1, log="1/1 2/1 3/1", commit=2)
    deliver(core, N3, append(2, "2/1", "3/2"))
    assert positions(core.log) == "1/1 2/1 3/2"
    assert core.commit_index == 2


def test_a_late_append_inside_the_committed_prefix_claims_only_what_it_carries() -> None:
    """Figure 2 (AppendEntries): success means "the follower contained an entry matching
    prevLogIndex and prevLogTerm" plus the entries sent; an append starting below the
    follower's commit index proves no more than that, whatever the follower committed."""
    core = make_core(term=1, log="1/1 2/1 3/1 4/1 5/1", commit=5)
    deliver(core, N2, append(1, "1/1", "2/1"))
    answers = replies_of(core, AppendReply)
    assert answers == [AppendReply(term=Term(1), success=True, match_index=Index(2))]


def test_an_append_contradicting_the_committed_log_is_dropped() -> None:
    """A follower never says it holds an entry it holds with another term: an append whose
    terms contradict its committed entries comes from another cluster's log and gets no
    success, so no leader can count this node for it."""
    core = make_core(term=2, log="1/1 2/1 3/1 4/1 5/1", commit=5)
    deliver(core, N2, append(3, "2/1", "3/3"))
    assert replies_of(core, AppendReply) == []
    assert positions(core.log) == "1/1 2/1 3/1 4/1 5/1"
    assert core.commit_index == 5


def test_a_snapshot_below_the_commit_index_claims_only_the_snapshot_index() -> None:
    """InstallSnapshot for an index the follower has committed: the answer is that index,
    not the follower's own commit index (which may lie past the leader's log)."""
    core = make_core(term=1, log="1/1 2/1 3/1 4/1 5/1", commit=5)
    deliver(core, N2, InstallSnapshot(term=Term(1), index=Index(3), snapshot_term=Term(1)))
    assert replies_of(core, AppendReply) == [
        AppendReply(term=Term(1), success=True, match_index=Index(3))
    ]
    deliver(core, N2, InstallSnapshot(term=Term(1), index=Index(4), snapshot_term=Term(2)))
    assert replies_of(core, AppendReply) == [], "a snapshot of another log is not acknowledged"


def test_leader_never_counts_a_follower_past_what_it_sent_it() -> None:
    """The leader's matchIndex for a follower is at most the last index it sent that
    follower: a success claiming more (a foreign or buggy node) counts only as far as the
    entries really sent, and never past the leader's own log."""
    core = make_core()
    elect(core)
    index = core.propose(b"x")
    drain(core)  # N2 (replicating) gets the entry; N3 is still probing and does not
    deliver(core, N3, AppendReply(term=core.term, success=True, match_index=Index(index + 100)))
    assert core.status().peers[N3].match_index < index
    assert core.commit_index < index, "committed on a claim for an entry never sent"
    drain(core)  # now N3 replicates and gets the entry
    deliver(core, N3, AppendReply(term=core.term, success=True, match_index=Index(index + 100)))
    assert core.status().peers[N3].match_index == index == core.status().last_index


def test_a_foreign_follower_with_a_longer_commit_does_not_commit_the_leaders_entry() -> None:
    """A node started on another cluster's data directory has committed far past the
    leader's log, with other terms. Before the fix it answered the leader's first probe with
    its own commit index and the leader committed its new-term entry with only itself."""
    leader = make_core(N1, term=2, log="1/1 2/1")
    foreign = make_core(N2, term=1, log=" ".join(f"{i}/1" for i in range(1, 51)), commit=50)
    leader.campaign()
    drain(leader)
    deliver(leader, N3, VoteReply(term=leader.term, granted=True))
    assert leader.role is Role.LEADER
    noop = leader.status().last_index
    for envelope in sent(drain(leader)):
        if envelope.recipient == N2:
            foreign.step(envelope)
    for envelope in sent(drain(foreign)):
        leader.step(envelope)
    drain(leader)
    assert leader.status().peers[N2].match_index < noop
    assert leader.commit_index < noop, "committed with only the leader holding the entry"


def _follower_of_a_dead_leader(node: NodeId = N3, seed: int = 1) -> tuple[RaftCore, float]:
    """A five-voter follower of N5 at term 1 whose shell just saw N5 refuse a connection."""
    core = make_core(
        node, (N1, N2, N3, N4, N5), seed=seed, term=1, log="1/1", commit=1, pre_vote=True
    )
    deliver(core, N5, Heartbeat(term=Term(1), leader_commit=Index(1)))
    drain(core)
    delay = core.forget_leader()
    assert delay is not None
    drain(core)
    return core, delay


def test_a_dead_leader_is_forgotten_and_the_pre_vote_waits_for_a_random_delay() -> None:
    """After the refusal the follower trusts no leader (no lease) and campaigns after a
    delay drawn from its RNG: a fraction of the election timeout, with sub-tick resolution,
    different across nodes, so that followers that saw the same refusal do not collide."""
    delays = {_follower_of_a_dead_leader(node, seed)[1] for seed, node in enumerate(THREE, 7)}
    assert all(0 <= d < ELECTION_TICKS / 4 for d in delays)
    assert len(delays) == 3
    assert any(d != int(d) for d in delays)
    core, _ = _follower_of_a_dead_leader()
    assert (core.role, core.leader) == (Role.FOLLOWER, None)
    assert core.forget_leader() is None  # nothing left to forget
    core.hurry_election()
    assert core.role is Role.PRE_CANDIDATE
    assert {to for to, m in sent_messages(core) if isinstance(m, RequestVote)} == {N1, N2, N4, N5}


def test_without_the_shells_call_the_timer_campaigns_just_after_the_delay() -> None:
    core, delay = _follower_of_a_dead_leader()
    ticks = 0
    while core.role is Role.FOLLOWER:
        core.tick()
        ticks += 1
    assert ticks <= int(delay) + 2


def test_hurry_does_nothing_once_a_leader_is_heard_or_the_term_moved_on() -> None:
    core, _ = _follower_of_a_dead_leader()
    deliver(core, N4, Heartbeat(term=Term(2), leader_commit=Index(1)))  # N4 won meanwhile
    core.hurry_election()
    assert (core.role, core.leader, core.term) == (Role.FOLLOWER, N4, 2)
    core, _ = _follower_of_a_dead_leader()
    deliver(core, N4, vote(2, "1/1"))  # N4 campaigns; this node votes for it
    drain(core)
    core.hurry_election()
    assert core.role is Role.FOLLOWER, "a hurried PreVote would disrupt N4's election"


def test_a_follower_that_grants_a_pre_vote_while_it_waits_lets_that_rival_win() -> None:
    """N1 saw the leader die a moment earlier and asks first; this follower, still waiting
    out its own delay, grants it. Hurrying on would make this node a pre-candidate that N1
    (a smaller id) grants in turn: both become candidates and split the vote. It waits a
    whole election timeout instead, as after granting a real vote."""
    core, _ = _follower_of_a_dead_leader()
    deliver(core, N1, vote(2, "1/1", pre_vote=True))
    assert [m.granted for m in replies_of(core, VoteReply) if isinstance(m, VoteReply)] == [True]
    core.hurry_election()
    assert core.role is Role.FOLLOWER
    for _ in range(ELECTION_TICKS - 1):
        core.tick()
    assert core.role is Role.FOLLOWER, "campaigned before a whole election timeout"
    for _ in range(ELECTION_TICKS + 1):  # the rival failed after all: the timer campaigns
        core.tick()
    assert core.role is Role.PRE_CANDIDATE


def test_in_its_first_pre_vote_round_a_pre_candidate_grants_only_larger_equal_rivals() -> None:
    """Two followers that hurried at the same moment must not both become candidates: a
    pre-candidate refuses a PreVote for its own next term from a smaller id with the same
    log, and grants a larger id. In the next round it grants everyone again, so that a
    rival it blocks but that it cannot beat is not blocked forever."""
    core, _ = _follower_of_a_dead_leader()
    core.hurry_election()
    drain(core)
    deliver(core, N1, vote(2, "1/1", pre_vote=True))
    deliver(core, N4, vote(2, "1/1", pre_vote=True))
    answers = {
        to: m.granted for to, m in sent_messages(core) if isinstance(m, VoteReply) and m.pre_vote
    }
    assert answers == {N1: False, N4: True}
    deliver(core, N2, vote(2, "2/1", pre_vote=True))  # a longer log: granted as always
    assert [m.granted for m in replies_of(core, VoteReply) if isinstance(m, VoteReply)] == [True]
    while core.role is Role.PRE_CANDIDATE and core.status().term == 1:
        core.tick()  # the round times out; the timer starts the next one
        drain(core)
        if core.role is not Role.PRE_CANDIDATE:
            break
        deliver(core, N1, vote(2, "1/1", pre_vote=True))
        granted = [m.granted for m in replies_of(core, VoteReply) if isinstance(m, VoteReply)]
        if granted == [True]:
            break
    else:
        pytest.fail("the pre-candidate stopped being one")
    assert granted == [True], "the smaller rival is still refused after the first round"


def test_a_pre_candidate_refused_by_a_voter_no_longer_holds_back_a_smaller_rival() -> None:
    """A follower still in the dead leader's lease (it has not seen the refusal yet) refuses
    our PreVote: this round cannot win with its vote, so when that follower campaigns in
    turn, our smaller-id rule must not block it until our timer runs out."""
    core, _ = _follower_of_a_dead_leader()
    core.hurry_election()
    drain(core)
    deliver(core, N1, VoteReply(term=Term(1), granted=False, pre_vote=True))  # N1: in lease
    deliver(core, N1, vote(2, "1/1", pre_vote=True))
    answers = [m.granted for m in replies_of(core, VoteReply) if isinstance(m, VoteReply)]
    assert answers == [True]


def test_pre_votes_ignored_in_the_lease_are_granted_once_the_leader_is_forgotten() -> None:
    """N4 saw the leader die first and asked for a PreVote while this node was still in the
    leader's lease (ignored, no answer). When this node sees the refusal too, the lease is
    over: it grants that PreVote at once instead of starting a rival round."""
    core = make_core(N3, (N1, N2, N3, N4, N5), term=1, log="1/1", commit=1, pre_vote=True)
    deliver(core, N5, Heartbeat(term=Term(1), leader_commit=Index(1)))
    drain(core)
    deliver(core, N4, vote(2, "1/1", pre_vote=True))
    deliver(core, N2, vote(2, "0/0", pre_vote=True))  # a log behind: never granted
    assert replies_of(core, VoteReply) == []
    core.forget_leader()
    assert [(to, m) for to, m in sent_messages(core) if isinstance(m, VoteReply)] == [
        (N4, VoteReply(term=Term(2), granted=True, pre_vote=True))
    ]


# ---------------------------------------------------------------------------- §6.4 read index


def test_reads_of_one_round_are_confirmed_by_one_round_of_beats() -> None:
    """Thesis §6.4: the leader records its commit index as the read index, sends a round
    of heartbeats, and serves the read once a majority acknowledged; reads that arrive
    together share the round."""
    core = make_core()
    elect(core)
    commit = core.commit_index
    core.read_index(1)
    core.read_index(2)
    beats = [(to, m) for to, m in sent_messages(core) if isinstance(m, Heartbeat)]
    assert [to for to, _ in beats] == [N2, N3]
    read_round = beats[0][1].read_round
    assert read_round > 0
    assert {m.read_round for _, m in beats} == {read_round}
    deliver(core, N3, HeartbeatReply(term=core.term, read_round=read_round))
    states = [s for r in drain(core) for s in r.read_states]
    assert [(s.request_id, s.index) for s in states] == [(1, commit), (2, commit)]


def test_read_is_not_confirmed_by_an_acknowledgement_of_an_earlier_round() -> None:
    """Thesis §6.4: only heartbeats sent after the read arrived prove leadership at the
    time of the read."""
    core = make_core()
    elect(core)
    core.read_index(1)
    drain(core)
    core.read_index(2)
    drain(core)
    deliver(core, N2, HeartbeatReply(term=core.term, read_round=1))
    assert [s.request_id for r in drain(core) for s in r.read_states] == [1]
    deliver(core, N2, HeartbeatReply(term=core.term, read_round=2))
    assert [s.request_id for r in drain(core) for s in r.read_states] == [2]


def test_one_read_round_is_out_at_a_time_and_a_lost_round_is_repaired_by_the_next_beat() -> None:
    """Thesis §6.4 with etcd's batching: a read that arrives while a round is out waits for
    that round to be confirmed, then shares the next one with every read that waited. The
    periodic beat carries the current round, so beats lost on the way cannot stall reads."""
    core = make_core(heartbeat_ticks=2)
    elect(core)
    core.read_index(1)
    first = {m.read_round for _, m in sent_messages(core) if isinstance(m, Heartbeat)}
    assert len(first) == 1  # round 1's beats, then lost on the wire
    assert 0 not in first
    core.read_index(2)
    core.read_index(3)
    assert not [m for _, m in sent_messages(core) if isinstance(m, Heartbeat)]
    for _ in range(2):
        core.tick()
    repeated = [m for _, m in sent_messages(core) if isinstance(m, Heartbeat)]
    assert {m.read_round for m in repeated} == first  # the periodic beat, same round
    deliver(core, N2, HeartbeatReply(term=core.term, read_round=repeated[0].read_round))
    readies = drain(core)
    assert [s.request_id for r in readies for s in r.read_states] == [1]
    second = {e.message.read_round for e in sent(readies) if isinstance(e.message, Heartbeat)}
    assert second == {repeated[0].read_round + 1}  # one round for both waiting reads
    deliver(core, N3, HeartbeatReply(term=core.term, read_round=second.pop()))
    assert [s.request_id for r in drain(core) for s in r.read_states] == [2, 3]


def test_read_on_a_new_leader_waits_for_its_no_op_to_commit() -> None:
    """Thesis §6.4 step 1: a new leader does not know its commit index until an entry of
    its term commits; reads wait for the no-op."""
    core = make_core(term=1, log="1/1")
    core.campaign()
    deliver(core, N2, VoteReply(term=Term(2), granted=True))
    core.read_index(7)
    readies = drain(core)
    assert not any(isinstance(e.message, Heartbeat) and e.message.read_round for e in sent(readies))
    deliver(core, N2, AppendReply(term=Term(2), success=True, match_index=Index(2)))
    beats = [m for _, m in sent_messages(core) if isinstance(m, Heartbeat) and m.read_round]
    assert beats
    deliver(core, N2, HeartbeatReply(term=Term(2), read_round=beats[0].read_round))
    states = [s for r in drain(core) for s in r.read_states]
    assert [(s.request_id, s.index) for s in states] == [(7, 2)]


def test_reads_pending_on_a_leader_that_steps_down_are_dropped() -> None:
    """Thesis §6.4: a leader that loses leadership cannot serve its pending reads; the
    shell learns it through `dropped_reads` and retries elsewhere."""
    core = make_core()
    elect(core)
    core.read_index(1)
    drain(core)
    deliver(core, N2, AppendReply(term=Term(core.term + 1), success=False, match_index=Index(0)))
    readies = drain(core)
    assert [i for r in readies for i in r.dropped_reads] == [1]
    assert [s for r in readies for s in r.read_states] == []


def test_read_index_on_a_follower_is_refused() -> None:
    """Thesis §6.4: only the leader serves read index requests."""
    core = make_core()
    with pytest.raises(NotLeaderError):
        core.read_index(1)


# ---------------------------------------------------------------------------- §9.6 PreVote


def test_pre_candidate_keeps_its_term_and_asks_for_the_next_one() -> None:
    """Thesis §9.6: a server first asks whether it would win; it increments its term only
    once a majority says yes."""
    core = make_core(term=1, log="1/1", pre_vote=True)
    for _ in range(2 * ELECTION_TICKS):
        core.tick()
        if core.role is not Role.FOLLOWER:
            break
    assert (core.role, core.term) == (Role.PRE_CANDIDATE, 1)
    readies = drain(core)
    assert all(r.hard_state is None or r.hard_state.term == 1 for r in readies)
    requests = [m for m in (e.message for e in sent(readies)) if isinstance(m, RequestVote)]
    assert requests == [vote(2, "1/1", pre_vote=True)] * 2
    deliver(core, N2, VoteReply(term=Term(2), granted=True, pre_vote=True))
    assert (core.role, core.term) == (Role.CANDIDATE, 2)


def test_pre_vote_changes_neither_term_nor_vote_of_the_voter() -> None:
    """Thesis §9.6: answering a pre-vote changes no persistent state."""
    core = make_core(term=1, voted_for=N3, log="1/1", pre_vote=True)
    deliver(core, N2, vote(2, "1/1", pre_vote=True))
    readies = drain(core)
    assert (core.term, core.status().voted_for) == (1, N3)
    assert all(r.hard_state is None for r in readies)
    replies = [e.message for e in sent(readies)]
    assert replies == [VoteReply(term=Term(2), granted=True, pre_vote=True)]


def test_pre_vote_is_refused_to_a_log_behind() -> None:
    """Thesis §9.6: a pre-vote is granted only if the candidate's log is up to date."""
    core = make_core(term=1, log="1/1 2/1", pre_vote=True)
    deliver(core, N2, vote(2, "1/1", pre_vote=True))
    assert replies_of(core, VoteReply) == [VoteReply(term=Term(1), granted=False, pre_vote=True)]


def test_follower_in_the_leader_lease_ignores_a_pre_vote() -> None:
    """Thesis §9.6: a server grants a pre-vote only if it has "not received heartbeats from
    a valid leader for at least a baseline election timeout"."""
    core = make_core(term=1, log="1/1", pre_vote=True, check_quorum=True)
    deliver(core, N3, Heartbeat(term=Term(1), leader_commit=Index(1)))
    drain(core)
    deliver(core, N2, vote(2, "1/1", pre_vote=True))
    assert replies_of(core, VoteReply) == []


def test_leader_in_its_lease_does_not_grant_a_pre_vote() -> None:
    """Thesis §9.6 (and §4.2.3): a pre-vote is granted only by a server that has not heard
    from a valid leader within an election timeout. A leader with CheckQuorum that heard
    from a majority within the timeout is such a valid leader: granting would let a
    rejoining node with an up-to-date log win PreVote (its own vote plus the leader's in a
    3-node cluster) and depose a healthy leader."""
    core = make_core(term=0, pre_vote=True, check_quorum=True)
    elect(core)  # term 1; n2 acknowledged the no-op, so the leader heard from a quorum
    last = core.status().last_index
    deliver(core, N3, vote(core.term + 1, f"{last}/{core.term}", pre_vote=True))
    granted = [m for m in replies_of(core, VoteReply) if isinstance(m, VoteReply) and m.granted]
    assert granted == [], "a leader in its lease granted a pre-vote"
    assert (core.role, core.term) == (Role.LEADER, 1)


# ---------------------------------------------------------------------------- §6.2 CheckQuorum


def test_leader_without_a_majority_steps_down_within_two_election_timeouts() -> None:
    """Thesis §6.2: "a leader steps down if an election timeout elapses without a
    successful round of heartbeats to a majority of its cluster"."""
    core = make_core(check_quorum=True)
    elect(core)
    ticks = 0
    while core.role is Role.LEADER:
        core.tick()
        drain(core)
        ticks += 1
        assert ticks <= 2 * ELECTION_TICKS
    assert ticks >= ELECTION_TICKS
    assert (core.role, core.leader) == (Role.FOLLOWER, None)


def test_leader_that_hears_from_a_majority_stays_leader() -> None:
    """Thesis §6.2: answered beats keep the leader in office."""
    core = make_core(check_quorum=True)
    elect(core)
    for _ in range(5 * ELECTION_TICKS):
        core.tick()
        for to, message in sent_messages(core):
            if isinstance(message, Heartbeat):
                last = Index(core.status().last_index)
                deliver(core, to, HeartbeatReply(term=core.term, last_log_index=last))
    assert core.role is Role.LEADER


def test_leader_in_its_lease_is_not_deposed_by_a_vote_request() -> None:
    """Thesis §4.2.3: "if a server receives a RequestVote request within the minimum
    election timeout of hearing from a current leader, it does not update its term or
    grant its vote ... if a leader is able to get heartbeats to its cluster, then it will
    not be deposed by larger term numbers"."""
    core = make_core(check_quorum=True)
    elect(core)
    last = core.status().last_index
    deliver(core, N3, vote(core.term + 1, f"{last}/{core.term}"))
    assert (core.role, core.term) == (Role.LEADER, 1)


# ---------------------------------------------------------------------------- persistence


def test_restart_restores_term_vote_and_log_and_reapplies_committed_entries() -> None:
    """Figure 2: currentTerm, votedFor and log[] are persistent; lastApplied is volatile,
    so a restarted node applies its committed entries again from the start."""
    core = make_core(term=3, voted_for=N2, log="1/1 2/3", commit=2)
    assert (core.term, core.status().voted_for, positions(core.log)) == (3, N2, "1/1 2/3")
    assert core.status().applied_index == 0
    assert [e.index for r in drain(core) for e in r.committed] == [1, 2]


def test_ready_is_single_flight() -> None:
    """Only one Ready is in flight; nothing new is handed out before advance
    (docs/conventions.md#the-ready-contract)."""
    core = make_core()
    core.campaign()
    ready = core.ready()
    assert not core.has_ready()
    with pytest.raises(RuntimeError):
        core.ready()
    core.advance(ready)
    with pytest.raises(RuntimeError):
        core.advance(ready)
