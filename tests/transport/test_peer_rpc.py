"""PeerClient and peer_routes over real sockets on loopback: delivery, refusals, failures."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from tests.transport.conftest import (
    N1,
    N2,
    N3,
    SECRET,
    Inbox,
    RecordingInboundMetrics,
    RecordingPeerMetrics,
    Signal,
    free_port,
    heartbeats,
    running,
    serve,
    signed_headers,
)

from naraft.raft.messages import AppendEntries, Envelope
from naraft.raft.types import Entry, Index, NodeId, Term
from naraft.transport import (
    DEFAULT_MAX_BATCH_BYTES,
    MESSAGES_PATH,
    DropReason,
    PeerClient,
    Rejection,
    RpcOutcome,
    SessionFactory,
    default_cluster_id,
    default_session,
    encode_batch,
    peer_routes,
)
from naraft.transport import server as transport_server

TIMEOUT_SECONDS = 2.0


def make_client(
    peers: dict[NodeId, str],
    *,
    self_id: NodeId = N1,
    secret: bytes | None = SECRET,
    metrics: RecordingPeerMetrics | None = None,
    timeout_seconds: float = TIMEOUT_SECONDS,
    queue_size: int = 1024,
    max_batch: int = 256,
    session_factory: SessionFactory = default_session,
    on_peer_unreachable: Callable[[NodeId, bool], None] | None = None,
    on_peer_reachable: Callable[[NodeId], None] | None = None,
    cluster_id: str | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> PeerClient:
    return PeerClient(
        self_id,
        peers,
        secret,
        timeout_seconds=timeout_seconds,
        queue_size=queue_size,
        max_batch=max_batch,
        session_factory=session_factory,
        metrics=metrics,
        on_peer_unreachable=on_peer_unreachable,
        on_peer_reachable=on_peer_reachable,
        cluster_id=cluster_id,
        max_batch_bytes=max_batch_bytes,
    )


def big_append(sender: NodeId, recipient: NodeId, *, entries: int) -> Envelope:
    return Envelope(
        sender,
        recipient,
        AppendEntries(
            term=Term(1),
            prev_log_index=Index(0),
            prev_log_term=Term(0),
            entries=tuple(
                Entry(Term(1), Index(i), b'{"register": "instance", "ip": "10.0.0.1"}' * 20)
                for i in range(1, entries + 1)
            ),
            leader_commit=Index(0),
        ),
    )


async def test_two_nodes_deliver_batches_in_order() -> None:
    inbox1, inbox2 = Inbox(), Inbox()
    metrics1, metrics2 = RecordingInboundMetrics(), RecordingInboundMetrics()
    routes1 = peer_routes(inbox1.deliver, SECRET, [N2], metrics1, self_id=N1)
    routes2 = peer_routes(inbox2.deliver, SECRET, [N1], metrics2, self_id=N2)
    async with serve(routes1) as url1, serve(routes2) as url2:
        client1 = make_client({N2: url2}, self_id=N1)
        client2 = make_client({N1: url1}, self_id=N2)
        to_n2, to_n1 = heartbeats(N1, N2, 50), heartbeats(N2, N1, 30)
        for envelope in to_n2:  # queued before the senders start: one batch each way
            client1.send(envelope)
        for envelope in to_n1:
            client2.send(envelope)
        async with running(client1, client2):
            await inbox2.wait_for_count(50)
            await inbox1.wait_for_count(30)
            later = heartbeats(N1, N2, 3)
            for envelope in later:
                client1.send(envelope)
            await inbox2.wait_for_count(53)
    assert inbox2.envelopes == to_n2 + later
    assert inbox1.envelopes == to_n1
    assert metrics2.batches[0] == (N1, 50)
    assert metrics1.batches == [(N2, 30)]
    assert not metrics1.rejections
    assert not metrics2.rejections


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "post"])
async def test_large_batches_travel_gzipped(monkeypatch: pytest.MonkeyPatch, streams: bool) -> None:
    encodings: list[str] = []
    inflate = transport_server._Inbox._inflate

    def recording_inflate(inbox: transport_server._Inbox, encoding: str, wire: bytes) -> bytes:
        encodings.append(encoding)
        return inflate(inbox, encoding, wire)

    monkeypatch.setattr(transport_server._Inbox, "_inflate", recording_inflate)
    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], streams=streams)
    async with serve(routes, auto_decompress=False) as url:
        client = make_client({N2: url})
        small, large = heartbeats(N1, N2, 1)[0], big_append(N1, N2, entries=200)
        async with running(client):
            client.send(small)
            await inbox.wait_for_count(1)
            client.send(large)
            await inbox.wait_for_count(2)
    assert inbox.envelopes == [small, large]
    assert encodings == ["identity", "gzip"]


async def test_wrong_secret_is_refused_counted_and_nothing_delivered() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    outbound = RecordingPeerMetrics()
    async with serve(peer_routes(inbox.deliver, SECRET, [N1], inbound)) as url:
        client = make_client(
            {N2: url},
            secret=b"not-the-cluster-secret",
            metrics=outbound,
            cluster_id=default_cluster_id(SECRET),  # the same cluster id: only the key differs
        )
        async with running(client):
            client.send(heartbeats(N1, N2, 1)[0])
            await inbound.signal.wait_until(
                lambda: inbound.rejections[Rejection.BAD_SIGNATURE] == 1, "a bad-signature refusal"
            )
            await outbound.signal.wait_until(
                lambda: outbound.drops[N2, DropReason.SEND_FAILED] == 1, "the batch counted lost"
            )
    assert inbox.envelopes == []
    assert outbound.rpcs == [(N2, "messages", RpcOutcome.REJECTED)]
    assert not client.peer_reachable(N2)


async def test_unsigned_batch_is_refused_when_the_cluster_has_a_secret() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    async with (
        serve(peer_routes(inbox.deliver, SECRET, [N1], inbound)) as url,
        aiohttp.ClientSession() as session,
    ):
        body = encode_batch(heartbeats(N1, N2, 1))
        async with session.post(url + MESSAGES_PATH, data=body) as response:
            assert response.status == 403
    assert inbound.rejections == {Rejection.MISSING_SIGNATURE: 1}
    assert inbox.envelopes == []


async def test_bad_bodies_are_answered_400_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound)
    async with (
        serve(routes, auto_decompress=False) as url,
        aiohttp.ClientSession() as session,
    ):
        for body, encoding in [
            (b"\x00garbage{", None),
            (b'{"v":1,"e":[{"t":"nope"}]}', None),
            (b"\x1f\x8bnot really gzip", "gzip"),
            (gzip.compress(b"[1, 2]"), "gzip"),
        ]:
            signed = signed_headers(body, encoding=encoding)
            async with session.post(url + MESSAGES_PATH, data=body, headers=signed) as response:
                assert response.status == 400, body
        good = encode_batch(heartbeats(N1, N2, 2))
        signed = signed_headers(good)
        async with session.post(url + MESSAGES_PATH, data=good, headers=signed) as response:
            assert response.status == 204
    assert inbox.envelopes == heartbeats(N1, N2, 2)
    assert inbound.rejections == {Rejection.UNDECODABLE: 4}
    assert "refused peer batch reason=undecodable" in caplog.text


async def test_raw_gzip_garbage_is_400_even_without_auto_decompress() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    async with (
        serve(peer_routes(inbox.deliver, None, [N1], inbound), auto_decompress=False) as url,
        aiohttp.ClientSession() as session,
    ):
        headers = {"Content-Encoding": "gzip"}
        async with session.post(url + MESSAGES_PATH, data=b"\x1f\x8b!", headers=headers) as reply:
            assert reply.status == 400
    assert inbound.rejections == {Rejection.UNDECODABLE: 1}


async def test_oversized_bodies_are_refused_413() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, None, [N1], inbound, max_body_bytes=1000)
    async with serve(routes) as url, aiohttp.ClientSession() as session:
        body = encode_batch([big_append(N1, N2, entries=5)])
        async with session.post(url + MESSAGES_PATH, data=body) as response:
            assert response.status == 413
        bomb = gzip.compress(encode_batch([big_append(N1, N2, entries=5)]))
        assert len(bomb) < 1000
        headers = {"Content-Encoding": "gzip"}
        async with session.post(url + MESSAGES_PATH, data=bomb, headers=headers) as response:
            assert response.status == 413
    assert inbound.rejections == {Rejection.TOO_LARGE: 2}
    assert inbox.envelopes == []


async def test_envelopes_from_strangers_or_for_others_are_dropped() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes) as url, aiohttp.ClientSession() as session:
        kept = heartbeats(N1, N2, 1)
        batch = heartbeats(NodeId("n9"), N2, 1) + kept + heartbeats(N1, N3, 1)
        body = encode_batch(batch)
        async with session.post(
            url + MESSAGES_PATH, data=body, headers=signed_headers(body)
        ) as response:
            assert response.status == 204
    assert inbox.envelopes == kept
    assert inbound.rejections == {Rejection.UNKNOWN_SENDER: 1, Rejection.WRONG_RECIPIENT: 1}


async def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    async with serve(peer_routes(inbox.deliver, SECRET, [N1])) as url:
        client = make_client({N2: url}, metrics=metrics, queue_size=4, max_batch=3)
        sent = heartbeats(N1, N2, 10)
        for envelope in sent:
            client.send(envelope)
        assert client.queued(N2) == 4
        assert metrics.drops == {(N2, DropReason.QUEUE_FULL): 6}
        async with running(client):
            await inbox.wait_for_count(4)
            await metrics.signal.wait_until(lambda: len(metrics.rpcs) == 2, "two batches")
    assert inbox.envelopes == sent[-4:]
    assert [outcome for _, _, outcome in metrics.rpcs] == [RpcOutcome.OK] * 2  # 3 + 1


async def test_send_to_an_unknown_peer_is_dropped_and_counted() -> None:
    metrics = RecordingPeerMetrics()
    client = make_client({N2: "http://127.0.0.1:1"}, metrics=metrics)
    client.send(heartbeats(N1, N3, 1)[0])
    assert metrics.drops == {(N3, DropReason.UNKNOWN_PEER): 1}
    assert client.queued(N2) == 0


class Reachability:
    """Records the client's reachability callbacks and lets a test await them."""

    def __init__(self) -> None:
        self.events: list[tuple[NodeId, str]] = []
        self.signal = Signal()

    def on_unreachable(self, peer: NodeId, refused: bool) -> None:
        self.events.append((peer, "refused" if refused else "unreachable"))
        self.signal.notify()

    def on_reachable(self, peer: NodeId) -> None:
        self.events.append((peer, "reachable"))
        self.signal.notify()

    async def wait_for(self, event: tuple[NodeId, str]) -> None:
        await self.signal.wait_until(lambda: event in self.events, f"{event}")


async def test_refusing_peer_does_not_block_the_other_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="naraft.transport.client")
    inbox2, inbox3 = Inbox(), Inbox()
    reachability = Reachability()
    metrics = RecordingPeerMetrics()
    port3 = free_port()
    async with serve(peer_routes(inbox2.deliver, SECRET, [N1])) as url2:
        client = make_client(
            {N2: url2, N3: f"http://127.0.0.1:{port3}"},
            metrics=metrics,
            on_peer_unreachable=reachability.on_unreachable,
            on_peer_reachable=reachability.on_reachable,
        )
        async with running(client):
            for envelope in heartbeats(N1, N3, 5):
                client.send(envelope)
            await reachability.wait_for((N3, "refused"))
            assert not client.peer_reachable(N3)
            for envelope in heartbeats(N1, N3, 3):  # fails again: counted, not logged again
                client.send(envelope)
            await metrics.signal.wait_until(
                lambda: metrics.rpcs.count((N3, "messages", RpcOutcome.REFUSED)) >= 2,
                "a second refused batch",
            )
            for envelope in heartbeats(N1, N2, 5):
                client.send(envelope)
            await inbox2.wait_for_count(5)
            assert client.peer_reachable(N2)

            async with serve(peer_routes(inbox3.deliver, SECRET, [N1]), port=port3):
                for envelope in heartbeats(N1, N3, 2):  # Raft retransmits; so do we here
                    client.send(envelope)
                await reachability.wait_for((N3, "reachable"))
                await inbox3.wait_for_count(2)
            assert client.peer_reachable(N3)
    assert reachability.events == [(N3, "refused"), (N3, "reachable")]
    assert inbox3.envelopes == heartbeats(N1, N3, 2)
    assert metrics.reachability_changes == [(N3, False), (N3, True)]
    assert metrics.drops[N3, DropReason.SEND_FAILED] >= 6
    changes = [
        record.getMessage().split(" peer=")[0]
        for record in caplog.records
        if record.name == "naraft.transport.client" and record.levelno >= logging.INFO
    ]
    assert changes == [
        "peer unreachable",
        "peer reachable again",
    ]


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "post"])
async def test_batches_share_one_connection(streams: bool) -> None:
    """One stream carries every batch of a lane; a peer without streams (an older build)
    gets them as POSTs on one keep-alive connection."""
    requests: list[tuple[str, int]] = []

    @web.middleware
    async def record_port(request: web.Request, handler: Handler) -> web.StreamResponse:
        assert request.transport is not None
        requests.append((request.method, request.transport.get_extra_info("peername")[1]))
        return await handler(request)

    inbox, metrics = Inbox(), RecordingPeerMetrics()

    def answered(count: int) -> Callable[[], bool]:
        return lambda: len(metrics.rpcs) == count

    routes = peer_routes(inbox.deliver, SECRET, [N1], streams=streams)
    async with serve(routes, middlewares=[record_port]) as url:
        client = make_client({N2: url}, metrics=metrics)
        async with running(client):
            for count, envelope in enumerate(heartbeats(N1, N2, 5), start=1):
                client.send(envelope)  # one at a time: five batches
                await inbox.wait_for_count(count)
                await metrics.signal.wait_until(answered(count), "the outcome")
    assert metrics.rpcs == [(N2, "messages", RpcOutcome.OK)] * 5
    posts = [port for method, port in requests if method == "POST"]
    upgrades = [port for method, port in requests if method == "GET"]
    assert len(upgrades) == 1  # the stream, or the one try that found none
    assert len(posts) == (0 if streams else 5)
    assert len(set(posts)) == (0 if streams else 1)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A peer that accepts connections and never answers (a hung process)."""
    handlers: list[asyncio.Task[object]] = []
    released = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        await released.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        released.set()
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()


async def test_silent_peer_times_out_without_blocking_the_other() -> None:
    inbox2 = Inbox()
    reachability = Reachability()
    metrics = RecordingPeerMetrics()
    async with silent_server() as url3, serve(peer_routes(inbox2.deliver, SECRET, [N1])) as url2:
        client = make_client(
            {N2: url2, N3: url3},
            metrics=metrics,
            timeout_seconds=0.2,
            on_peer_unreachable=reachability.on_unreachable,
        )
        async with running(client):
            client.send(heartbeats(N1, N3, 1)[0])
            for envelope in heartbeats(N1, N2, 20):
                client.send(envelope)
            await inbox2.wait_for_count(20)  # while n3's request hangs
            await reachability.wait_for((N3, "unreachable"))
    assert (N3, "messages", RpcOutcome.TIMEOUT) in metrics.rpcs
    assert metrics.reachability_changes == [(N3, False)]


async def test_cancelling_run_closes_the_session_even_mid_request() -> None:
    sessions: list[aiohttp.ClientSession] = []

    def tracked_session() -> aiohttp.ClientSession:
        sessions.append(default_session())
        return sessions[-1]

    metrics = RecordingPeerMetrics()
    inbox = Inbox()
    async with silent_server() as url3, serve(peer_routes(inbox.deliver, SECRET, [N1])) as url2:
        client = make_client({N2: url2, N3: url3}, metrics=metrics, session_factory=tracked_session)
        run = asyncio.create_task(client.run(), name="peer-client")
        client.send(heartbeats(N1, N3, 1)[0])  # hangs until cancelled
        client.send(heartbeats(N1, N2, 1)[0])
        await inbox.wait_for_count(1)  # a keep-alive connection to n2 is in the pool
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert len(sessions) == 1
    assert sessions[0].closed
    assert (N3, "messages", RpcOutcome.TIMEOUT) not in metrics.rpcs


async def test_run_twice_at_once_is_a_misuse() -> None:
    client = make_client({N2: "http://127.0.0.1:1"})
    async with running(client):
        await asyncio.sleep(0)  # one loop turn: the first run() reaches its first await
        with pytest.raises(RuntimeError, match="already running"):
            await client.run()


@pytest.mark.parametrize(
    ("peers", "options", "message"),
    [
        pytest.param({N2: "ftp://h:1"}, {}, "base URL", id="bad-scheme"),
        pytest.param({N2: "not a url"}, {}, "base URL", id="no-host"),
        pytest.param({N1: "http://h:1"}, {}, "must not include", id="self-as-peer"),
        pytest.param({N2: "http://h:1"}, {"queue_size": 0}, "queue_size", id="no-queue"),
        pytest.param({N2: "http://h:1"}, {"max_batch": 0}, "max_batch", id="no-batch"),
        pytest.param({N2: "http://h:1"}, {"timeout_seconds": 0}, "timeout", id="no-timeout"),
    ],
)
def test_bad_configuration_is_refused(
    peers: dict[NodeId, str], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_client(peers, **options)
