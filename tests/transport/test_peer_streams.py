"""Peer streams over real loopback sockets: what a frame must be to be taken, and how a
sender notices a stream that broke, stalled or was closed by a restarting peer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from tests.transport.conftest import (
    N1,
    N2,
    SECRET,
    WAIT_SECONDS,
    Inbox,
    RecordingInboundMetrics,
    RecordingPeerMetrics,
    Signal,
    free_port,
    heartbeats,
    running,
    serve,
)

from naraft.transport import (
    STREAM_PATH,
    Lane,
    PeerClient,
    PeerSigner,
    Rejection,
    RpcOutcome,
    StreamEnd,
    default_cluster_id,
    encode_batch,
    peer_routes,
)
from naraft.transport.frames import MAX_FRAME_HEADER, decode_frame, encode_frame, stream_path
from naraft.transport.members import MemberView
from naraft.transport.version import PROTOCOL_HEADER

PATH = stream_path("control")


def signer(sender: str = N1, secret: bytes = SECRET) -> PeerSigner:
    return PeerSigner(secret, cluster_id=default_cluster_id(SECRET), self_id=sender)


@contextlib.asynccontextmanager
async def raw_stream(
    url: str, member: PeerSigner, *, upgrade_secret: bool = True
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A stream opened by hand, its upgrade signed by `member` (or not signed at all)."""
    headers = member.headers("GET", PATH, N2, b"") if upgrade_secret else {}
    headers[PROTOCOL_HEADER] = "1..1"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + PATH, headers=headers) as stream,
    ):
        yield stream


async def closed(stream: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The close the peer sends (bounded)."""
    async with asyncio.timeout(WAIT_SECONDS):
        return await stream.receive()


async def test_a_frame_round_trips_its_encoding_signature_and_batch() -> None:
    wire = encode_batch(heartbeats(N1, N2, 2))
    encoding, fields, body = decode_frame(encode_frame(signer(), PATH, N2, wire, "gzip"))
    assert (encoding, body) == ("gzip", wire)
    assert set(fields) == {"X-Naraft-Time", "X-Naraft-Nonce", "X-Naraft-Signature"}
    unsigned = PeerSigner(None, cluster_id="c", self_id=N1)
    assert decode_frame(encode_frame(unsigned, PATH, N2, wire, None)) == ("identity", {}, wire)


async def test_a_forged_frame_closes_the_stream_and_delivers_nothing() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes) as url, raw_stream(url, signer()) as stream:
        good = encode_batch(heartbeats(N1, N2, 1))
        await stream.send_bytes(encode_frame(signer(), PATH, N2, good, None))
        await inbox.wait_for_count(1)
        forger = signer(secret=b"not-the-cluster-secret")
        await stream.send_bytes(encode_frame(forger, PATH, N2, good, None))
        message = await closed(stream)
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.POLICY_VIOLATION
    assert message.extra.startswith("bad_signature")
    assert len(inbox.envelopes) == 1
    assert inbound.rejections == {Rejection.BAD_SIGNATURE: 1}


async def test_the_end_of_a_stream_names_its_sender_and_a_refused_upgrade_names_nobody() -> None:
    """`on_stream_end` (the leader watch's first sign of a dead leader) hears the sender of
    an admitted stream when it ends, whoever closed it; a refused upgrade was never a stream."""
    ended: list[str] = []
    signal = Signal()

    def on_end(sender: str) -> None:
        ended.append(sender)
        signal.notify()

    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, on_stream_end=on_end)
    async with serve(routes) as url:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            async with raw_stream(url, signer("n9")):
                pass
        async with raw_stream(url, signer()) as stream:
            await stream.send_bytes(
                encode_frame(signer(), PATH, N2, encode_batch(heartbeats(N1, N2, 1)), None)
            )
            await inbox.wait_for_count(1)
            assert ended == []  # open: nothing ended yet
        await signal.wait_until(lambda: ended != [], "the stream's end")
    assert ended == [N1]


async def test_a_frame_sent_twice_is_taken_once() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes) as url, raw_stream(url, signer()) as stream:
        frame = encode_frame(signer(), PATH, N2, encode_batch(heartbeats(N1, N2, 1)), None)
        await stream.send_bytes(frame)
        await stream.send_bytes(frame)
        message = await closed(stream)
    assert message.extra.startswith("replayed")
    assert len(inbox.envelopes) == 1


@pytest.mark.parametrize("case", ["unsigned", "stranger"])
async def test_an_upgrade_that_is_not_a_members_is_refused_403(case: str) -> None:
    inbound = RecordingInboundMetrics()
    routes = peer_routes(Inbox().deliver, SECRET, [N1], inbound, self_id=N2)
    member = signer("n9") if case == "stranger" else signer()
    async with serve(routes) as url:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with raw_stream(url, member, upgrade_secret=case != "unsigned"):
                pass
    assert refused.value.status == 403
    expected = Rejection.UNKNOWN_SENDER if case == "stranger" else Rejection.MISSING_SIGNATURE
    assert inbound.rejections == {expected: 1}


async def test_a_member_removed_while_its_stream_is_open_is_refused_at_its_next_frame() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    members = MemberView([N1, N2])
    routes = peer_routes(inbox.deliver, SECRET, members, inbound, self_id=N2)
    async with serve(routes) as url, raw_stream(url, signer()) as stream:
        wire = encode_batch(heartbeats(N1, N2, 1))
        await stream.send_bytes(encode_frame(signer(), PATH, N2, wire, None))
        await inbox.wait_for_count(1)
        members.update([N2])
        await stream.send_bytes(encode_frame(signer(), PATH, N2, wire, None))
        message = await closed(stream)
    assert message.extra.startswith("unknown_sender")
    assert len(inbox.envelopes) == 1


async def test_a_frame_over_the_announced_limit_closes_the_stream_1009() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2, max_body_bytes=10_000)
    async with serve(routes) as url, raw_stream(url, signer()) as stream:
        limit = int(stream._response.headers[MAX_FRAME_HEADER])
        await stream.send_bytes(b"\x00" * (limit + 1))
        message = await closed(stream)
    assert stream.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, message
    assert inbound.rejections == {Rejection.TOO_LARGE: 1}
    assert inbox.envelopes == []


async def test_a_text_frame_closes_the_stream() -> None:
    inbound = RecordingInboundMetrics()
    routes = peer_routes(Inbox().deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes) as url, raw_stream(url, signer()) as stream:
        await stream.send_str("hello")
        await closed(stream)
    assert stream.close_code == aiohttp.WSCloseCode.UNSUPPORTED_DATA
    assert inbound.rejections == {Rejection.UNDECODABLE: 1}


async def test_the_sender_reconnects_to_a_restarted_peer_whose_shutdown_closed_the_stream() -> None:
    """A peer's shutdown closes its streams (it does not wait for them to end), and the
    sender's next batch opens a new one."""
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    port = free_port()
    client = PeerClient(N1, {N2: f"http://127.0.0.1:{port}"}, SECRET, timeout_seconds=WAIT_SECONDS,
                        metrics=metrics)  # fmt: skip
    first, second = heartbeats(N1, N2, 2)
    async with running(client):
        async with serve(peer_routes(inbox.deliver, SECRET, [N1], self_id=N2), port=port):
            client.send(first)
            await inbox.wait_for_count(1)
        closed_by_peer = (N2, Lane.CONTROL, StreamEnd.CLOSED)
        await metrics.signal.wait_until(lambda: closed_by_peer in metrics.streams, "the close")
        async with serve(peer_routes(inbox.deliver, SECRET, [N1], self_id=N2), port=port):
            client.send(second)
            await inbox.wait_for_count(2)
    assert inbox.envelopes == [first, second]
    assert metrics.rpcs == [(N2, "messages", RpcOutcome.OK)] * 2
    assert metrics.reachability_changes == []
    opened = (N2, Lane.CONTROL, None)
    assert metrics.streams[:3] == [opened, closed_by_peer, opened]


async def test_a_stream_whose_peer_stops_answering_pings_makes_it_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that took the stream and then hangs (a stopped process, a blackholed link)
    answers no ping: the sender reports it unreachable within about 1.5 timeouts."""
    caplog.set_level(logging.INFO, logger="naraft.transport.client")
    release = asyncio.Event()

    async def hung(request: web.Request) -> web.StreamResponse:
        stream = web.WebSocketResponse(autoping=False)
        await stream.prepare(request)
        await release.wait()  # reads nothing: no pong ever leaves
        return stream

    reports: list[tuple[str, bool]] = []
    reported = asyncio.Event()

    def on_unreachable(peer: str, refused: bool) -> None:
        reports.append((peer, refused))
        reported.set()

    async with serve([web.get(STREAM_PATH, hung)]) as url:
        client = PeerClient(
            N1, {N2: url}, SECRET, timeout_seconds=0.3, on_peer_unreachable=on_unreachable
        )
        try:
            async with running(client):
                client.send(heartbeats(N1, N2, 1)[0])
                async with asyncio.timeout(WAIT_SECONDS):
                    await reported.wait()
        finally:
            release.set()
    assert reports == [(N2, False)]
    assert not client.peer_reachable(N2)
    assert any("stream failed" in r.getMessage() for r in caplog.records)


async def test_a_write_on_a_stream_that_just_broke_goes_again_on_a_new_one() -> None:
    """The peer's end went away (it restarted) before the watcher saw it: the batch is
    written once more on a new stream, and the peer is not reported unreachable."""
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    async with serve(peer_routes(inbox.deliver, SECRET, [N1], self_id=N2)) as url:
        client = PeerClient(N1, {N2: url}, SECRET, timeout_seconds=WAIT_SECONDS, metrics=metrics)
        first, second = heartbeats(N1, N2, 2)
        async with running(client):
            client.send(first)
            await inbox.wait_for_count(1)
            stream = client._links[N2].lanes[Lane.CONTROL].stream
            assert stream is not None
            connection = stream._response.connection
            assert connection is not None
            assert connection.transport is not None
            # the connection closes now; its watcher hears of it only on a later loop turn
            connection.transport.close()
            client.send(second)
            await inbox.wait_for_count(2)
    assert inbox.envelopes == [first, second]
    assert metrics.rpcs == [(N2, "messages", RpcOutcome.OK)] * 2
    assert metrics.reachability_changes == []
    # the broken stream was the sender's to replace: its watcher reports nothing of it
    assert metrics.streams == [(N2, Lane.CONTROL, None)] * 2
