"""The sending end of peer RPC: one bounded queue and one sender task per peer.

`PeerClient.send` never blocks and never raises: it puts the envelope on the recipient's
queue, dropping that queue's oldest envelope when it is full (Raft retransmits, and a slow
peer must not slow the others, style guide §15.6). Each peer's sender task takes everything
queued for it (up to `max_batch` envelopes) and POSTs it as one batch over a keep-alive
connection, gzip'd above a threshold and signed with the cluster secret. A failed batch is
dropped and counted; transport errors never propagate. Reachability is logged and reported
only when it changes.

Failpoints (fault campaigns only, off unless `NARAFT_FAILPOINTS` is set when the process
starts): `peer.loss`, `peer.duplicate` and `peer.reorder` are probabilities per batch,
`peer.delay_ms` delays each batch by a uniform draw in [0, delay_ms], `peer.to` limits them to
some recipients (`a|b`), `peer.seed` seeds their RNG. The spec is `name=value` pairs joined by
`;` (`peer.loss=0.1;peer.duplicate=0.03`); other names (`storage.*`) belong to other modules.
While the variable is set, `PUT /naraft/v1/debug/failpoints` (server.py) replaces the spec.
Every request also names its sender in `X-Naraft-Sender`, which the campaign's TCP proxy reads
to tell links apart.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import errno
import logging
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import aiohttp
from yarl import URL

import naraft
from naraft.raft.messages import Envelope
from naraft.raft.types import NodeId
from naraft.transport import auth
from naraft.transport.codec import (
    CONTENT_TYPE,
    GZIP_THRESHOLD_BYTES,
    MESSAGES_PATH,
    CodecError,
    compress_if_large,
    encode_batch,
)

logger = logging.getLogger(__name__)

RPC_MESSAGES: Final = "messages"  # the `rpc` label of a batch POST
USER_AGENT: Final = f"naraft/{naraft.__version__}"
SENDER_HEADER: Final = "X-Naraft-Sender"
CLUSTER_HEADER: Final = "X-Naraft-Cluster"  # the sender's cluster id; checked on receipt
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


class NoPeerMetrics:
    """The default `PeerMetrics`: records nothing."""

    def observe_rpc(self, peer: NodeId, rpc: str, outcome: RpcOutcome, seconds: float) -> None:
        pass

    def dropped(self, peer: NodeId, reason: DropReason, messages: int) -> None:
        pass

    def reachability(self, peer: NodeId, reachable: bool) -> None:
        pass


def default_session() -> aiohttp.ClientSession:
    """A keep-alive session whose only timeouts are the client's own `asyncio.timeout`s."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),  # at most one request in flight per peer
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": USER_AGENT},
    )


class _Outbox:
    """One peer's bounded FIFO queue; the oldest envelope goes when a new one needs room."""

    __slots__ = ("_capacity", "_items", "_nonempty")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: collections.deque[Envelope] = collections.deque()
        self._nonempty = asyncio.Event()  # set exactly when _items is not empty

    def __len__(self) -> int:
        return len(self._items)

    def put(self, envelope: Envelope) -> bool:
        """Queue `envelope`. Returns whether the oldest envelope was dropped to make room."""
        full = len(self._items) >= self._capacity
        if full:
            self._items.popleft()
        self._items.append(envelope)
        self._nonempty.set()
        return full

    async def take(self, limit: int) -> tuple[Envelope, ...]:
        """Wait for at least one envelope; return the oldest `limit` or fewer, in order."""
        await self._nonempty.wait()
        batch = tuple(self._items.popleft() for _ in range(min(limit, len(self._items))))
        if not self._items:
            self._nonempty.clear()
        return batch


class _Link:
    """Everything the client keeps about one peer."""

    __slots__ = ("held", "outbox", "peer", "reachable", "url")

    def __init__(self, peer: NodeId, url: URL, capacity: int) -> None:
        self.peer = peer
        self.url = url
        self.outbox = _Outbox(capacity)
        self.reachable = True  # optimistic until a request fails
        self.held: tuple[Envelope, ...] | None = None  # a batch the reorder failpoint holds


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
        session_factory: SessionFactory = default_session,
        metrics: PeerMetrics | None = None,
        on_peer_unreachable: Callable[[NodeId, bool], None] | None = None,
        on_peer_reachable: Callable[[NodeId], None] | None = None,
        gzip_threshold_bytes: int = GZIP_THRESHOLD_BYTES,
        cluster_id: str | None = None,
    ) -> None:
        """Raises ValueError for a bad setting or peer URL, or when `peers` holds `self_id`.

        `cluster_id` goes with every batch (`CLUSTER_HEADER`), so that a node of another
        cluster, or of an earlier incarnation of this one, drops it.

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
        if self_id in peers:
            raise ValueError(f"peers must not include this node ({self_id})")
        self._self_id = self_id
        self._secret = secret
        self._cluster_id = cluster_id
        self._timeout_seconds = timeout_seconds
        self._max_batch = max_batch
        self._session_factory = session_factory
        self._metrics: PeerMetrics = metrics if metrics is not None else NoPeerMetrics()
        self._on_peer_unreachable = on_peer_unreachable
        self._on_peer_reachable = on_peer_reachable
        self._gzip_threshold_bytes = gzip_threshold_bytes
        self._links: dict[NodeId, _Link] = {
            peer: _Link(peer, _messages_url(peer, base), queue_size) for peer, base in peers.items()
        }
        self._running = False

    @property
    def peers(self) -> frozenset[NodeId]:
        return frozenset(self._links)

    def peer_reachable(self, peer: NodeId) -> bool:
        """Whether the last request to `peer` succeeded (True before any). KeyError if unknown."""
        return self._links[peer].reachable

    def queued(self, peer: NodeId) -> int:
        """How many envelopes wait in `peer`'s queue. KeyError if unknown."""
        return len(self._links[peer].outbox)

    def send(self, envelope: Envelope) -> None:
        """Queue `envelope` for its recipient; never blocks, never raises, may lose it."""
        link = self._links.get(envelope.recipient)
        if link is None:
            logger.debug("dropped message for unknown peer recipient=%s", envelope.recipient)
            self._metrics.dropped(envelope.recipient, DropReason.UNKNOWN_PEER, 1)
            return
        if link.outbox.put(envelope):
            self._metrics.dropped(link.peer, DropReason.QUEUE_FULL, 1)

    async def run(self) -> None:
        """Send until cancelled: one task per peer, one session, closed on the way out."""
        if self._running:
            raise RuntimeError("PeerClient.run is already running")
        self._running = True
        try:
            async with self._session_factory() as session, asyncio.TaskGroup() as tasks:
                for link in self._links.values():
                    tasks.create_task(
                        self._send_forever(session, link), name=f"peer-sender-{link.peer}"
                    )
        finally:
            self._running = False

    async def _send_forever(self, session: aiohttp.ClientSession, link: _Link) -> None:
        while True:
            batch = await link.outbox.take(self._max_batch)
            if FAILPOINTS.enabled:
                await self._send_with_faults(session, link, batch)
            else:
                await self._send_batch(session, link, batch)

    async def _send_with_faults(
        self, session: aiohttp.ClientSession, link: _Link, batch: Sequence[Envelope]
    ) -> None:
        """Send `batch` through the injected faults: loss, delay, reordering, duplication."""
        faults, rng = FAILPOINTS.faults, FAILPOINTS.rng
        held, link.held = link.held, None
        if not faults.applies_to(link.peer):
            await self._send_batch(session, link, batch)
            if held is not None:
                await self._send_batch(session, link, held)
            return
        if rng.random() < faults.loss:
            logger.debug("failpoint peer.loss dropped a batch peer=%s", link.peer)
            return
        if faults.delay_ms:
            await asyncio.sleep(rng.uniform(0, faults.delay_ms) / 1000)
        if held is None and rng.random() < faults.reorder:
            link.held = tuple(batch)  # sent after the next batch
            return
        await self._send_batch(session, link, batch)
        if rng.random() < faults.duplicate:
            await self._send_batch(session, link, batch)
        if held is not None:
            await self._send_batch(session, link, held)

    async def _send_batch(
        self, session: aiohttp.ClientSession, link: _Link, batch: Sequence[Envelope]
    ) -> None:
        try:
            body = encode_batch(batch)
        except CodecError:
            logger.exception("cannot encode batch peer=%s messages=%d", link.peer, len(batch))
            self._metrics.dropped(link.peer, DropReason.UNENCODABLE, len(batch))
            return
        headers = {"Content-Type": CONTENT_TYPE, SENDER_HEADER: self._self_id}
        if self._cluster_id is not None:
            headers[CLUSTER_HEADER] = self._cluster_id
        if self._secret is not None:
            headers[auth.SIGNATURE_HEADER] = auth.sign(self._secret, body)
        wire, encoding = compress_if_large(body, threshold_bytes=self._gzip_threshold_bytes)
        if encoding is not None:
            headers["Content-Encoding"] = encoding

        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome, detail = await self._post(session, link.url, wire, headers)
        self._metrics.observe_rpc(link.peer, RPC_MESSAGES, outcome, loop.time() - started)
        if outcome is RpcOutcome.OK:
            self._mark_reachable(link)
        else:
            self._metrics.dropped(link.peer, DropReason.SEND_FAILED, len(batch))
            self._mark_unreachable(link, outcome, detail)

    async def _post(
        self, session: aiohttp.ClientSession, url: URL, wire: bytes, headers: Mapping[str, str]
    ) -> tuple[RpcOutcome, str]:
        """POST one batch; returns the outcome and, for a failure, what went wrong."""
        try:
            async with asyncio.timeout(self._timeout_seconds):
                try:
                    status = await _post_once(session, url, wire, headers)
                except aiohttp.ServerDisconnectedError:
                    # A pooled keep-alive connection the peer had already closed (it
                    # restarted): try once on a fresh one. A duplicate is harmless to Raft.
                    status = await _post_once(session, url, wire, headers)
        except TimeoutError:
            return RpcOutcome.TIMEOUT, f"no answer within {self._timeout_seconds} s"
        except aiohttp.ClientConnectorError as error:
            if error.os_error.errno == errno.ECONNREFUSED:
                return RpcOutcome.REFUSED, "connection refused"
            return RpcOutcome.ERROR, f"cannot connect: {error.os_error}"
        except (aiohttp.ClientError, OSError) as error:
            return RpcOutcome.ERROR, f"{type(error).__name__}: {error}"
        if 200 <= status < 300:
            return RpcOutcome.OK, ""
        return RpcOutcome.REJECTED, f"answered HTTP {status}"

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


async def _post_once(
    session: aiohttp.ClientSession, url: URL, wire: bytes, headers: Mapping[str, str]
) -> int:
    async with session.post(url, data=wire, headers=headers) as response:
        await response.read()  # drain, so that the connection goes back to the pool
        return response.status


def _messages_url(peer: NodeId, base: str) -> URL:
    url = URL(base.rstrip("/") + MESSAGES_PATH)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"peer {peer}: base URL must be http(s)://host:port, got {base!r}")
    return url
