"""Membership for real processes, piece by piece: the one member view and the verifiers
reading it, the peer client following it, the join handshake, the start-up rules on
persisted members, cluster.conf rewriting, the `--join` setting, and the members API on a
node in-process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from naraft.config import read_cluster_conf, write_cluster_conf
from naraft.config_sources import ConfigError, build_config
from naraft.errors import InvalidArgumentError
from naraft.machine import MEMBERSHIP_KEY, encode_membership_record
from naraft.node import (
    StartupError,
    _MembersFollower,
    _Opened,
    persisted_members,
    run_node,
    settle_members,
)
from naraft.raft import NO_SNAPSHOT, Entry, HardState, Index, NodeId, Term
from naraft.raft.membership import ChangeKind, Membership, MembershipChange, encode_membership
from naraft.state.datums import Datum, DatumChanges
from naraft.storage.base import StoredState
from naraft.transport import PeerClient
from naraft.transport import join as join_protocol
from naraft.transport.members import MemberView
from naraft.transport.signing import PeerSigner, PeerVerifier, Rejection, SignatureError

SECRET = b"a-cluster-secret-of-some-length"
SECRET_ENV = {"NARAFT_CLUSTER_SECRET": SECRET.decode()}
A, B, C, D = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", "127.0.0.1:7004"


# ---------------------------------------------------------------- the member view


def test_a_verifier_reads_the_view_as_members_change() -> None:
    view = MemberView([A, B])
    heard: list[tuple[frozenset[str], frozenset[str]]] = []
    view.subscribe(lambda added, removed: heard.append((added, removed)))
    verifier = PeerVerifier(SECRET, cluster_id="c", self_id=A, members=view)
    signer = PeerSigner(SECRET, cluster_id="c", self_id=D)

    def claim() -> object:
        return verifier.claim("POST", "/p", signer.headers("POST", "/p", A, b""))

    with pytest.raises(SignatureError) as refused:
        claim()
    assert refused.value.reason is Rejection.UNKNOWN_SENDER
    assert view.update([A, B, D])
    assert claim() is not None  # the new member is heard at once
    assert not view.update([D, B, A])  # the same set: no change, no event
    assert view.update([A, B])
    with pytest.raises(SignatureError):
        claim()
    assert heard == [(frozenset({D}), frozenset()), (frozenset(), frozenset({D}))]


def test_a_plain_collection_is_copied_not_followed() -> None:
    members = {A, B}
    verifier = PeerVerifier(SECRET, cluster_id="c", self_id=A, members=members)
    members.add(D)
    signer = PeerSigner(SECRET, cluster_id="c", self_id=D)
    with pytest.raises(SignatureError):
        verifier.claim("POST", "/p", signer.headers("POST", "/p", A, b""))


async def test_the_peer_client_adds_and_removes_links() -> None:
    client = PeerClient(NodeId(A), {NodeId(B): f"http://{B}"}, SECRET, timeout_seconds=1.0)
    client.add_peer(NodeId(D), f"http://{D}")
    client.add_peer(NodeId(D), f"http://{D}")  # known: left as it is
    assert client.peers == {NodeId(B), NodeId(D)}
    with pytest.raises(ValueError, match="must not include this node"):
        client.add_peer(NodeId(A), f"http://{A}")
    with pytest.raises(ValueError, match="base URL"):
        client.add_peer(NodeId(C), "ftp://x")
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0)
    client.add_peer(NodeId(C), f"http://{C}")  # while running: its senders start
    client.remove_peer(NodeId(B))
    client.remove_peer(NodeId(B))  # unknown: nothing to do
    assert client.peers == {NodeId(C), NodeId(D)}
    await asyncio.sleep(0.01)
    assert not task.done()  # a removed peer's cancelled senders do not end the client
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ---------------------------------------------------------------- the join handshake


def test_the_join_handshake_round_trip() -> None:
    body, asked = join_protocol.make_request(SECRET, D, now_ms=1_000_000)
    taken = join_protocol.check_request(SECRET, body, now_ms=1_000_500)
    assert taken == asked
    answer = join_protocol.JoinAnswer("c1", (A, B, C), (), A)
    raw = join_protocol.make_answer(SECRET, taken, answer)
    assert join_protocol.check_answer(SECRET, asked, raw) == answer
    assert answer.members == (A, B, C)


def test_the_join_handshake_refuses_another_secret_a_stale_request_and_a_forged_answer() -> None:
    body, asked = join_protocol.make_request(b"another-secret-of-some-length", D, now_ms=0)
    with pytest.raises(join_protocol.JoinError, match="secret"):
        join_protocol.check_request(SECRET, body, now_ms=0)
    body, asked = join_protocol.make_request(SECRET, D, now_ms=0)
    with pytest.raises(join_protocol.JoinError, match="from now"):
        join_protocol.check_request(SECRET, body, now_ms=join_protocol.JOIN_WINDOW_MS + 1)
    with pytest.raises(join_protocol.JoinError, match="not JSON"):
        join_protocol.check_request(SECRET, b"{", now_ms=0)
    raw = join_protocol.make_answer(SECRET, asked, join_protocol.JoinAnswer("c1", (A,), (), A))
    forged = raw.replace(b'"c1"', b'"c2"')
    with pytest.raises(join_protocol.JoinError, match="not signed"):
        join_protocol.check_answer(SECRET, asked, forged)
    _, other = join_protocol.make_request(SECRET, D, now_ms=0)
    with pytest.raises(join_protocol.JoinError, match="not signed"):  # made for another request
        join_protocol.check_answer(SECRET, other, raw)


# ---------------------------------------------------------------- persisted members at start


def entry(index: int, membership: Membership, change: MembershipChange) -> Entry:
    return Entry(index=Index(index), term=Term(1), command=encode_membership(membership, change))


def opened(*, persisted: Membership | None, recorded: str | None = "recorded-id") -> _Opened:
    return _Opened(
        store=None,  # type: ignore[arg-type]  # settle_members never touches the store
        state=_state(entries=(), datums={}),
        recorded_cluster_id=recorded,
        persisted=persisted,
    )


def clustered(tmp_path: Path, peers: tuple[str, ...]) -> Any:
    return build_config({"id": A, "data-dir": tmp_path, "peers": peers}, SECRET_ENV)


def test_persisted_members_win_over_the_flags(tmp_path: Path) -> None:
    four = Membership.of([A, B, C, D])
    stale = clustered(tmp_path, (A, B, C))
    with pytest.raises(StartupError, match="disagrees with the members") as refused:
        settle_members(stale, opened(persisted=four))
    line = str(refused.value)
    assert "\n" not in line
    assert f"--peers {','.join(sorted([A, B, C, D]))}" in line
    assert "naraft member add" in line
    lone = build_config({"id": A, "data-dir": tmp_path, "standalone": True}, {})
    with pytest.raises(StartupError, match="not --standalone") as refused:
        settle_members(lone, opened(persisted=four))
    assert "naraft member remove" in str(refused.value)
    agreed = settle_members(clustered(tmp_path, (D, C, B, A)), opened(persisted=four))
    assert agreed.cluster_id == "recorded-id"  # not recomputed from the new members
    # no change ever ran: the flags stand, and the store checks the computed id
    fresh = clustered(tmp_path, (A, B, C))
    assert settle_members(fresh, opened(persisted=None)) is fresh


def test_standalone_on_a_clustered_directory_without_changes_is_refused(tmp_path: Path) -> None:
    lone = build_config({"id": A, "data-dir": tmp_path, "standalone": True}, {})
    with pytest.raises(StartupError, match="holds the data of cluster recorded-id"):
        settle_members(lone, opened(persisted=None))
    assert settle_members(lone, opened(persisted=None, recorded=lone.cluster_id)) is lone


def test_a_joined_node_restarts_from_its_persisted_members(tmp_path: Path) -> None:
    joining = build_config({"id": D, "data-dir": tmp_path, "join": f"http://{A}"}, SECRET_ENV)
    settled = settle_members(joining, opened(persisted=Membership.of([A, B], [D])))
    assert settled.peers == tuple(sorted([A, B, D]))
    assert settled.cluster_id == "recorded-id"
    assert settled.raft_config.joining
    assert settled.raft_config.voters == ()


def test_persisted_members_are_the_newest_entry_else_the_applied_record() -> None:
    three, four = Membership.of([A, B, C]), Membership.of([A, B, C], [D])
    record = {MEMBERSHIP_KEY: Datum(encode_membership_record(three), 5)}
    state = _state(entries=(), datums=record)
    assert persisted_members(state) == three
    state = _state(
        entries=(entry(6, four, MembershipChange(ChangeKind.ADD_LEARNER, NodeId(D))),),
        datums=record,
    )
    assert persisted_members(state) == four
    assert persisted_members(_state(entries=(), datums={})) is None


def _state(*, entries: tuple[Entry, ...], datums: dict[str, Datum]) -> StoredState:
    return StoredState(
        hard_state=HardState(),
        snapshot=NO_SNAPSHOT,
        entries=entries,
        applied_index=Index(0),
        datums=datums,
        node_id=None,
    )


# ---------------------------------------------------------------- config


def test_join_is_one_of_the_member_sources_and_checked(tmp_path: Path) -> None:
    config = build_config({"id": D, "data-dir": tmp_path, "join": f"http://{A}"}, SECRET_ENV)
    assert config.peers == ()
    assert not config.standalone
    assert config.raft_config.joining
    with pytest.raises(ConfigError, match="exactly one of --peers, --cluster-conf"):
        build_config(
            {"id": D, "data-dir": tmp_path, "join": f"http://{A}", "peers": (A, D)}, SECRET_ENV
        )
    with pytest.raises(InvalidArgumentError, match="join"):
        build_config({"id": D, "data-dir": tmp_path, "join": "ftp://x"}, SECRET_ENV)
    with pytest.raises(InvalidArgumentError, match="needs a cluster secret"):
        build_config({"id": D, "data-dir": tmp_path, "join": f"http://{A}"}, {})


def test_cluster_conf_is_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(f"# ours\n{A}\n{B}\n")
    path.chmod(0o640)
    write_cluster_conf(path, [D, A, B])
    assert read_cluster_conf(path) == (A, B, D)
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.conf"]  # no temporary left
    config = build_config({"id": A, "data-dir": tmp_path, "cluster-conf": path}, SECRET_ENV)
    assert config.cluster_conf == path


# ---------------------------------------------------------------- the members API in-process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_members_api_on_a_standalone_node(tmp_path: Path) -> None:
    node_id = f"127.0.0.1:{free_port()}"
    config = build_config(
        {"id": node_id, "data-dir": tmp_path, "standalone": True, "tick-ms": 20}, {}
    )
    ready = asyncio.Event()
    task = asyncio.create_task(run_node(config, ready=ready))
    base = f"http://{node_id}/naraft/v1/members"
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    async with session.get(base) as answer:
                        listed = await answer.json()
                    if listed["leader"] == node_id:
                        break
                    await asyncio.sleep(0.02)
            (row,) = listed["members"]
            assert (row["id"], row["role"], row["leader"]) == (node_id, "voter", True)
            for body, field in (
                (b"[", "body"),
                (b'{"id": "127.0.0.1:1"}', "action"),
                (b'{"id": "nope", "action": "add"}', "id"),
                (b'{"id": "127.0.0.1:1", "action": "grow"}', "action"),
                (b'{"id": "127.0.0.1:1", "action": "add", "x": 1}', "x"),
            ):
                async with session.post(base, data=body) as answer:
                    assert answer.status == 400, await answer.text()
                    assert (await answer.json())["field"] == field
            change = b'{"id": "127.0.0.1:1", "action": "add"}'
            async with session.post(base, data=change) as answer:
                assert answer.status == 409
                assert "standalone" in (await answer.json())["error"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_member_being_removed_is_heard_until_its_removal_commits() -> None:
    view = MemberView([A, B, C])
    follow = _MembersFollower(view, Membership.of([A, B, C]), view.members)
    follow.on_membership(Membership.of([A, B]))  # the removal of C is appended, not committed
    assert C in view
    follow.on_applied(
        DatumChanges(
            puts={MEMBERSHIP_KEY: Datum(encode_membership_record(Membership.of([A, B])), 9)},
            deletes=frozenset(),
        ),
        Index(9),
    )
    assert view.members == {A, B}  # committed: C is no longer heard
    follow.on_applied(DatumChanges(puts={}, deletes=frozenset()), Index(10))  # other writes
    assert view.members == {A, B}
    follow.on_membership(Membership.of([A, B], [D]))  # a learner is heard from its append
    assert view.members == {A, B, D}
    follow.on_membership(Membership(frozenset()))  # a joining node's empty start: kept
    assert view.members == {A, B, D}
