"""Stable one-line renderings of the core's values, for scenario files.

A rendering is part of every scenario's expected output: change one only together with the
`--rewrite` diff of every scenario file, reviewed like code (docs/conventions.md#tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from naraft.raft import (
    AppendEntries,
    AppendReply,
    Entry,
    Envelope,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    RequestVote,
    Role,
    Status,
    TimeoutNow,
    VoteReply,
)

MIN_RUN_TO_SHORTEN: Final = 4


def describe_position(index: int, term: int) -> str:
    """A log position as `index/term`, the notation of every scenario."""
    return f"{index}/{term}"


def describe_entries(entries: Iterable[Entry]) -> str:
    """Entries as `1/1 2/1 3/2`; a run of four or more entries of one term is shortened to
    `4..20/2`. Commands are left out (see `describe_entry`)."""
    runs: list[list[Entry]] = []
    for entry in entries:
        if runs and runs[-1][-1].term == entry.term:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    words: list[str] = []
    for run in runs:
        if len(run) >= MIN_RUN_TO_SHORTEN:
            words.append(f"{run[0].index}..{describe_position(run[-1].index, run[-1].term)}")
        else:
            words.extend(describe_position(entry.index, entry.term) for entry in run)
    return " ".join(words)


def describe_entry(entry: Entry) -> str:
    """One entry with its command: `2/1 put-x`, or `1/1 no-op` for an empty command."""
    command = entry.command.decode(errors="replace") if entry.command else "no-op"
    return f"{describe_position(entry.index, entry.term)} {command}"


def describe_message(message: Message) -> str:
    """The paper's RPC, shortened: `Vote term=1 last=0/0`, `Append term=1 prev=0/0 ...`."""
    match message:
        case RequestVote():
            kind = "PreVote" if message.pre_vote else "Vote"
            last = describe_position(message.last_log_index, message.last_log_term)
            transfer = " transfer" if message.transfer else ""
            return f"{kind} term={message.term} last={last}{transfer}"
        case VoteReply():
            kind = "PreVoteReply" if message.pre_vote else "VoteReply"
            verdict = "granted" if message.granted else "rejected"
            return f"{kind} term={message.term} {verdict}"
        case AppendEntries():
            prev = describe_position(message.prev_log_index, message.prev_log_term)
            quiet = " quiet" if message.quiet else ""
            return (
                f"Append term={message.term} prev={prev} commit={message.leader_commit}"
                f" [{describe_entries(message.entries)}]{quiet}"
            )
        case AppendReply() if message.success:
            return f"AppendReply term={message.term} match={message.match_index}"
        case AppendReply():
            hint = describe_position(message.hint_index, message.hint_term)
            return f"AppendReply term={message.term} reject={message.match_index} hint={hint}"
        case Heartbeat():
            read = f" read={message.read_round}" if message.read_round else ""
            quiet = " quiet" if message.quiet else ""
            return f"Heartbeat term={message.term} commit={message.leader_commit}{read}{quiet}"
        case HeartbeatReply():
            read = f" read={message.read_round}" if message.read_round else ""
            return f"HeartbeatReply term={message.term} last={message.last_log_index}{read}"
        case InstallSnapshot():
            snapshot = describe_position(message.index, message.snapshot_term)
            return f"InstallSnapshot term={message.term} snapshot={snapshot}"
        case TimeoutNow():
            return f"TimeoutNow term={message.term}"


def describe_envelope(envelope: Envelope) -> str:
    """`n1->n2 Vote term=1 last=0/0`."""
    return f"{envelope.sender}->{envelope.recipient} {describe_message(envelope.message)}"


def describe_role(node: str, role: Role, term: int, leader: str | None) -> str:
    """A role change, as the scenarios print it (indented by the caller)."""
    return f"{node} is {role.value} at term {term}, leader={leader}"


def describe_status(status: Status, log: Iterable[Entry]) -> str:
    """Two lines: the node's view of the cluster, then its log (`log: 1/1 2/1 3/2`)."""
    head = (
        f"{status.id} {status.role.value} term={status.term} vote={status.voted_for}"
        f" leader={status.leader} commit={status.commit_index}"
        f" applied={status.applied_index} last={status.last_index}"
    )
    snapshot = ""
    if status.snapshot.index:
        snapshot = f" snapshot={describe_position(status.snapshot.index, status.snapshot.term)}"
    return f"{head}{snapshot}\nlog: {describe_entries(log) or '(empty)'}"
