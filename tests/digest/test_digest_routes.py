"""The digest routes over real loopback sockets: every request signed for this node, fresh
and once; a captured "create session" cannot make the leader copy its state again; a node
without peers serves no digest route at all."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

from naraft.digest.checksum import StateChecksum
from naraft.digest.protocol import CHECKSUM_PATH, DATUMS_PATH, DIGEST_PATH
from naraft.digest.server import ChecksumReport, DigestServer
from naraft.raft import Index, NodeId, SnapshotMeta, Term
from naraft.state.datums import DatumTable
from naraft.transport import PeerSigner, PeerVerifier

SECRET = b"digest-test-secret-of-some-length"
CLUSTER = "cluster-d"
LEADER = NodeId("127.0.0.1:1")
FOLLOWER = NodeId("127.0.0.1:2")


class Leading:
    is_leader = True
    leader: NodeId | None = LEADER
    applied = SnapshotMeta(index=Index(7), term=Term(2))


def make_server(*, has_peers: bool = True) -> tuple[DigestServer, list[ChecksumReport]]:
    datums = DatumTable()
    datums.put("naraft.kv.a", b"1", 3)
    reports: list[ChecksumReport] = []
    server = DigestServer(
        replica=Leading(),
        datums=datums,
        checksum=StateChecksum(datums.items(), 7),
        verifier=PeerVerifier(SECRET, cluster_id=CLUSTER, self_id=LEADER, members=[FOLLOWER]),
        has_peers=has_peers,
        on_checksum=reports.append,
    )
    return server, reports


@contextlib.asynccontextmanager
async def serving(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def follower_signer(secret: bytes = SECRET, cluster: str = CLUSTER) -> PeerSigner:
    return PeerSigner(secret, cluster_id=cluster, self_id=FOLLOWER)


async def test_a_captured_create_session_request_cannot_be_replayed() -> None:
    server, _ = make_server()
    signer = follower_signer()
    body = orjson.dumps({})
    headers = signer.headers("POST", DIGEST_PATH, LEADER, body)
    async with serving(server.routes()) as url, aiohttp.ClientSession() as session:
        async with session.post(url + DIGEST_PATH, data=body, headers=headers) as answer:
            assert answer.status == 200
            created = await answer.json()
        async with session.post(url + DIGEST_PATH, data=body, headers=headers) as answer:
            assert answer.status == 403
            assert "replayed" in (await answer.json())["error"]
        assert server.sessions_created == 1
        # A fresh signature works, and reads the chunk of the session it made.
        chunk = f"{DIGEST_PATH}/{created['session']}/0"
        async with session.get(
            url + chunk, headers=signer.headers("GET", chunk, LEADER, b"")
        ) as answer:
            assert answer.status == 200


async def test_digest_requests_not_signed_for_this_leader_now_are_refused() -> None:
    server, reports = make_server()
    report = orjson.dumps({"leader": LEADER, "term": 2, "index": 7, "checksum": 1})
    datums = orjson.dumps({"session": "x", "keys": []})
    stranger = follower_signer(b"another-secret-of-some-length")
    elsewhere = follower_signer(cluster="cluster-e")
    cases = [
        ({}, DIGEST_PATH, b"{}"),  # unsigned
        (stranger.headers("POST", DIGEST_PATH, LEADER, b"{}"), DIGEST_PATH, b"{}"),
        (elsewhere.headers("POST", DIGEST_PATH, LEADER, b"{}"), DIGEST_PATH, b"{}"),
        # meant for another member
        (follower_signer().headers("POST", DIGEST_PATH, FOLLOWER, b"{}"), DIGEST_PATH, b"{}"),
        # signed for another route and body
        (follower_signer().headers("POST", DATUMS_PATH, LEADER, datums), CHECKSUM_PATH, report),
    ]
    async with serving(server.routes()) as url, aiohttp.ClientSession() as session:
        for headers, path, body in cases:
            async with session.post(url + path, data=body, headers=headers) as answer:
                assert answer.status == 403, (path, headers)
    assert server.sessions_created == 0
    assert reports == []


async def test_a_node_without_peers_serves_no_digest_route() -> None:
    server, _ = make_server(has_peers=False)
    assert server.routes() == []
    async with serving(server.routes()) as url, aiohttp.ClientSession() as session:
        body = b"{}"
        headers = follower_signer().headers("POST", DIGEST_PATH, LEADER, body)
        async with session.post(url + DIGEST_PATH, data=body, headers=headers) as answer:
            assert answer.status == 404
    assert server.sessions_created == 0
