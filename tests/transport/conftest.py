"""Resources for transport tests: real aiohttp servers on loopback, recorders that tests await."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

import pytest
from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.raft.messages import Envelope, Heartbeat
from naraft.raft.types import Index, NodeId, Term
from naraft.transport import (
    MESSAGES_PATH,
    DropReason,
    Lane,
    PeerClient,
    PeerSigner,
    Rejection,
    RpcOutcome,
    StreamEnd,
    default_cluster_id,
    track_streams,
)

WAIT_SECONDS: Final = 5.0  # every wait in these tests is bounded by this

N1: Final = NodeId("n1")
N2: Final = NodeId("n2")
N3: Final = NodeId("n3")
SECRET: Final = b"s3cret-shared-by-the-cluster"


class Signal:
    """Wakes waiters whenever something they watch changes; no polling."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        """Return once `predicate()` holds; fail the test after WAIT_SECONDS."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"timed out after {WAIT_SECONDS} s waiting for {what}")


class Inbox:
    """A `deliver` callback that records envelopes in arrival order."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.signal = Signal()

    def deliver(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)
        self.signal.notify()

    async def wait_for_count(self, count: int) -> None:
        await self.signal.wait_until(lambda: len(self.envelopes) >= count, f"{count} envelopes")


class RecordingPeerMetrics:
    """`PeerMetrics` that keeps everything it is told."""

    def __init__(self) -> None:
        self.rpcs: list[tuple[NodeId, str, RpcOutcome]] = []
        self.drops: collections.Counter[tuple[NodeId, DropReason]] = collections.Counter()
        self.reachability_changes: list[tuple[NodeId, bool]] = []
        self.streams: list[tuple[NodeId, Lane, StreamEnd | None]] = []  # None: opened
        self.signal = Signal()

    def observe_rpc(self, peer: NodeId, rpc: str, outcome: RpcOutcome, seconds: float) -> None:
        assert seconds >= 0
        self.rpcs.append((peer, rpc, outcome))
        self.signal.notify()

    def dropped(self, peer: NodeId, reason: DropReason, messages: int) -> None:
        self.drops[peer, reason] += messages
        self.signal.notify()

    def reachability(self, peer: NodeId, reachable: bool) -> None:
        self.reachability_changes.append((peer, reachable))
        self.signal.notify()

    def stream_opened(self, peer: NodeId, lane: Lane) -> None:
        self.streams.append((peer, lane, None))
        self.signal.notify()

    def stream_closed(self, peer: NodeId, lane: Lane, how: StreamEnd) -> None:
        self.streams.append((peer, lane, how))
        self.signal.notify()


class RecordingInboundMetrics:
    """`InboundMetrics` that keeps everything it is told."""

    def __init__(self) -> None:
        self.batches: list[tuple[NodeId, int]] = []
        self.rejections: collections.Counter[Rejection] = collections.Counter()
        self.signal = Signal()

    def received(self, peer: NodeId, messages: int) -> None:
        self.batches.append((peer, messages))
        self.signal.notify()

    def rejected(self, reason: Rejection) -> None:
        self.rejections[reason] += 1
        self.signal.notify()


def heartbeats(sender: NodeId, recipient: NodeId, count: int) -> list[Envelope]:
    """`count` distinguishable envelopes: read_round numbers them 0..count-1."""
    return [
        Envelope(sender, recipient, Heartbeat(term=Term(1), leader_commit=Index(0), read_round=i))
        for i in range(count)
    ]


def signed_headers(
    body: bytes,
    *,
    encoding: str | None = None,
    sender: NodeId = N1,
    recipient: NodeId = N2,
    secret: bytes = SECRET,
    path: str = MESSAGES_PATH,
) -> dict[str, str]:
    """The headers a member signs a raw request with (for requests built by hand)."""
    signer = PeerSigner(secret, cluster_id=default_cluster_id(SECRET), self_id=sender)
    headers = signer.headers("POST", path, recipient, body, encoding=encoding)
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    return headers


def free_port() -> int:
    """A loopback port nothing listens on (connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serve(
    routes: Sequence[web.RouteDef],
    *,
    port: int = 0,
    auto_decompress: bool = True,
    middlewares: Sequence[Middleware] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Run an aiohttp server with `routes` on 127.0.0.1 (over TLS with `ssl_context`);
    yields its base URL."""
    app = web.Application(middlewares=middlewares)
    app.add_routes(routes)
    track_streams(app)
    runner = web.AppRunner(app, auto_decompress=auto_decompress, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        host, bound_port = runner.addresses[0][:2]
        yield f"{'http' if ssl_context is None else 'https'}://{host}:{bound_port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running(*clients: PeerClient) -> AsyncIterator[None]:
    """Run `clients` for the duration of the block, then cancel them as the node would."""
    async with asyncio.TaskGroup() as tasks:
        runs = [
            tasks.create_task(client.run(), name=f"peer-client-{i}")
            for i, client in enumerate(clients)
        ]
        try:
            yield
        finally:
            for run in runs:
                run.cancel()
