"""The receiving end of peer RPC: the lanes' streams and `POST /nacos/v1/ns/raft/messages`.

Senders keep one stream open per lane (`GET /nacos/v1/ns/raft/stream`, a WebSocket whose
binary messages are signed batches, see `frames`); the POST route carries one batch per
request, for builds before streams (a sender falls back to it when the stream route is
missing) and for tools. The upgrade and every frame are checked as a request and its body
are below; a frame that does not hold closes its stream with the reason.

A request carries one batch of envelopes (see `codec`). The handler checks the signature's
headers (cluster id, sender, recipient, time: see `signing`), reads the body as sent (at most
`max_body_bytes`), checks the signature over it and takes its nonce, and only then
decompresses (at most `max_body_bytes` again) and decodes. It drops envelopes whose sender is
not the request's signer or whose recipient is not this node, hands the rest to `deliver` in
batch order and answers 204 at once: a reply is its own message travelling the other way
(docs/conventions.md#the-ready-contract).

Peer limits are their own: the body limit (64 MiB by default) is not the client API's, and
this handler reads the stream itself, so the application's `client_max_size` never applies.
The node runs its port with `auto_decompress=False`; a runner that inflates bodies itself
would make every gzip'd batch fail its signature (it signs the bytes as sent).

Refusals never reach the core: a signature that does not hold (missing, another cluster,
stale, replayed, wrong) is answered 403, an undecodable body 400, an oversized one 413. Each
is counted, and logged once when it starts for a remote host (not once per request: a
misconfigured peer sends ten batches a second). A node without peers has no such route.

Only when the process started with `NARAFT_FAILPOINTS` set (fault campaigns), a debug route
`GET|PUT /naraft/v1/debug/failpoints` shows or replaces the transport failpoints (see
`client.py`), and answers only requests from the loopback address. Otherwise it does not exist.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final, Protocol

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from naraft.raft.messages import Envelope
from naraft.raft.types import NodeId
from naraft.transport.client import FAILPOINTS, parse_link_faults
from naraft.transport.codec import (
    GZIP_ENCODING,
    GZIP_MAGIC,
    MAX_BODY_BYTES,
    MESSAGES_PATH,
    BodyTooLargeError,
    CodecError,
    decode_batch,
    decompress,
)
from naraft.transport.frames import (
    FRAME_METHOD,
    MAX_AUTH_BYTES,
    MAX_FRAME_HEADER,
    STREAM_PATH,
    decode_frame,
)
from naraft.transport.members import MemberView
from naraft.transport.signing import (
    CLUSTER_HEADER,
    DEFAULT_WINDOW_MS,
    RECIPIENT_HEADER,
    SENDER_HEADER,
    Claim,
    PeerVerifier,
    Rejection,
    SignatureError,
    default_cluster_id,
)
from naraft.transport.version import (
    BEFORE_HEADER,
    CURRENT,
    INCOMPATIBLE_STATUS,
    PROTOCOL_HEADER,
    ProtocolRange,
    meets_floor,
    parse_range,
)

logger = logging.getLogger(__name__)

_MAX_LOGGED_SOURCES: Final = 1024  # bounds the memory of who was already logged
FAILPOINTS_PATH: Final = "/naraft/v1/debug/failpoints"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
_MAX_CLOSE_REASON: Final = 120  # a WebSocket close reason is at most 123 bytes
DEFAULT_STREAM_HEARTBEAT_SECONDS: Final = 10.0
OPEN_STREAMS: Final = web.AppKey("naraft_peer_streams", weakref.WeakSet[web.WebSocketResponse])


class InboundMetrics(Protocol):
    """What the receiving side reports; `naraft.metrics` implements it with Prometheus."""

    def received(self, peer: NodeId, messages: int) -> None:
        """`messages` envelopes from `peer` were handed to `deliver`."""
        ...

    def rejected(self, reason: Rejection) -> None:
        """One batch (or, for sender and recipient checks, one envelope) was refused."""
        ...


class NoInboundMetrics:
    """The default `InboundMetrics`: records nothing."""

    def received(self, peer: NodeId, messages: int) -> None:
        pass

    def rejected(self, reason: Rejection) -> None:
        pass


def peer_routes(
    deliver: Callable[[Envelope], None],
    secret: bytes | None,
    known_peers: Collection[str],
    metrics: InboundMetrics | None = None,
    *,
    self_id: NodeId | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    cluster_id: str | None = None,
    window_ms: int = DEFAULT_WINDOW_MS,
    protocol: ProtocolRange = CURRENT,
    version_floor: Callable[[], int] = lambda: 1,
    streams: bool = True,
    stream_heartbeat_seconds: float = DEFAULT_STREAM_HEARTBEAT_SECONDS,
    on_stream_end: Callable[[NodeId], None] | None = None,
) -> list[web.RouteDef]:
    """The routes for `POST MESSAGES_PATH` and the peer streams (`GET STREAM_PATH`), to add
    to the node's application (`track_streams` lets it close the streams on shutdown).

    - `deliver` is called once per accepted envelope, in batch order, on the event loop; it
      must not block (`Replica.deliver` puts on its inbox). Whatever it raises is a bug.
    - `secret` None accepts unsigned batches (tests and single-node setups only).
    - A request must be signed by one of `known_peers` for `self_id` (when given) in cluster
      `cluster_id` (default: derived from the secret) within `window_ms` of now, once.
    - Envelopes whose sender is not in `known_peers` (or not the request's signer), or (when
      `self_id` is given) whose recipient is not `self_id`, are dropped and counted.
    - `max_body_bytes` bounds the body as sent and again after decompression, whatever the
      application's `client_max_size`.
    - A sender whose peer protocol range (`version.PROTOCOL_HEADER`) shares no version with
      `protocol` is answered 426 with this node's range, and logged once (`version`). So
      is one that does not speak `version_floor()`, the version the cluster has recorded:
      it could not read every entry of the log.
    - No peers: no route (a standalone node serves no peer traffic); a `MemberView` always
      has the route, as members may come.
    - `streams` False leaves the stream route out: a stand-in for builds before streams,
      whose senders POST (tests of mixed versions).
    - A stream pings its sender every `stream_heartbeat_seconds` and closes when no pong
      comes within half of that: a half-open connection does not hold a peer slot for long.
    - `on_stream_end(sender)` is called on the event loop when an admitted stream ends, for
      whatever reason. A process that dies has its sockets closed by the kernel, so this is
      the first sign of a crashed leader (`naraft.leader_watch` then probes its port); an
      end alone proves nothing (a restart, a broken connection), and must not be taken for
      a crash.
    """
    # A `MemberView` is read as it changes (membership changes); anything else is copied.
    peers: Collection[str] = (
        known_peers if isinstance(known_peers, MemberView) else frozenset(known_peers)
    )
    verifier = PeerVerifier(
        secret,
        cluster_id=cluster_id if cluster_id is not None else default_cluster_id(secret),
        self_id=self_id,
        members=peers,
        window_ms=window_ms,
    )
    inbox = _Inbox(
        deliver=deliver,
        verifier=verifier,
        known_peers=peers,
        metrics=metrics if metrics is not None else NoInboundMetrics(),
        self_id=self_id,
        max_body_bytes=max_body_bytes,
        protocol=protocol,
        version_floor=version_floor,
        heartbeat_seconds=stream_heartbeat_seconds,
        on_stream_end=on_stream_end,
    )
    serve = isinstance(peers, MemberView) or bool(peers)
    routes = [web.post(MESSAGES_PATH, inbox.on_messages)] if serve else []
    if serve and streams:
        routes.append(web.get(STREAM_PATH, inbox.on_stream))
    if FAILPOINTS.enabled:
        routes += [
            web.get(FAILPOINTS_PATH, _show_failpoints),
            web.put(FAILPOINTS_PATH, _set_failpoints),
        ]
    return routes


async def _show_failpoints(request: web.Request) -> web.Response:
    if request.remote not in _LOOPBACK:
        return web.Response(status=403, text="failpoints: loopback only")
    faults = FAILPOINTS.faults
    return web.json_response(
        {
            "loss": faults.loss,
            "duplicate": faults.duplicate,
            "reorder": faults.reorder,
            "delay_ms": faults.delay_ms,
            "to": sorted(faults.recipients),
            "seed": faults.seed,
        }
    )


async def _set_failpoints(request: web.Request) -> web.Response:
    """Replace the transport failpoints with the spec in the body (empty: none)."""
    if request.remote not in _LOOPBACK:
        return web.Response(status=403, text="failpoints: loopback only")
    spec = (await request.read()).decode("utf-8", "replace")
    try:
        faults = parse_link_faults(spec)
    except ValueError as error:
        return web.Response(status=400, text=str(error))
    FAILPOINTS.set(faults)
    logger.warning("transport failpoints set to %r", spec)
    return await _show_failpoints(request)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request's body as sent, read from the stream by a peer route itself, so that the
    client API's `client_max_size` never applies. Raises `BodyTooLargeError` past `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class _UnreadableBodyError(CodecError):
    """The request's body stream itself failed (bad gzip under auto_decompress)."""


class _Inbox:
    """The handler's state: configuration and who has been logged as refused."""

    def __init__(
        self,
        *,
        deliver: Callable[[Envelope], None],
        verifier: PeerVerifier,
        known_peers: Collection[str],
        metrics: InboundMetrics,
        self_id: NodeId | None,
        max_body_bytes: int,
        protocol: ProtocolRange,
        version_floor: Callable[[], int],
        heartbeat_seconds: float,
        on_stream_end: Callable[[NodeId], None] | None,
    ) -> None:
        self._deliver = deliver
        self._on_stream_end = on_stream_end
        self._heartbeat_seconds = heartbeat_seconds
        self._verifier = verifier
        self._known_peers = known_peers
        self._metrics = metrics
        self._self_id = self_id
        self._max_body_bytes = max_body_bytes
        self._protocol = protocol
        self._version_floor = version_floor
        self._logged: set[tuple[str, Rejection]] = set()  # (source, reason) already logged

    async def on_messages(self, request: web.Request) -> web.Response:
        remote = request.remote or "unknown"
        claim, refusal = self._request_claim(request)
        if refusal is not None:
            return refusal
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        try:
            wire = await self._read_wire(request, encoding)
            envelopes = self._open(claim, wire, encoding)
        except _UnreadableBodyError as error:
            # aiohttp drops this connection after the response (it cannot drain the body,
            # and logs that): tell the client not to reuse it.
            response = self._refuse(remote, Rejection.UNDECODABLE, 400, str(error))
            response.force_close()
            return response
        except (SignatureError, CodecError) as error:
            reason, status, detail = _refusal(error)
            return self._refuse(remote, reason, status, detail)
        self._forget(remote)
        self._deliver_all(envelopes, claim)
        return web.Response(status=204)

    async def on_stream(self, request: web.Request) -> web.StreamResponse:
        """A lane's stream (`frames`): the upgrade checked as a request with an empty body,
        then each frame as a batch. A refused frame closes the stream."""
        remote = request.remote or "unknown"
        claim, refusal = self._request_claim(request)
        if refusal is not None:
            return refusal
        try:
            self._verifier.admit(claim, b"")
        except SignatureError as error:
            return self._refuse(remote, error.reason, 403, error.detail)
        max_frame = 2 + MAX_AUTH_BYTES + self._max_body_bytes
        stream = web.WebSocketResponse(
            autoping=True, heartbeat=self._heartbeat_seconds, compress=False, max_msg_size=max_frame
        )
        if not stream.can_prepare(request).ok:
            return self._refuse(remote, Rejection.UNDECODABLE, 400, "not a WebSocket upgrade")
        stream.headers[MAX_FRAME_HEADER] = str(max_frame)
        stream.headers[PROTOCOL_HEADER] = str(self._protocol)  # the sender picks a batch format
        await stream.prepare(request)
        self._forget(remote)
        open_streams = request.app.get(OPEN_STREAMS)
        if open_streams is not None:
            open_streams.add(stream)
        try:
            await self._read_frames(remote, request.raw_path, claim, stream)
        finally:
            if open_streams is not None:
                open_streams.discard(stream)
            if self._on_stream_end is not None:
                # unsigned (no secret: tests and single-node setups) names its sender too
                sender = claim.sender if claim is not None else request.headers.get(SENDER_HEADER)
                if sender:
                    self._on_stream_end(NodeId(sender))
        return stream

    async def _read_frames(
        self, remote: str, path: str, upgrade: Claim | None, stream: web.WebSocketResponse
    ) -> None:
        async for message in stream:
            if message.type is WSMsgType.BINARY:
                try:
                    encoding, fields, wire = decode_frame(message.data)
                    claim = self._frame_claim(path, upgrade, fields, encoding)
                    envelopes = self._open(claim, wire, encoding)
                except (SignatureError, CodecError) as error:
                    reason, _status, detail = _refusal(error)
                    self._refuse(remote, reason, WSCloseCode.POLICY_VIOLATION, detail)
                    await stream.close(
                        code=WSCloseCode.POLICY_VIOLATION,
                        message=f"{reason}: {detail}".encode()[:_MAX_CLOSE_REASON],
                    )
                    return
                self._deliver_all(envelopes, claim)
            elif message.type is WSMsgType.ERROR:
                # aiohttp has closed the stream already (1009 for a frame over the limit)
                too_large = getattr(message.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
                reason = Rejection.TOO_LARGE if too_large else Rejection.UNDECODABLE
                self._refuse(remote, reason, stream.close_code or 0, str(message.data))
                return
            else:
                self._refuse(remote, Rejection.UNDECODABLE, 1003, "a text frame on a stream")
                await stream.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"binary only")
                return

    def _frame_claim(
        self, path: str, upgrade: Claim | None, fields: Mapping[str, str], encoding: str
    ) -> Claim | None:
        """A frame's claim: cluster, sender and recipient are the stream's."""
        if upgrade is None:
            return None  # no secret
        headers = {
            CLUSTER_HEADER: upgrade.cluster,
            SENDER_HEADER: upgrade.sender,
            RECIPIENT_HEADER: upgrade.recipient,
            "Content-Encoding": encoding,
            **fields,
        }
        return self._verifier.claim(FRAME_METHOD, path, headers)

    def _open(self, claim: Claim | None, wire: bytes, encoding: str) -> tuple[Envelope, ...]:
        """The envelopes of a batch as sent: signature checked (and its nonce taken) before
        anything is inflated, so that a forged gzip bomb costs one hash, not 64 MiB."""
        self._verifier.admit(claim, wire)
        return decode_batch(self._inflate(encoding, wire))

    def _deliver_all(self, envelopes: Sequence[Envelope], claim: Claim | None) -> None:
        delivered: dict[NodeId, int] = {}
        for envelope in envelopes:
            reason = self._check(envelope, claim)
            if reason is not None:
                self._metrics.rejected(reason)
                self._log_once(
                    envelope.sender,
                    reason,
                    "dropped peer message reason=%s sender=%s recipient=%s",
                    reason,
                    envelope.sender,
                    envelope.recipient,
                )
                continue
            self._deliver(envelope)
            delivered[envelope.sender] = delivered.get(envelope.sender, 0) + 1
        for peer, count in delivered.items():
            self._metrics.received(peer, count)

    def _request_claim(self, request: web.Request) -> tuple[Claim | None, web.Response | None]:
        """What the request's signature headers claim, or the answer that refuses it (a
        signature header that does not hold, or a protocol range that shares no version)."""
        try:
            claim = self._verifier.claim(request.method, request.raw_path, request.headers)
        except SignatureError as error:
            remote = request.remote or "unknown"
            return None, self._refuse(remote, error.reason, 403, error.detail)
        return claim, self._incompatible(request, claim)

    def _incompatible(self, request: web.Request, claim: Claim | None) -> web.Response | None:
        """The 426 answer to a sender whose protocol range shares no version with ours, or
        does not reach the version the cluster has recorded."""
        header = request.headers.get(PROTOCOL_HEADER)
        try:
            theirs = BEFORE_HEADER if header is None else parse_range(header)
        except ValueError as error:
            return self._refuse(request.remote or "unknown", Rejection.UNDECODABLE, 400,
                                f"{PROTOCOL_HEADER}: {error}")  # fmt: skip
        floor = self._version_floor()
        shares = theirs.shares(self._protocol)
        if shares and meets_floor(theirs, floor):
            return None
        sender = claim.sender if claim is not None else request.remote or "unknown"
        self._metrics.rejected(Rejection.INCOMPATIBLE)
        if shares:  # it reads our batches, but not every command the log may hold
            rule = f"the cluster has recorded version {floor}"
            advice = "a member may not go back to a build that cannot read the log"
        else:
            rule = f"this node {self._protocol}"
            advice = "members must share a version (upgrade one version at a time)"
        self._log_once(
            sender,
            Rejection.INCOMPATIBLE,
            "refusing peer %s: it speaks peer protocol %s, %s; %s",
            sender,
            theirs,
            rule,
            advice,
            level=logging.ERROR,
        )
        ours = (
            f"the cluster has recorded version {floor}"
            if shares
            else (f"{self._self_id or 'this node'} speaks {self._protocol}")
        )
        return web.Response(
            status=INCOMPATIBLE_STATUS,
            text=f"incompatible peer protocol: {sender} speaks {theirs}, {ours}",
            headers={PROTOCOL_HEADER: str(self._protocol)},
        )

    async def _read_wire(self, request: web.Request, encoding: str) -> bytes:
        """The body as sent (still compressed), at most `max_body_bytes` long."""
        if encoding not in (GZIP_ENCODING, "identity"):
            raise CodecError("Content-Encoding", f"unsupported {encoding!r}")
        try:
            return await read_limited(request, self._max_body_bytes)
        except (web.RequestPayloadError, HttpProcessingError, ConnectionResetError) as error:
            # The runner's auto_decompress met bad gzip, the body's framing is broken, or the
            # sender went away mid-body (killed: the chaos campaign found this one).
            raise _UnreadableBodyError("body", f"unreadable: {error}") from error

    def _inflate(self, encoding: str, wire: bytes) -> bytes:
        """The uncompressed body, at most `max_body_bytes` long."""
        # With auto_decompress the runner has already gunzipped; JSON never starts with 0x1f.
        if encoding == GZIP_ENCODING and wire.startswith(GZIP_MAGIC):
            return decompress(wire, max_bytes=self._max_body_bytes)
        return wire

    def _check(self, envelope: Envelope, claim: Claim | None) -> Rejection | None:
        if envelope.sender not in self._known_peers:
            return Rejection.UNKNOWN_SENDER
        if claim is not None and envelope.sender != claim.sender:
            return Rejection.SENDER_MISMATCH
        if self._self_id is not None and envelope.recipient != self._self_id:
            return Rejection.WRONG_RECIPIENT
        return None

    def _refuse(self, remote: str, reason: Rejection, status: int, detail: str) -> web.Response:
        """Count, log once, and the answer to a refused request (`status`: for a stream,
        the close code)."""
        self._metrics.rejected(reason)
        self._log_once(
            remote,
            reason,
            "refused peer batch reason=%s remote=%s status=%d detail=%s",
            reason,
            remote,
            status,
            detail,
        )
        return web.Response(status=status, text=f"{reason}: {detail}")

    def _log_once(
        self,
        source: str,
        reason: Rejection,
        fmt: str,
        *args: object,
        level: int = logging.WARNING,
    ) -> None:
        """Log a refusal at `level` the first time for (source, reason), then at DEBUG."""
        key = (source, reason)
        first = key not in self._logged
        level = level if first else logging.DEBUG
        if first:
            if len(self._logged) >= _MAX_LOGGED_SOURCES:
                self._logged.clear()
            self._logged.add(key)
        logger.log(level, fmt, *args)

    def _forget(self, remote: str) -> None:
        """`remote` sent a good batch: log its next refusal again."""
        if self._logged:
            self._logged = {key for key in self._logged if key[0] != remote}


def _refusal(error: SignatureError | CodecError) -> tuple[Rejection, int, str]:
    """The reason, HTTP status and detail of a refused batch."""
    if isinstance(error, SignatureError):
        return error.reason, 403, error.detail
    if isinstance(error, BodyTooLargeError):
        return Rejection.TOO_LARGE, 413, str(error)
    return Rejection.UNDECODABLE, 400, str(error)


async def close_streams(app: web.Application) -> None:
    """Close the open peer streams (an `on_shutdown` handler): a stream's handler would
    otherwise hold the runner's cleanup for its whole shutdown timeout."""
    for stream in list(app.get(OPEN_STREAMS, ())):
        await stream.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down")


def track_streams(app: web.Application) -> None:
    """Let `app` close its peer streams when it shuts down (before it is started)."""
    app[OPEN_STREAMS] = weakref.WeakSet()
    app.on_shutdown.append(close_streams)
