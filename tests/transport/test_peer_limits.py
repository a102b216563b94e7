"""Peer traffic has its own limits and its own lanes: over real loopback sockets.

- A forged body is refused before anything is inflated; a replayed or foreign-cluster
  request is refused with its own reason (logged once).
- Batches are capped in encoded bytes as well as in count.
- Beats, votes and replies travel on their own connection: a multi-MiB append stuck on the
  wire does not delay them.
- Through the node's application, peer routes are outside the client's 1 MiB body limit,
  while client routes keep it.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import os
from collections.abc import Callable
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from tests.api.conftest import Env
from tests.transport.conftest import (
    N1,
    N2,
    SECRET,
    WAIT_SECONDS,
    Inbox,
    RecordingInboundMetrics,
    RecordingPeerMetrics,
    Signal,
    heartbeats,
    running,
    serve,
    signed_headers,
)

from naraft.api.app import MAX_BODY_BYTES as CLIENT_MAX_BODY_BYTES
from naraft.api.app import make_app
from naraft.raft.messages import AppendEntries, Envelope
from naraft.raft.types import Entry, Index, Term
from naraft.transport import (
    MESSAGES_PATH,
    DropReason,
    Lane,
    PeerClient,
    Rejection,
    encode_batch,
    peer_routes,
)
from naraft.transport import server as transport_server
from naraft.transport.client import encoded_size, lane_of


def append(index: int, command_bytes: int) -> Envelope:
    """An append of one entry carrying `command_bytes` of incompressible data."""
    return Envelope(
        N1,
        N2,
        AppendEntries(
            term=Term(1),
            prev_log_index=Index(index - 1),
            prev_log_term=Term(1 if index > 1 else 0),
            entries=(Entry(Term(1), Index(index), os.urandom(command_bytes)),),
            leader_commit=Index(0),
        ),
    )


def client_to(url: str, **options: int) -> PeerClient:
    return PeerClient(N1, {N2: url}, SECRET, timeout_seconds=WAIT_SECONDS, **options)


async def test_a_forged_gzip_bomb_is_refused_without_inflating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inflated: list[int] = []
    real = transport_server.decompress

    def recording_decompress(body: bytes, *, max_bytes: int) -> bytes:
        inflated.append(len(body))
        return real(body, max_bytes=max_bytes)

    monkeypatch.setattr(transport_server, "decompress", recording_decompress)
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    bomb = gzip.compress(b"\0" * (63 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2, max_body_bytes=8 << 20)
    async with serve(routes, auto_decompress=False) as url, aiohttp.ClientSession() as session:
        forged = signed_headers(bomb, encoding="gzip", secret=b"not-the-cluster-secret")
        async with session.post(url + MESSAGES_PATH, data=bomb, headers=forged) as response:
            assert response.status == 403
        assert inflated == []
        # The same bytes properly signed are inflated, within the limit only: refused 413.
        signed = signed_headers(bomb, encoding="gzip")
        async with session.post(url + MESSAGES_PATH, data=bomb, headers=signed) as response:
            assert response.status == 413
    assert inflated == [len(bomb)]
    assert inbound.rejections == {Rejection.BAD_SIGNATURE: 1, Rejection.TOO_LARGE: 1}
    assert inbox.envelopes == []


async def test_a_replayed_batch_is_refused_and_delivered_once() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    body = encode_batch(heartbeats(N1, N2, 1))
    headers = signed_headers(body)
    async with serve(routes, auto_decompress=False) as url, aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(2):
            async with session.post(url + MESSAGES_PATH, data=body, headers=headers) as response:
                statuses.append(response.status)
    assert statuses == [204, 403]
    assert inbox.envelopes == heartbeats(N1, N2, 1)
    assert inbound.rejections == {Rejection.REPLAYED: 1}


async def test_another_clusters_batches_are_refused_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="naraft.transport.server")
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2, cluster_id="ours")
    async with serve(routes, auto_decompress=False) as url:
        foreign = PeerClient(
            N1, {N2: url}, SECRET, timeout_seconds=WAIT_SECONDS, cluster_id="theirs"
        )
        async with running(foreign):
            for count, envelope in enumerate(heartbeats(N1, N2, 3), start=1):
                foreign.send(envelope)  # one batch each: the last one is answered first
                await inbound.signal.wait_until(refused(inbound, count), f"refusal {count}")
    assert inbox.envelopes == []
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "naraft.transport.server"
    ]
    assert len(warnings) == 1
    assert "reason=cluster_mismatch" in warnings[0].getMessage()
    assert "'theirs'" in warnings[0].getMessage()


def refused(inbound: RecordingInboundMetrics, count: int) -> Callable[[], bool]:
    return lambda: inbound.rejections[Rejection.CLUSTER_MISMATCH] == count


def test_the_log_travels_on_the_bulk_lane_and_everything_else_on_the_control_lane() -> None:
    assert lane_of(append(1, 10)) is Lane.BULK
    assert lane_of(heartbeats(N1, N2, 1)[0]) is Lane.CONTROL
    size = encoded_size(append(1, 3000))
    assert size >= len(encode_batch([append(1, 3000)])) - 20  # an upper estimate


async def test_batches_are_capped_in_encoded_bytes() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes, auto_decompress=False) as url:
        client = client_to(url, max_batch_bytes=300_000)
        appends = [append(i, 100_000) for i in range(1, 8)]
        for envelope in appends:  # all queued before the sender runs: one take each time
            client.send(envelope)
        async with running(client):
            await inbox.wait_for_count(len(appends))
    # 100,000 bytes are 133,336 of base64: two fit in 300,000, a third does not.
    assert [count for _, count in inbound.batches] == [2, 2, 2, 1]
    assert inbox.envelopes == appends


async def test_an_append_sent_again_while_queued_takes_the_queued_ones_place() -> None:
    """A leader probing every beat while a large append is on its way queues the same
    entries again and again; the queue keeps one copy, at the first one's place."""
    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2)
    async with serve(routes, auto_decompress=False) as url:
        client = client_to(url)
        first, other = append(1, 1000), append(2, 1000)
        assert isinstance(first.message, AppendEntries)
        again = Envelope(N1, N2, replace(first.message, leader_commit=Index(1)))
        for envelope in (first, other, again):
            client.send(envelope)
        assert client.queued(N2) == 2
        async with running(client):
            await inbox.wait_for_count(2)
    assert inbox.envelopes == [again, other]


async def test_an_entry_larger_than_the_cap_travels_alone() -> None:
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], inbound, self_id=N2)
    async with serve(routes, auto_decompress=False) as url:
        client = client_to(url, max_batch_bytes=10_000)
        big = append(1, 2 << 20)  # 2 MiB of command: over the cap and over 1 MiB
        client.send(big)
        async with running(client):
            await inbox.wait_for_count(1)
    assert inbox.envelopes == [big]


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "post"])
async def test_beats_and_replies_are_not_queued_behind_a_stuck_append(streams: bool) -> None:
    """While a multi-MiB append is held (the bulk lane's stream cannot open, or its POST
    stalls in the server), heartbeats keep arriving; the append arrives once released, in
    its own order."""
    release = asyncio.Event()
    held: list[str] = []
    stalled = Signal()

    @web.middleware
    async def stall_large(request: web.Request, handler: Handler) -> web.StreamResponse:
        bulk_stream = streams and request.query.get("lane") == "bulk"
        if (request.content_length or 0) > 1 << 20 or bulk_stream:
            held.append(request.method)
            stalled.notify()
            await release.wait()
        return await handler(request)

    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, streams=streams)
    async with serve(routes, auto_decompress=False, middlewares=[stall_large]) as url:
        client = client_to(url)
        big = append(1, 3 << 20)
        async with running(client):
            client.send(big)
            await stalled.wait_until(lambda: bool(held), "the append on the wire")
            beats = heartbeats(N1, N2, 20)
            for beat in beats:
                client.send(beat)
                await asyncio.sleep(0.01)  # a beat every 10 ms, as a leader would
            await inbox.wait_for_count(len(beats))
            assert inbox.envelopes == beats  # every beat delivered, the append still held
            release.set()
            await inbox.wait_for_count(len(beats) + 1)
    assert inbox.envelopes[-1] == big
    assert held == ["GET" if streams else "POST"]


async def test_peer_routes_are_outside_the_client_body_limit_which_clients_keep() -> None:
    inbox = Inbox()
    env = Env()
    app = make_app(env.naming, peer_routes=peer_routes(inbox.deliver, SECRET, [N1], self_id=N2))
    runner = web.AppRunner(app, auto_decompress=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        client = client_to(url)
        batch = [append(i, 900 * 1024) for i in range(1, 4)]  # 3.6 MB of base64 in one batch
        for envelope in batch:
            client.send(envelope)
        async with running(client):
            await inbox.wait_for_count(len(batch))
        assert inbox.envelopes == batch
        async with aiohttp.ClientSession() as session:
            body = io.BytesIO(b"x" * (CLIENT_MAX_BODY_BYTES + 1))
            async with session.post(f"{url}/nacos/v1/ns/instance", data=body) as response:
                assert response.status == 413
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "post"])
async def test_a_peer_refusing_only_large_batches_does_not_flap_its_reachability(
    caplog: pytest.LogCaptureFixture, streams: bool
) -> None:
    """Over a stream the sender refuses a batch over the limit its peer announced (nothing
    is sent); as POSTs the peer answers 413. Either way the control lane stays reachable
    and the bulk lane's failure is logged once."""
    inbox, inbound = Inbox(), RecordingInboundMetrics()
    metrics = RecordingPeerMetrics()
    routes = peer_routes(
        inbox.deliver, SECRET, [N1], inbound, self_id=N2, max_body_bytes=50_000, streams=streams
    )
    async with serve(routes, auto_decompress=False) as url:
        client = PeerClient(N1, {N2: url}, SECRET, timeout_seconds=WAIT_SECONDS, metrics=metrics)
        async with running(client):
            client.send(heartbeats(N1, N2, 1)[0])  # the control lane's stream is open
            await inbox.wait_for_count(1)
            for i in range(1, 4):
                client.send(append(i, 100_000))
                client.send(heartbeats(N1, N2, 1)[0])
                await metrics.signal.wait_until(
                    lambda i=i: metrics.drops[N2, DropReason.SEND_FAILED] == i, f"refusal {i}"
                )
                await inbox.wait_for_count(i + 1)
            await metrics.signal.wait_until(lambda: len(metrics.rpcs) == 7, "seven batches")
    assert inbound.rejections[Rejection.TOO_LARGE] == (0 if streams else 3)
    assert client.peer_reachable(N2)
    assert metrics.reachability_changes == []
    failing = [r for r in caplog.records if "bulk lane failing" in r.getMessage()]
    assert len(failing) == 1
