"""AppendEntries are capped in bytes below what a receiver takes (etcd's MaxSizePerMsg):
`max_append_bytes` of commands per message, but always at least one entry, so a command of
any size the API accepts still replicates."""

from __future__ import annotations

from tests.raft.test_paper import N2, elect, make_core, sent_messages

from naraft.raft import AppendEntries, Message


def appends_to_n2(messages: list[tuple[str, Message]]) -> list[AppendEntries]:
    return [m for to, m in messages if to == N2 and isinstance(m, AppendEntries) and m.entries]


def test_an_append_carries_at_most_max_append_bytes_of_commands() -> None:
    core = make_core(max_append_bytes=1000, max_entries_per_append=64)
    elect(core)
    for i in range(5):
        core.propose(bytes([i]) * 400)
    appends = appends_to_n2(sent_messages(core))
    # 2 x (400 + 16 bytes of overhead) fit in 1000; a third would not.
    assert [len(a.entries) for a in appends] == [2, 2, 1]
    assert [e.command[0] for a in appends for e in a.entries] == [0, 1, 2, 3, 4]
    for a in appends:
        assert sum(len(e.command) for e in a.entries) <= 1000


def test_one_entry_larger_than_the_cap_still_travels_alone() -> None:
    core = make_core(max_append_bytes=1000)
    elect(core)
    core.propose(b"x" * 5000)
    core.propose(b"y" * 10)
    appends = appends_to_n2(sent_messages(core))
    assert [[len(e.command) for e in a.entries] for a in appends] == [[5000], [10]]
