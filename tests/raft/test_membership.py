"""Membership in the log, one server at a time (Raft thesis §4.1), through the core's
public API: learners, promotion, removal (of the leader too), one change in flight, the
configuration following its entry through truncation, compaction and snapshots."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.raft.test_paper import (
    ELECTION_TICKS,
    N1,
    N2,
    N3,
    N4,
    append,
    deliver,
    drain,
    elect,
    make_core,
    sent_messages,
)

from naraft.raft import (
    AppendEntries,
    AppendReply,
    Entry,
    Index,
    NodeId,
    RaftConfig,
    RaftCore,
    RequestVote,
    Role,
    SnapshotMeta,
    Term,
    TimeoutNow,
)
from naraft.raft.membership import (
    MEMBERSHIP_MARKER,
    ChangeKind,
    Membership,
    MembershipChange,
    MembershipError,
    decode_change,
    decode_membership,
    encode_membership,
)

ADD_N4 = MembershipChange(ChangeKind.ADD_LEARNER, N4)
PROMOTE_N4 = MembershipChange(ChangeKind.PROMOTE, N4)


def ack_all(core: RaftCore, *peers: NodeId) -> None:
    """Every named peer reports the leader's whole log."""
    last = core.status().last_index
    for peer in peers:
        deliver(core, peer, AppendReply(term=core.term, success=True, match_index=last))
    drain(core)


def leader_with_learner() -> RaftCore:
    core = make_core()
    elect(core)
    core.propose_membership(ADD_N4)
    drain(core)
    return core


def test_a_learner_receives_the_log_but_does_not_count_for_commits() -> None:
    core = make_core()
    elect(core)
    core.propose_membership(ADD_N4)
    sends = sent_messages(core)
    assert core.membership == Membership.of([N1, N2, N3], [N4])
    assert any(to == N4 and isinstance(m, AppendEntries) for to, m in sends)
    core.propose(b'{"op":"x"}')
    drain(core)
    before = core.commit_index
    ack_all(core, N4)
    assert core.commit_index == before, "a learner's ack must not commit anything"
    ack_all(core, N2)
    assert core.commit_index == core.status().last_index


def test_a_promoted_learner_counts_from_the_promotions_append() -> None:
    core = leader_with_learner()
    ack_all(core, N2, N4)  # the add commits
    core.propose_membership(PROMOTE_N4)
    drain(core)
    assert core.membership.voters == {N1, N2, N3, N4}
    core.propose(b'{"op":"x"}')
    drain(core)
    ack_all(core, N2)  # 2 of 4 voters: not a majority any more
    assert core.commit_index < core.status().last_index
    ack_all(core, N4)
    assert core.commit_index == core.status().last_index


def test_one_change_at_a_time() -> None:
    core = leader_with_learner()
    with pytest.raises(MembershipError, match="has not committed yet"):
        core.propose_membership(PROMOTE_N4)
    ack_all(core, N2)
    core.propose_membership(PROMOTE_N4)  # now it may


def test_a_new_leader_changes_nothing_before_its_own_entry_commits() -> None:
    core = make_core()
    core.campaign()
    drain(core)
    from naraft.raft import VoteReply

    deliver(core, N2, VoteReply(term=core.term, granted=True))
    assert core.role is Role.LEADER
    with pytest.raises(MembershipError, match="has not committed an entry of its term"):
        core.propose_membership(ADD_N4)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (MembershipChange(ChangeKind.ADD_LEARNER, N2), "member already"),
        (MembershipChange(ChangeKind.PROMOTE, N4), "not a learner"),
        (MembershipChange(ChangeKind.PROMOTE, N2), "voter already"),
        (MembershipChange(ChangeKind.REMOVE, N4), "not a member"),
        (MembershipChange(ChangeKind.ADD_LEARNER, NodeId("")), "1..256"),
    ],
)
def test_impossible_changes_are_refused(change: MembershipChange, problem: str) -> None:
    core = make_core()
    elect(core)
    with pytest.raises(MembershipError, match=problem):
        core.propose_membership(change)
    assert core.membership == Membership.of([N1, N2, N3])


def test_the_last_voter_cannot_be_removed() -> None:
    core = make_core(voters=(N1,))
    drain(core)
    core.tick()
    drain(core)
    assert core.role is Role.LEADER
    with pytest.raises(MembershipError, match="last voter"):
        core.propose_membership(MembershipChange(ChangeKind.REMOVE, N1))


def test_a_learner_never_campaigns() -> None:
    config = RaftConfig(id=N4, voters=(), joining=True, election_ticks=ELECTION_TICKS)
    learner = RaftCore(config, rng=random.Random(1))
    for _ in range(10 * ELECTION_TICKS):
        learner.tick()
        drain(learner)
    learner.campaign()
    assert learner.role is Role.FOLLOWER
    assert learner.term == 0


def test_a_joining_node_learns_the_configuration_from_the_log() -> None:
    config = RaftConfig(id=N4, voters=(), joining=True, election_ticks=ELECTION_TICKS)
    joining = RaftCore(config, rng=random.Random(1))
    membership = Membership.of([N1, N2, N3], [N4])
    entry = Entry(term=Term(1), index=Index(1), command=encode_membership(membership, ADD_N4))
    deliver(
        joining,
        N1,
        AppendEntries(
            term=Term(1),
            prev_log_index=Index(0),
            prev_log_term=Term(0),
            entries=(entry,),
            leader_commit=Index(1),
        ),
    )
    assert joining.membership == membership
    assert joining.leader == N1


@pytest.mark.parametrize("pre_vote", [True, False])
def test_a_joining_node_votes_only_once_it_knows_a_configuration(pre_vote: bool) -> None:
    """A wiped member that rejoins under its old id remembers no vote: until the leader's
    log tells it the members, it must not vouch for a candidate (a stale one could win a
    term that already has a leader with it; the simulator found this, seed 1 of the
    membership runs)."""
    config = RaftConfig(id=N1, voters=(), joining=True, election_ticks=ELECTION_TICKS)
    joining = RaftCore(config, rng=random.Random(1))
    ask = RequestVote(
        term=Term(4), last_log_index=Index(0), last_log_term=Term(0), pre_vote=pre_vote
    )
    deliver(joining, N2, ask)
    assert [reply.granted for _, reply in sent_messages(joining)] == [False]
    assert joining.status().voted_for is None

    membership = Membership.of([N2, N3, N4], [N1])
    add_n1 = MembershipChange(ChangeKind.ADD_LEARNER, N1)
    entry = Entry(term=Term(5), index=Index(1), command=encode_membership(membership, add_n1))
    append_entries = AppendEntries(
        term=Term(5),
        prev_log_index=Index(0),
        prev_log_term=Term(0),
        entries=(entry,),
        leader_commit=Index(1),
    )
    deliver(joining, N2, append_entries)
    drain(joining)
    assert joining.membership == membership
    for _ in range(2 * ELECTION_TICKS):  # the leader's lease ends: votes are heard again
        joining.tick()
        drain(joining)
    later = RequestVote(
        term=Term(6), last_log_index=Index(1), last_log_term=Term(5), pre_vote=pre_vote
    )
    deliver(joining, N3, later)
    assert [reply.granted for _, reply in sent_messages(joining)] == [True]


def test_a_truncated_configuration_goes_with_its_entry() -> None:
    follower = make_core(node=N2)
    membership = Membership.of([N1, N2, N3], [N4])
    change = Entry(term=Term(1), index=Index(1), command=encode_membership(membership, ADD_N4))
    deliver(
        follower,
        N1,
        AppendEntries(
            term=Term(1),
            prev_log_index=Index(0),
            prev_log_term=Term(0),
            entries=(change,),
            leader_commit=Index(0),
        ),
    )
    assert follower.membership == membership
    deliver(follower, N3, append(2, "0/0", "1/2"))  # a new leader overwrites index 1
    assert follower.membership == Membership.of([N1, N2, N3])


def test_removing_the_leader_hands_over_once_the_removal_commits() -> None:
    core = make_core()
    elect(core)
    core.propose_membership(MembershipChange(ChangeKind.REMOVE, N1))
    drain(core)
    assert core.membership.voters == {N2, N3}
    assert core.role is Role.LEADER  # it manages the cluster until the removal commits
    last = core.status().last_index
    deliver(core, N2, AppendReply(term=core.term, success=True, match_index=last))
    assert core.role is Role.LEADER  # one of the two remaining voters: not yet committed
    deliver(core, N3, AppendReply(term=core.term, success=True, match_index=Index(last - 1)))
    assert core.role is Role.LEADER
    deliver(core, N3, AppendReply(term=core.term, success=True, match_index=last))
    sends = sent_messages(core)
    assert core.role is Role.FOLLOWER
    timeouts = [to for to, m in sends if isinstance(m, TimeoutNow)]
    assert timeouts == [N3]  # the most caught-up voter (a tie goes to the larger id)
    for _ in range(5 * ELECTION_TICKS):
        core.tick()
        drain(core)
    assert core.role is Role.FOLLOWER  # a non-voter never campaigns


def test_compaction_and_snapshots_keep_the_configuration() -> None:
    core = leader_with_learner()
    ack_all(core, N2)
    core.compact(core.applied_index)
    assert core.membership == Membership.of([N1, N2, N3], [N4])
    follower = make_core(node=N3)
    follower.restore_snapshot(
        SnapshotMeta(index=Index(5), term=Term(1)), Membership.of([N1, N3], [N2])
    )
    assert follower.membership == Membership.of([N1, N3], [N2])


def test_proposing_a_membership_entry_as_a_command_is_refused() -> None:
    core = make_core()
    elect(core)
    with pytest.raises(MembershipError):
        core.propose(encode_membership(Membership.of([N1]), ADD_N4))


def test_a_restarted_node_takes_its_configuration_from_its_log() -> None:
    membership = Membership.of([N1, N2, N3, N4])
    log = (
        Entry(
            term=Term(1),
            index=Index(1),
            command=encode_membership(membership, PROMOTE_N4),
        ),
    )
    config = RaftConfig(id=N1, voters=(N1, N2, N3), election_ticks=ELECTION_TICKS)
    core = RaftCore(config, rng=random.Random(1), log=log, membership=Membership.of([N1]))
    assert core.membership == membership


ids = st.text(alphabet="abcdefghij0123456789:.", min_size=1, max_size=20)


@given(
    voters=st.sets(ids, min_size=1, max_size=6),
    learners=st.sets(ids, max_size=4),
    node=ids,
)
def test_membership_entries_round_trip(voters: set[str], learners: set[str], node: str) -> None:
    membership = Membership.of(voters, learners - voters)
    change = MembershipChange(ChangeKind.ADD_LEARNER, NodeId(node))
    command = encode_membership(membership, change)
    assert decode_membership(command) == membership
    assert decode_change(command) == change


@given(st.binary(max_size=200))
def test_garbage_after_the_marker_is_no_configuration(tail: bytes) -> None:
    decoded = decode_membership(MEMBERSHIP_MARKER + tail)
    assert decoded is None or decoded.voters  # never raises, never an empty configuration
    assert decode_membership(b'{"op":"kv.put"}') is None
