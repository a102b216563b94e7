"""The sending end of peer RPC: one bounded queue and one sender task per peer.

`PeerClient.send` never blocks and never raises: it puts the envelope on one of the
recipient's two queues, dropping that queue's oldest envelope when it is full (Raft
retransmits, and a slow peer must not slow the others, docs/conventions.md).

Each peer has two lanes, each with its own queue, sender task and stream (one long-lived
connection, see `frames`):

- the **bulk** lane carries the log: AppendEntries and InstallSnapshot, in order;
- the **control** lane carries everything else: heartbeats, votes, and every reply.

So a beat, a vote or an acknowledgement never waits behind a multi-MiB append on the wire,
and a follower's election timer is fed on time however large the writes. A lane's sender
takes what is queued (up to `max_batch` envelopes and `max_batch_bytes` of estimated encoded
size, at least one envelope) and writes it as one frame on the lane's stream, gzip'd above
a threshold (off the event loop when large) and signed for its recipient (see `signing`;
every attempt signs afresh). The stream is opened with the first batch and again with the
first batch after it ended; a watcher task per stream notices its end (the peer's close, a
refusal, a missed pong). A peer without the stream route (a build before streams) is sent
each batch as a signed POST for a while instead. A failed batch is dropped and counted;
transport errors never propagate. Reachability is judged on the control lane (traffic every
beat), logged and reported only when it changes; a failing bulk lane is logged when it
starts and stops failing.

Failpoints (fault campaigns only, off unless `NARAFT_FAILPOINTS` is set when the process
starts): `peer.loss`, `peer.duplicate` and `peer.reorder` are probabilities per batch,
`peer.delay_ms` delays each batch by a uniform draw in [0, delay_ms], `peer.to` limits them to
some recipients (`a|b`), `peer.seed` seeds their RNG. The spec is `name=value` pairs joined by
`;` (`peer.loss=0.1;peer.duplicate=0.03`); other names (`storage.*`) belong to other modules.
While the variable is set, `PUT /naraft/v1/debug/failpoints` (server.py) replaces the spec.
Every request and stream upgrade also names its sender in `X-Naraft-Sender`, which the
campaign's TCP proxy reads to tell links apart.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import errno
import io
import logging
import os
import random
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import aiohttp
from yarl import URL

import naraft
from naraft.raft.messages import AppendEntries, Envelope, InstallSnapshot
from naraft.raft.types import NodeId
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport import signing
from naraft.transport.codec import (
    CONTENT_TYPE,
    FORMAT_VERSIONS,
    GZIP_THRESHOLD_BYTES,
    MAX_BODY_BYTES,
    MESSAGES_PATH,
    CodecError,
    compress_if_large,
    encode_batch,
)
from naraft.transport.frames import MAX_FRAME_HEADER, encode_frame, stream_path
from naraft.transport.version import (
    BEFORE_HEADER,
    CURRENT,
    INCOMPATIBLE_STATUS,
    PROTOCOL_HEADER,
    ProtocolRange,
    batch_format,
    meets_floor,
    parse_range,
)

logger = logging.getLogger(__name__)

RPC_MESSAGES: Final = "messages"  # the `rpc` label of a batch POST
USER_AGENT: Final = f"naraft/{naraft.__version__}"
SENDER_HEADER: Final = signing.SENDER_HEADER
DEFAULT_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024  # well below the receiver's MAX_BODY_BYTES
_STREAM_BODY_BYTES: Final = 512 * 1024
_INCOMPATIBLE_DETAIL: Final = "incompatible peer protocol"  # the start of a 426's text
_THREAD_COMPRESS_BYTES: Final = 256 * 1024  # larger bodies are gzip'd off the event loop
_POST_FALLBACK_SECONDS: Final = 60.0  # how long batches go as POSTs to a peer without streams
_MAX_INBOUND_FRAME_BYTES: Final = 64 * 1024  # a peer sends nothing on a lane's stream
_ENVELOPE_BYTES: Final = 256  # encoded size of an envelope besides its entries' commands
_ENTRY_BYTES: Final = 48  # encoded size of an entry besides its command's base64
FAILPOINTS_ENV_VAR: Final = "NARAFT_FAILPOINTS"
_FAULT_NAMES: Final = ("peer.loss", "peer.duplicate", "peer.reorder", "peer.delay_ms")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFaults:
    """Injected message faults on the sending side (see the module docstring)."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: int = 0
    recipients: frozenset[str] = frozenset()  # empty: every peer
    seed: int = 0

    @property
    def is_active(self) -> bool:
        return bool(self.loss or self.duplicate or self.reorder or self.delay_ms)

    def applies_to(self, peer: str) -> bool:
        return self.is_active and (not self.recipients or peer in self.recipients)


def parse_link_faults(spec: str) -> LinkFaults:
    """The `peer.*` failpoints of `spec`; raises ValueError naming a malformed one."""
    values: dict[str, str] = {}
    for part in spec.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not name.startswith("peer."):
            continue
        if not sep or name not in (*_FAULT_NAMES, "peer.to", "peer.seed"):
            raise ValueError(f"failpoint {name!r}: unknown, or has no value")
        values[name] = value.strip()
    try:
        faults = LinkFaults(
            loss=float(values.get("peer.loss", 0)),
            duplicate=float(values.get("peer.duplicate", 0)),
            reorder=float(values.get("peer.reorder", 0)),
            delay_ms=int(values.get("peer.delay_ms", 0)),
            recipients=frozenset(p for p in values.get("peer.to", "").split("|") if p),
            seed=int(values.get("peer.seed", 0)),
        )
    except ValueError as error:
        raise ValueError(f"failpoints {spec!r}: {error}") from None
    for name in ("loss", "duplicate", "reorder"):
        p = getattr(faults, name)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"failpoint peer.{name}: must be in 0..1, not {p}")
    if not 0 <= faults.delay_ms <= 60_000:
        raise ValueError(f"failpoint peer.delay_ms: must be in 0..60000, not {faults.delay_ms}")
    return faults


class FaultSwitch:
    """The process's transport failpoints: enabled only when `NARAFT_FAILPOINTS` was set at
    start; `faults` may then be replaced at run time (by the debug route)."""

    def __init__(self, spec: str | None) -> None:
        self.enabled = spec is not None
        self.faults = parse_link_faults(spec or "")
        self.rng = random.Random(self.faults.seed)

    def set(self, faults: LinkFaults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)


FAILPOINTS: Final = FaultSwitch(os.environ.get(FAILPOINTS_ENV_VAR))
"""Process-global, as gofail's failpoints are; `PeerClient` and the debug route share it."""

SessionFactory = Callable[[], aiohttp.ClientSession]
"""Makes the client's HTTP session; called inside `run`, which closes the session it made."""


class RpcOutcome(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"  # connection refused: nothing listens on the peer's port
    TIMEOUT = "timeout"
    ERROR = "error"  # any other transport error
    REJECTED = "rejected"  # the peer answered, but not 2xx (bad secret, bad batch)


class DropReason(enum.StrEnum):
    QUEUE_FULL = "queue_full"  # the oldest queued envelope made room for a new one
    UNKNOWN_PEER = "unknown_peer"  # the recipient is not a configured peer
    SEND_FAILED = "send_failed"  # the batch carrying it failed
    UNENCODABLE = "unencodable"  # a bug upstream: a value the wire format cannot carry


class StreamEnd(enum.StrEnum):
    """How a lane's stream ended, as its sender saw it."""

    CLOSED = "closed"  # the peer closed it (it stops or restarts) or the connection ended
    REFUSED = "refused"  # the peer refused a frame (policy violation, too large)
    FAILED = "failed"  # no pong in time, or a transport error: the peer hangs or is cut off


class Lane(enum.StrEnum):
    """Which of a peer's two connections carries a message (see the module docstring)."""

    CONTROL = "control"
    BULK = "bulk"


class PeerMetrics(Protocol):
    """What the sending side reports; `naraft.metrics` implements it with Prometheus."""

    def observe_rpc(self, peer: NodeId, rpc: str, outcome: RpcOutcome, seconds: float) -> None:
        """One request to `peer` ended with `outcome` after `seconds`."""
        ...

    def dropped(self, peer: NodeId, reason: DropReason, messages: int) -> None:
        """`messages` envelopes for `peer` were lost for `reason`."""
        ...

    def reachability(self, peer: NodeId, reachable: bool) -> None:
        """`peer` became reachable or unreachable."""
        ...

    def stream_opened(self, peer: NodeId, lane: Lane) -> None:
        """A stream to `peer` for `lane` was opened."""
        ...

    def stream_closed(self, peer: NodeId, lane: Lane, how: StreamEnd) -> None:
        """A stream to `peer` for `lane` ended, as `how` says."""
        ...


class NoPeerMetrics:
    """The default `PeerMetrics`: records nothing."""

    def observe_rpc(self, peer: NodeId, rpc: str, outcome: RpcOutcome, seconds: float) -> None:
        pass

    def dropped(self, peer: NodeId, reason: DropReason, messages: int) -> None:
        pass

    def reachability(self, peer: NodeId, reachable: bool) -> None:
        pass

    def stream_opened(self, peer: NodeId, lane: Lane) -> None:
        pass

    def stream_closed(self, peer: NodeId, lane: Lane, how: StreamEnd) -> None:
        pass


def default_session(tls: PeerTls = PLAINTEXT) -> aiohttp.ClientSession:
    """A keep-alive session whose only timeouts are the client's own `asyncio.timeout`s;
    over https with `tls`'s context."""
    return aiohttp.ClientSession(
        # at most one request in flight per peer
        connector=aiohttp.TCPConnector(limit=0, ssl=tls.ssl),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT},
    )


def lane_of(envelope: Envelope) -> Lane:
    """The log travels on the bulk lane; beats, votes and replies never wait behind it."""
    if isinstance(envelope.message, AppendEntries | InstallSnapshot):
        return Lane.BULK
    return Lane.CONTROL


def encoded_size(envelope: Envelope) -> int:
    """An upper estimate of `envelope`'s encoded size (commands travel in base64)."""
    message = envelope.message
    if isinstance(message, AppendEntries):
        return _ENVELOPE_BYTES + sum(
            _ENTRY_BYTES + 4 * ((len(entry.command) + 2) // 3) for entry in message.entries
        )
    return _ENVELOPE_BYTES


class _Outbox:
    """One bounded FIFO queue; the oldest envelope goes when a new one needs room."""

    __slots__ = ("_capacity", "_items", "_nonempty")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: collections.deque[Envelope] = collections.deque()
        self._nonempty = asyncio.Event()  # set exactly when _items is not empty

    def __len__(self) -> int:
        return len(self._items)

    def put(self, envelope: Envelope) -> bool:
        """Queue `envelope`. Returns whether the oldest envelope was dropped to make room.

        An append of the same entries as one still queued (a leader probing again every
        beat while a large append is on its way) takes that one's place instead.
        """
        if isinstance(envelope.message, AppendEntries) and envelope.message.entries:
            key = _append_key(envelope.message)
            for position, queued in enumerate(self._items):
                if isinstance(queued.message, AppendEntries) and _append_key(queued.message) == key:
                    self._items[position] = envelope
                    return False
        full = len(self._items) >= self._capacity
        if full:
            self._items.popleft()
        self._items.append(envelope)
        self._nonempty.set()
        return full

    async def take(self, limit: int, max_bytes: int) -> tuple[Envelope, ...]:
        """Wait for at least one envelope; return the oldest ones, in order: at most `limit`
        of them and `max_bytes` of `encoded_size`, but always at least one."""
        await self._nonempty.wait()
        batch = [self._items.popleft()]
        size = encoded_size(batch[0])
        while self._items and len(batch) < limit:
            size += encoded_size(self._items[0])
            if size > max_bytes:
                break
            batch.append(self._items.popleft())
        if not self._items:
            self._nonempty.clear()
        return tuple(batch)


def _append_key(message: AppendEntries) -> tuple[int, int, int, int]:
    """What makes two appends carry the same entries (leader commit aside)."""
    return (
        message.term,
        message.prev_log_index,
        message.prev_log_term,
        message.entries[-1].index if message.entries else message.prev_log_index,
    )


class _Lane:
    """One of a peer's connections: its queue, its signer, its stream, and a batch the
    reorder failpoint holds back."""

    __slots__ = (
        "failing",
        "format",
        "held",
        "kind",
        "max_frame",
        "outbox",
        "path",
        "peer_range",
        "post_until",
        "signer",
        "stream",
    )

    def __init__(self, kind: Lane, capacity: int, signer: signing.PeerSigner) -> None:
        self.kind = kind
        self.outbox = _Outbox(capacity)
        self.signer = signer
        self.path = stream_path(kind)
        self.held: tuple[Envelope, ...] | None = None
        self.failing = False  # the last batch on this lane failed
        self.stream: aiohttp.ClientWebSocketResponse | None = None  # open, or None
        self.post_until = 0.0  # loop time until which batches go as POSTs (an older peer)
        self.peer_range: ProtocolRange | None = None  # what the open stream's receiver named
        self.max_frame = MAX_BODY_BYTES  # the largest frame the stream's receiver takes
        self.format = min(FORMAT_VERSIONS)  # the batch format the open stream's receiver reads


class _Link:
    """Everything the client keeps about one peer."""

    __slots__ = ("base", "lanes", "peer", "reachable", "url")

    def __init__(self, peer: NodeId, url: URL, lanes: dict[Lane, _Lane]) -> None:
        self.peer = peer
        self.url = url  # the POST route's
        self.base = url.with_path("/")
        self.lanes = lanes
        self.reachable = True  # optimistic until a request fails


class PeerClient:
    """Sends envelopes to peers over HTTP; satisfies the replica's `PeerSender` port.

    `peers` maps each peer's id to its base URL (`http://host:port`). Nothing is sent until
    `run` is running; envelopes sent before then wait in their queues.
    """

    def __init__(
        self,
        self_id: NodeId,
        peers: Mapping[NodeId, str],
        secret: bytes | None,
        *,
        timeout_seconds: float,
        queue_size: int = 1024,
        max_batch: int = 256,
        session_factory: SessionFactory | None = None,
        metrics: PeerMetrics | None = None,
        on_peer_unreachable: Callable[[NodeId, bool], None] | None = None,
        on_peer_reachable: Callable[[NodeId], None] | None = None,
        gzip_threshold_bytes: int = GZIP_THRESHOLD_BYTES,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        cluster_id: str | None = None,
        protocol: ProtocolRange = CURRENT,
        version_floor: Callable[[], int] = lambda: 1,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        """Raises ValueError for a bad setting or peer URL, or when `peers` holds `self_id`.

        With `tls` (peer TLS), `peers` are https URLs (`tls.url`); the default session
        presents this node's peer certificate and sends `tls.server_hostname`.

        `version_floor()` is the peer protocol version the cluster has recorded (1: none):
        a peer that does not speak it is refused, as a peer sharing no version is.

        `queue_size` bounds each lane's queue. `cluster_id` goes into every signature
        (default: derived from the secret, `signing.default_cluster_id`).

        The callbacks run on the event loop, in the peer's sender task, when reachability
        changes; `on_peer_unreachable(peer, refused)` says whether the connection was
        refused (nothing listens: the peer is down, not slow). They must not block or raise.
        """
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 1 <= max_batch_bytes <= MAX_BODY_BYTES // 2:
            raise ValueError(
                f"max_batch_bytes must be in 1..{MAX_BODY_BYTES // 2}, got {max_batch_bytes}"
            )
        if self_id in peers:
            raise ValueError(f"peers must not include this node ({self_id})")
        self._self_id = self_id
        self._timeout_seconds = timeout_seconds
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._session_factory = (
            session_factory if session_factory is not None else lambda: default_session(tls)
        )
        self._server_hostname = tls.server_hostname
        self._metrics: PeerMetrics = metrics if metrics is not None else NoPeerMetrics()
        self._on_peer_unreachable = on_peer_unreachable
        self._on_peer_reachable = on_peer_reachable
        self._gzip_threshold_bytes = gzip_threshold_bytes
        self._range = protocol
        self._version_floor = version_floor
        self._protocol = str(protocol)  # named in every request (`version`)
        self._incompatible: set[NodeId] = set()  # peers that refused our protocol, logged
        self._cluster_id = (
            cluster_id if cluster_id is not None else signing.default_cluster_id(secret)
        )

        def lanes() -> dict[Lane, _Lane]:
            return {
                kind: _Lane(
                    kind,
                    queue_size,
                    signing.PeerSigner(secret, cluster_id=self._cluster_id, self_id=self_id),
                )
                for kind in Lane
            }

        self._lanes = lanes
        self._links: dict[NodeId, _Link] = {
            peer: _Link(peer, _messages_url(peer, base), lanes()) for peer, base in peers.items()
        }
        self._running = False
        # while running: the session and task group senders run in, each link's senders
        self._session: aiohttp.ClientSession | None = None
        self._group: asyncio.TaskGroup | None = None
        self._senders: dict[NodeId, list[asyncio.Task[None]]] = {}
        # streams this client dropped itself (replaced, timed out, peer removed, stopping):
        # their watchers do not report their end, the sender already did or there is none
        self._dropped: weakref.WeakSet[aiohttp.ClientWebSocketResponse] = weakref.WeakSet()

    def add_peer(self, peer: NodeId, base_url: str) -> None:
        """Start sending to `peer` (a member added), at once when running. Raises
        ValueError for this node or a bad URL; a known peer is left as it is."""
        if peer == self._self_id:
            raise ValueError(f"peers must not include this node ({peer})")
        if peer in self._links:
            return
        link = _Link(peer, _messages_url(peer, base_url), self._lanes())
        self._links[peer] = link
        if self._session is not None and self._group is not None:
            self._start(self._session, self._group, link)
        logger.info("sending to new peer %s", peer)

    def remove_peer(self, peer: NodeId) -> None:
        """Stop sending to `peer` (a member removed); what waits in its queues is dropped."""
        link = self._links.pop(peer, None)
        if link is None:
            return
        for task in self._senders.pop(peer, []):
            task.cancel()
        for lane in link.lanes.values():
            self._drop_stream(lane)
        logger.info("stopped sending to removed peer %s", peer)

    def _start(self, session: aiohttp.ClientSession, tasks: asyncio.TaskGroup, link: _Link) -> None:
        self._senders[link.peer] = [
            tasks.create_task(
                self._send_forever(session, link, lane),
                name=f"peer-sender-{link.peer}-{lane.kind}",
            )
            for lane in link.lanes.values()
        ]

    @property
    def peers(self) -> frozenset[NodeId]:
        return frozenset(self._links)

    def peer_reachable(self, peer: NodeId) -> bool:
        """Whether the last request on `peer`'s control lane succeeded (True before any).
        KeyError if unknown."""
        return self._links[peer].reachable

    def peer_range(self, peer: NodeId) -> ProtocolRange | None:
        """The protocol range `peer` named when this node last opened a stream to it that
        is still open (None: no stream open, or a build that did not name one)."""
        link = self._links.get(peer)
        if link is None:
            return None
        for lane in link.lanes.values():
            stream = lane.stream
            if stream is not None and not stream.closed and lane.peer_range is not None:
                return lane.peer_range
        return None

    def queued(self, peer: NodeId) -> int:
        """How many envelopes wait in `peer`'s queues. KeyError if unknown."""
        return sum(len(lane.outbox) for lane in self._links[peer].lanes.values())

    def send(self, envelope: Envelope) -> None:
        """Queue `envelope` for its recipient; never blocks, never raises, may lose it."""
        link = self._links.get(envelope.recipient)
        if link is None:
            logger.debug("dropped message for unknown peer recipient=%s", envelope.recipient)
            self._metrics.dropped(envelope.recipient, DropReason.UNKNOWN_PEER, 1)
            return
        if link.lanes[lane_of(envelope)].outbox.put(envelope):
            self._metrics.dropped(link.peer, DropReason.QUEUE_FULL, 1)

    async def run(self) -> None:
        """Send until cancelled: one task per peer, one session, closed on the way out."""
        if self._running:
            raise RuntimeError("PeerClient.run is already running")
        self._running = True
        try:
            async with self._session_factory() as session, asyncio.TaskGroup() as tasks:
                self._session, self._group = session, tasks
                # the group lives while peers may come (a node may start with none)
                tasks.create_task(asyncio.Event().wait(), name="peer-client-idle")
                for link in self._links.values():
                    self._start(session, tasks, link)
        finally:
            for link in self._links.values():
                for lane in link.lanes.values():
                    self._drop_stream(lane)
            self._running = False
            self._session = self._group = None
            self._senders.clear()

    async def _send_forever(self, session: aiohttp.ClientSession, link: _Link, lane: _Lane) -> None:
        while True:
            batch = await lane.outbox.take(self._max_batch, self._max_batch_bytes)
            if FAILPOINTS.enabled:
                await self._send_with_faults(session, link, lane, batch)
            else:
                await self._send_batch(session, link, lane, batch)

    async def _send_with_faults(
        self, session: aiohttp.ClientSession, link: _Link, lane: _Lane, batch: Sequence[Envelope]
    ) -> None:
        """Send `batch` through the injected faults: loss, delay, reordering, duplication."""
        faults, rng = FAILPOINTS.faults, FAILPOINTS.rng
        held, lane.held = lane.held, None
        if not faults.applies_to(link.peer):
            await self._send_batch(session, link, lane, batch)
            if held is not None:
                await self._send_batch(session, link, lane, held)
            return
        if rng.random() < faults.loss:
            logger.debug("failpoint peer.loss dropped a batch peer=%s", link.peer)
            return
        if faults.delay_ms:
            await asyncio.sleep(rng.uniform(0, faults.delay_ms) / 1000)
        if held is None and rng.random() < faults.reorder:
            lane.held = tuple(batch)  # sent after the next batch
            return
        await self._send_batch(session, link, lane, batch)
        if rng.random() < faults.duplicate:
            await self._send_batch(session, link, lane, batch)
        if held is not None:
            await self._send_batch(session, link, lane, held)

    async def _send_batch(
        self, session: aiohttp.ClientSession, link: _Link, lane: _Lane, batch: Sequence[Envelope]
    ) -> None:
        loop = asyncio.get_running_loop()
        streaming = lane.post_until <= loop.time()
        stream = lane.stream
        # Written in the newest format the open stream's receiver named; the first batch of a
        # new stream, and every POST (builds before streams), in the oldest.
        version = (
            lane.format
            if streaming and stream is not None and not stream.closed
            else min(FORMAT_VERSIONS)
        )
        try:
            body = encode_batch(batch, version)
        except CodecError:
            logger.exception("cannot encode batch peer=%s messages=%d", link.peer, len(batch))
            self._metrics.dropped(link.peer, DropReason.UNENCODABLE, len(batch))
            return
        if len(body) > _THREAD_COMPRESS_BYTES:
            wire, encoding = await asyncio.to_thread(
                compress_if_large, body, threshold_bytes=self._gzip_threshold_bytes
            )
        else:
            wire, encoding = compress_if_large(body, threshold_bytes=self._gzip_threshold_bytes)
        started = loop.time()
        if not streaming:
            outcome, detail = await self._post(session, link, lane, wire, encoding)
        else:
            outcome, detail = await self._write_frame(session, link, lane, wire, encoding)
        self._metrics.observe_rpc(link.peer, RPC_MESSAGES, outcome, loop.time() - started)
        if outcome is not RpcOutcome.OK:
            self._metrics.dropped(link.peer, DropReason.SEND_FAILED, len(batch))
        self._settle(link, lane, outcome, detail)

    def _settle(self, link: _Link, lane: _Lane, outcome: RpcOutcome, detail: str) -> None:
        """What an outcome on `lane` says of the peer: its protocol, its reachability (the
        control lane's to judge), the bulk lane's health."""
        self._note_protocol(link.peer, outcome, detail)
        if lane.kind is Lane.BULK:
            self._note_bulk(link, lane, outcome, detail)
        elif outcome is RpcOutcome.OK:
            self._mark_reachable(link)
        else:
            self._mark_unreachable(link, outcome, detail)

    async def _write_frame(
        self,
        session: aiohttp.ClientSession,
        link: _Link,
        lane: _Lane,
        wire: bytes,
        encoding: str | None,
    ) -> tuple[RpcOutcome, str]:
        """Write one batch on the lane's stream, opening it first when it is not open.

        A written frame is OK: nothing is acknowledged (Raft's replies are messages of their
        own). A stream that breaks is seen by its watcher, or by the next write."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                stream = lane.stream
                fresh = stream is None or stream.closed
                if fresh or stream is None:  # (the second test only narrows the type)
                    stream = await self._open_stream(session, link, lane)
                    refusal = self._below_floor(link, lane.peer_range)
                    if refusal is not None:
                        self._drop_stream(lane)
                        return RpcOutcome.REJECTED, refusal
                frame = encode_frame(lane.signer, lane.path, link.peer, wire, encoding)
                if len(frame) > lane.max_frame:
                    return RpcOutcome.REJECTED, (
                        f"a batch of {len(frame)} bytes is over {link.peer}'s limit of "
                        f"{lane.max_frame}"
                    )
                try:
                    await stream.send_bytes(frame)
                except (aiohttp.ClientConnectionError, ConnectionError):
                    if fresh:
                        raise
                    # A stream the peer had already closed (it restarted) before the watcher
                    # saw it: once more on a new one, signed afresh, as a POST would retry.
                    self._drop_stream(lane)
                    stream = await self._open_stream(session, link, lane)
                    frame = encode_frame(lane.signer, lane.path, link.peer, wire, encoding)
                    await stream.send_bytes(frame)
        except TimeoutError:
            self._drop_stream(lane)
            return RpcOutcome.TIMEOUT, f"no answer within {self._timeout_seconds} s"
        except aiohttp.WSServerHandshakeError as error:
            if error.status in (404, 405):
                # A build before streams: POST to it, and try the stream again later.
                logger.info(
                    "peer %s has no peer streams (HTTP %d): posting batches to it for %.0f s",
                    link.peer,
                    error.status,
                    _POST_FALLBACK_SECONDS,
                )
                lane.post_until = asyncio.get_running_loop().time() + _POST_FALLBACK_SECONDS
                return await self._post(session, link, lane, wire, encoding)
            if error.status == INCOMPATIBLE_STATUS:
                headers = error.headers
                theirs = headers.get(PROTOCOL_HEADER, "?") if isinstance(headers, Mapping) else "?"
                return RpcOutcome.REJECTED, (
                    f"{_INCOMPATIBLE_DETAIL}: {self._self_id} speaks {self._protocol}, "
                    f"{link.peer} speaks {theirs}"
                )
            return RpcOutcome.REJECTED, f"answered HTTP {error.status}"
        except (aiohttp.ClientError, OSError) as error:
            self._drop_stream(lane)
            return _failure(error)
        return RpcOutcome.OK, ""

    async def _open_stream(
        self, session: aiohttp.ClientSession, link: _Link, lane: _Lane
    ) -> aiohttp.ClientWebSocketResponse:
        headers = lane.signer.headers("GET", lane.path, link.peer, b"")
        headers[PROTOCOL_HEADER] = self._protocol
        stream = await session.ws_connect(
            link.base.join(URL(lane.path)),
            headers=headers,
            server_hostname=self._server_hostname,
            heartbeat=self._timeout_seconds,
            compress=0,
            max_msg_size=_MAX_INBOUND_FRAME_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_close=self._timeout_seconds),
        )
        lane.stream = stream
        lane.max_frame = _max_frame(stream)
        lane.peer_range = _peer_range(stream)
        lane.format = batch_format(self._range, lane.peer_range)
        self._metrics.stream_opened(link.peer, lane.kind)
        if self._group is not None:
            self._group.create_task(
                self._watch(link, lane, stream), name=f"peer-stream-{link.peer}-{lane.kind}"
            )
        return stream

    async def _watch(
        self, link: _Link, lane: _Lane, stream: aiohttp.ClientWebSocketResponse
    ) -> None:
        """Wait for `stream` to end (its peer sends nothing but pongs and the close), and
        report why: a refusal or a missed pong is a failed lane, a peer's own close is not
        (the next batch reconnects, and a refused connection is reported then)."""
        try:
            message = await stream.receive()
            while message.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                message = await stream.receive()  # not part of the protocol: ignored
        except Exception as error:  # a bug in aiohttp or here must not stop the node
            logger.exception("peer stream watcher failed peer=%s lane=%s", link.peer, lane.kind)
            message = aiohttp.WSMessage(aiohttp.WSMsgType.ERROR, error, None)
        finally:
            if lane.stream is stream:
                lane.stream = None
            _abort(stream)
        if stream in self._dropped:
            return
        code = stream.close_code
        if message.type is aiohttp.WSMsgType.ERROR:
            self._metrics.stream_closed(link.peer, lane.kind, StreamEnd.FAILED)
            self._settle(link, lane, RpcOutcome.TIMEOUT, f"stream failed: {message.data}")
        elif code in (aiohttp.WSCloseCode.POLICY_VIOLATION, aiohttp.WSCloseCode.MESSAGE_TOO_BIG):
            self._metrics.stream_closed(link.peer, lane.kind, StreamEnd.REFUSED)
            reason = message.extra if isinstance(message.extra, str) else ""
            self._settle(link, lane, RpcOutcome.REJECTED, f"closed the stream ({code}) {reason}")
        else:
            self._metrics.stream_closed(link.peer, lane.kind, StreamEnd.CLOSED)

    def _drop_stream(self, lane: _Lane) -> None:
        stream, lane.stream = lane.stream, None
        if stream is not None:
            self._dropped.add(stream)
            _abort(stream)

    def _note_protocol(self, peer: NodeId, outcome: RpcOutcome, detail: str) -> None:
        """One line when `peer` starts refusing this node's protocol range, one when it
        takes it again."""
        refused = outcome is RpcOutcome.REJECTED and detail.startswith(_INCOMPATIBLE_DETAIL)
        if refused and peer not in self._incompatible:
            self._incompatible.add(peer)
            logger.error("peer %s refuses this node: %s", peer, detail)
        elif outcome is RpcOutcome.OK and peer in self._incompatible:
            self._incompatible.discard(peer)
            logger.info("peer %s takes this node's peer protocol %s again", peer, self._protocol)

    def _note_bulk(self, link: _Link, lane: _Lane, outcome: RpcOutcome, detail: str) -> None:
        """Log when the bulk lane starts or stops failing. Reachability is the control lane's
        to judge (it carries traffic every beat); a peer refusing only large batches must
        not make it flap."""
        failing = outcome is not RpcOutcome.OK
        if failing == lane.failing:
            return
        lane.failing = failing
        if failing:
            logger.warning(
                "peer bulk lane failing peer=%s outcome=%s detail=%s", link.peer, outcome, detail
            )
        else:
            logger.info("peer bulk lane working again peer=%s", link.peer)

    async def _post(
        self,
        session: aiohttp.ClientSession,
        link: _Link,
        lane: _Lane,
        wire: bytes,
        encoding: str | None,
    ) -> tuple[RpcOutcome, str]:
        """POST one batch (each attempt signed afresh); returns the outcome and, for a
        failure, what went wrong. Only builds before streams are posted to: none once
        the cluster has recorded a version they do not speak."""
        refusal = self._below_floor(link, None)
        if refusal is not None:
            return RpcOutcome.REJECTED, refusal

        def headers() -> dict[str, str]:
            signed = lane.signer.headers(
                "POST", link.url.raw_path_qs, link.peer, wire, encoding=encoding
            )
            signed["Content-Type"] = CONTENT_TYPE
            signed[PROTOCOL_HEADER] = self._protocol
            if encoding is not None:
                signed["Content-Encoding"] = encoding
            return signed

        url, hostname = link.url, self._server_hostname
        try:
            async with asyncio.timeout(self._timeout_seconds):
                try:
                    status, text = await _post_once(session, url, wire, headers(), hostname)
                except aiohttp.ServerDisconnectedError:
                    # A pooled keep-alive connection the peer had already closed (it
                    # restarted): try once on a fresh one, with a fresh nonce. A duplicate
                    # is harmless to Raft.
                    status, text = await _post_once(session, url, wire, headers(), hostname)
        except TimeoutError:
            return RpcOutcome.TIMEOUT, f"no answer within {self._timeout_seconds} s"
        except (aiohttp.ClientError, OSError) as error:
            return _failure(error)
        if 200 <= status < 300:
            return RpcOutcome.OK, ""
        if status == INCOMPATIBLE_STATUS:
            return RpcOutcome.REJECTED, text
        return RpcOutcome.REJECTED, f"answered HTTP {status}"

    def _below_floor(self, link: _Link, theirs: ProtocolRange | None) -> str | None:
        """Why `link`'s peer, speaking `theirs` (None: a build that does not name its
        range), may not take part now that the cluster has recorded a version; None if
        it may."""
        peer_range = theirs if theirs is not None else BEFORE_HEADER
        floor = self._version_floor()
        if meets_floor(peer_range, floor):
            return None
        return (
            f"{_INCOMPATIBLE_DETAIL}: {link.peer} speaks {peer_range}, the cluster has "
            f"recorded version {floor}"
        )

    def _mark_reachable(self, link: _Link) -> None:
        if link.reachable:
            return
        link.reachable = True
        logger.info("peer reachable again peer=%s", link.peer)
        self._metrics.reachability(link.peer, True)
        if self._on_peer_reachable is not None:
            self._on_peer_reachable(link.peer)

    def _mark_unreachable(self, link: _Link, outcome: RpcOutcome, detail: str) -> None:
        if not link.reachable:
            logger.debug("peer still unreachable peer=%s outcome=%s", link.peer, outcome)
            return
        link.reachable = False
        logger.warning(
            "peer unreachable peer=%s url=%s outcome=%s detail=%s",
            link.peer,
            link.url,
            outcome,
            detail,
        )
        self._metrics.reachability(link.peer, False)
        if self._on_peer_unreachable is not None:
            self._on_peer_unreachable(link.peer, outcome is RpcOutcome.REFUSED)


def _abort(stream: aiohttp.ClientWebSocketResponse) -> None:
    """Close `stream`'s connection at once, without the WebSocket closing handshake (which
    waits for the peer): for streams that failed, were replaced, or whose client stops.
    aiohttp has no public call for it; closing the upgrade's response releases the
    connection, as aiohttp itself does when a stream fails."""
    stream._response.close()


def _peer_range(stream: aiohttp.ClientWebSocketResponse) -> ProtocolRange | None:
    """The protocol range the receiver named in the upgrade's answer (None: it did not)."""
    text = stream._response.headers.get(PROTOCOL_HEADER)
    if text is None:
        return None
    try:
        return parse_range(text)
    except ValueError:
        return None


def _max_frame(stream: aiohttp.ClientWebSocketResponse) -> int:
    """The largest frame the receiver said it takes (`frames.MAX_FRAME_HEADER`)."""
    text = stream._response.headers.get(MAX_FRAME_HEADER, "")  # the upgrade's answer
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else MAX_BODY_BYTES


def _failure(error: aiohttp.ClientError | OSError) -> tuple[RpcOutcome, str]:
    """The outcome and detail of a request or stream that failed in transport."""
    if isinstance(error, aiohttp.ClientSSLError):
        # a TLS handshake that failed (the peer's certificate is not the cluster's):
        # aiohttp's certificate error has no `os_error` to read
        return RpcOutcome.ERROR, f"TLS: {error}"
    if isinstance(error, aiohttp.ClientConnectorError):
        if error.os_error.errno == errno.ECONNREFUSED:
            return RpcOutcome.REFUSED, "connection refused"
        return RpcOutcome.ERROR, f"cannot connect: {error.os_error}"
    return RpcOutcome.ERROR, f"{type(error).__name__}: {error}"


async def _post_once(
    session: aiohttp.ClientSession,
    url: URL,
    wire: bytes,
    headers: Mapping[str, str],
    server_hostname: str | None,
) -> tuple[int, str]:
    """The answer's status, and the start of its text when it is not 2xx."""
    # A large body goes as a stream (aiohttp warns that bytes over 1 MiB are written in one go).
    data = io.BytesIO(wire) if len(wire) > _STREAM_BODY_BYTES else wire
    async with session.post(
        url, data=data, headers=headers, server_hostname=server_hostname
    ) as response:
        body = await response.read()  # drain, so that the connection goes back to the pool
        ok = 200 <= response.status < 300
        return response.status, "" if ok else body[:300].decode("utf-8", "replace")


def _messages_url(peer: NodeId, base: str) -> URL:
    url = URL(base.rstrip("/") + MESSAGES_PATH)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"peer {peer}: base URL must be http(s)://host:port, got {base!r}")
    return url
