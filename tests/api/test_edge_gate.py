"""The connection gate's bookkeeping, without sockets: who is admitted, who is refused,
who is evicted to make room."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from naraft.api.edge import UNCLASSIFIED_RESERVE, ConnectionGate, EdgeLimits, one_line


class FakeConnection:
    def __init__(self) -> None:
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def gate(max_clients: int = 2, max_peers: int = 2) -> ConnectionGate:
    limits = EdgeLimits(
        header_timeout_seconds=1, body_timeout_seconds=1, max_clients=max_clients,
        max_peers=max_peers,
    )  # fmt: skip
    return ConnectionGate(limits)


def admitted(g: ConnectionGate, count: int) -> list[Any]:
    connections = [FakeConnection() for _ in range(count)]
    for connection in connections:
        g.admit(connection)  # type: ignore[arg-type]
    return connections


def test_clients_beyond_the_cap_are_refused_at_their_first_request() -> None:
    g = gate(max_clients=2)
    first, second, third = admitted(g, 3)
    assert g.classify(first, peer=False)
    assert g.classify(second, peer=False)
    assert not g.classify(third, peer=False)
    assert g.classify(first, peer=False)  # its later requests are not judged again


def test_peers_have_their_own_cap() -> None:
    g = gate(max_clients=1, max_peers=2)
    client, *peers = admitted(g, 4)
    assert g.classify(client, peer=False)
    assert [g.classify(p, peer=True) for p in peers] == [True, True, False]


def test_the_peer_cap_can_follow_the_members() -> None:
    """Raised, it admits more peers; lowered, it refuses new ones and keeps the open ones."""
    g = gate(max_peers=1)
    first, second, third, fourth = admitted(g, 4)
    assert g.classify(first, peer=True)
    assert not g.classify(second, peer=True)
    g.set_max_peers(2)
    assert g.classify(third, peer=True)
    g.set_max_peers(1)
    assert not g.classify(fourth, peer=True)
    assert g.classify(first, peer=True)  # open connections are not judged again


def test_a_node_resizes_its_peer_cap_when_members_change() -> None:
    from naraft.config import NodeConfig
    from naraft.node import follow_peer_cap
    from naraft.transport.members import MemberView

    config = NodeConfig(
        id="a:1", peers=("a:1",), data_dir=Path("unused"), secret=None, listen_host="a",
        listen_port=1,
    )  # fmt: skip
    members = MemberView(["a:1", "b:1", "c:1"])
    g = gate(max_clients=1000, max_peers=1)
    follow_peer_cap(g, config, members)
    per_member = config.http.peer_connections_per_member
    connections = admitted(g, per_member * 9 + 1)
    assert not any(c.evicted for c in connections)
    accepted = sum(g.classify(c, peer=True) for c in connections[: per_member * 5 + 1])
    assert accepted == per_member * 5  # 3 members, room for 2 more
    members.update(["a:1", "b:1", "c:1", "d:1", "e:1", "f:1", "g:1"])
    accepted = sum(g.classify(c, peer=True) for c in connections[per_member * 5 + 1 :])
    assert accepted == per_member * 4  # 7 members: 9 x per_member in all


def test_a_released_slot_is_free_again() -> None:
    g = gate(max_clients=1)
    first, second = admitted(g, 2)
    assert g.classify(first, peer=False)
    g.release(first)
    assert g.classify(second, peer=False)


def test_when_every_slot_is_taken_the_oldest_silent_connection_makes_room() -> None:
    g = gate(max_clients=2)
    clients = admitted(g, 2)
    for client in clients:
        assert g.classify(client, peer=False)
    silent = admitted(g, UNCLASSIFIED_RESERVE)
    newcomer = FakeConnection()
    g.admit(newcomer)  # type: ignore[arg-type]
    assert silent[0].evicted
    assert not any(s.evicted for s in silent[1:])
    assert not any(c.evicted for c in clients)
    assert g.classify(newcomer, peer=True)  # e.g. a peer reconnecting


def test_a_flood_of_silent_connections_holds_at_most_the_cap_plus_the_reserve() -> None:
    g = gate(max_clients=3)
    flood = admitted(g, 1000)
    assert sum(not c.evicted for c in flood) == 3 + UNCLASSIFIED_RESERVE
    assert not any(c.evicted for c in flood[-(3 + UNCLASSIFIED_RESERVE) :])  # the newest stay


def test_log_reasons_are_one_bounded_line() -> None:
    assert one_line("Invalid method:\n\n  b'X'\n    ^") == "Invalid method: b'X' ^"
    assert len(one_line("x" * 10_000)) == 203
