"""The receiving end of peer RPC: `POST /nacos/v1/ns/raft/messages`.

A request carries one batch of envelopes (see `codec`). The handler checks the cluster
secret's signature, decompresses, decodes, drops envelopes from senders outside the cluster,
hands the rest to `deliver` in batch order and answers 204 at once: a reply is its own
message travelling the other way (style guide §11.2).

Refusals never reach the core: a missing or wrong signature is answered 403, an undecodable
body 400, an oversized one 413. Each is counted, and logged when it starts for a remote host
(not once per request: a misconfigured peer sends ten batches a second).

Only when the process started with `NARAFT_FAILPOINTS` set (fault campaigns), a debug route
`GET|PUT /naraft/v1/debug/failpoints` shows or replaces the transport failpoints (see
`client.py`), and answers only requests from the loopback address. Otherwise it does not exist.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection
from typing import Final, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from naraft.raft.messages import Envelope
from naraft.raft.types import NodeId
from naraft.transport import auth
from naraft.transport.client import CLUSTER_HEADER, FAILPOINTS, parse_link_faults
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

logger = logging.getLogger(__name__)

_MAX_LOGGED_SOURCES: Final = 1024  # bounds the memory of who was already logged
FAILPOINTS_PATH: Final = "/naraft/v1/debug/failpoints"
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})


class Rejection(enum.StrEnum):
    """Why a batch, or one envelope of it, was not delivered."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    UNDECODABLE = "undecodable"
    TOO_LARGE = "too_large"
    UNKNOWN_SENDER = "unknown_sender"
    WRONG_RECIPIENT = "wrong_recipient"
    WRONG_CLUSTER = "wrong_cluster"


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
    known_peers: Collection[NodeId],
    metrics: InboundMetrics | None = None,
    *,
    self_id: NodeId | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    cluster_id: str | None = None,
) -> list[web.RouteDef]:
    """The route for `POST MESSAGES_PATH`, to add to the node's application.

    - `deliver` is called once per accepted envelope, in batch order, on the event loop; it
      must not block (`Replica.deliver` puts on its inbox). Whatever it raises is a bug.
    - `secret` None accepts unsigned batches (tests and single-node setups only).
    - Envelopes whose sender is not in `known_peers`, or (when `self_id` is given) whose
      recipient is not `self_id`, are dropped and counted.
    - `max_body_bytes` bounds the body after decompression, whatever the application's
      `client_max_size`.
    - With `cluster_id`, a batch whose `X-Naraft-Cluster` header is missing or names
      another cluster (a node started on another cluster's data, or messages of an earlier
      incarnation with the same secret) is refused with 403 before anything is decoded.

    The body is read as sent whether or not the server runner decompresses request bodies
    (aiohttp's `auto_decompress`); running the peer port with `auto_decompress=False` keeps
    the gzip-bomb check in this handler.
    """
    inbox = _Inbox(
        deliver=deliver,
        secret=secret,
        known_peers=frozenset(known_peers),
        metrics=metrics if metrics is not None else NoInboundMetrics(),
        self_id=self_id,
        max_body_bytes=max_body_bytes,
        cluster_id=cluster_id,
    )
    routes = [web.post(MESSAGES_PATH, inbox.on_messages)]
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


class _UnreadableBodyError(CodecError):
    """The request's body stream itself failed (bad gzip under auto_decompress)."""


class _Inbox:
    """The handler's state: configuration and who has been logged as refused."""

    def __init__(
        self,
        *,
        deliver: Callable[[Envelope], None],
        secret: bytes | None,
        known_peers: frozenset[NodeId],
        metrics: InboundMetrics,
        self_id: NodeId | None,
        max_body_bytes: int,
        cluster_id: str | None = None,
    ) -> None:
        self._deliver = deliver
        self._cluster_id = cluster_id
        self._secret = secret
        self._known_peers = known_peers
        self._metrics = metrics
        self._self_id = self_id
        self._max_body_bytes = max_body_bytes
        self._logged: set[tuple[str, Rejection]] = set()  # (source, reason) already logged

    async def on_messages(self, request: web.Request) -> web.Response:
        remote = request.remote or "unknown"
        if self._cluster_id is not None:
            theirs = request.headers.get(CLUSTER_HEADER)
            if theirs != self._cluster_id:
                detail = f"cluster {theirs!r} is not this cluster {self._cluster_id}"
                return self._refuse(remote, Rejection.WRONG_CLUSTER, 403, detail[:200])
        try:
            body = await self._read_body(request)
        except BodyTooLargeError as error:
            return self._refuse(remote, Rejection.TOO_LARGE, 413, str(error))
        except _UnreadableBodyError as error:
            # aiohttp drops this connection after the response (it cannot drain the body,
            # and logs that): tell the client not to reuse it.
            response = self._refuse(remote, Rejection.UNDECODABLE, 400, str(error))
            response.force_close()
            return response
        except CodecError as error:
            return self._refuse(remote, Rejection.UNDECODABLE, 400, str(error))

        if self._secret is not None:
            signature = request.headers.get(auth.SIGNATURE_HEADER)
            if signature is None:
                return self._refuse(remote, Rejection.MISSING_SIGNATURE, 403, "missing signature")
            if not auth.verify(self._secret, body, signature):
                return self._refuse(remote, Rejection.BAD_SIGNATURE, 403, "bad signature")

        try:
            envelopes = decode_batch(body)
        except CodecError as error:
            return self._refuse(remote, Rejection.UNDECODABLE, 400, str(error))

        self._forget(remote)
        delivered: dict[NodeId, int] = {}
        for envelope in envelopes:
            reason = self._check(envelope)
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
        return web.Response(status=204)

    async def _read_body(self, request: web.Request) -> bytes:
        """The uncompressed body, at most `max_body_bytes` long."""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in (GZIP_ENCODING, "identity"):
            raise CodecError("Content-Encoding", f"unsupported {encoding!r}")
        # Read the stream ourselves: request.read() would apply the app's client_max_size.
        limit = self._max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLargeError(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError(limit)
                chunks.append(chunk)
        except (web.RequestPayloadError, HttpProcessingError, ConnectionResetError) as error:
            # The runner's auto_decompress met bad gzip, the body's framing is broken, or the
            # sender went away mid-body (killed: the chaos campaign found this one).
            raise _UnreadableBodyError("body", f"unreadable: {error}") from error
        body = b"".join(chunks)
        # With auto_decompress the runner has already gunzipped; JSON never starts with 0x1f.
        if encoding == GZIP_ENCODING and body.startswith(GZIP_MAGIC):
            body = decompress(body, max_bytes=limit)
        return body

    def _check(self, envelope: Envelope) -> Rejection | None:
        if envelope.sender not in self._known_peers:
            return Rejection.UNKNOWN_SENDER
        if self._self_id is not None and envelope.recipient != self._self_id:
            return Rejection.WRONG_RECIPIENT
        return None

    def _refuse(self, remote: str, reason: Rejection, status: int, detail: str) -> web.Response:
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

    def _log_once(self, source: str, reason: Rejection, fmt: str, *args: object) -> None:
        """Log a refusal at WARNING the first time for (source, reason), then at DEBUG."""
        key = (source, reason)
        level = logging.DEBUG if key in self._logged else logging.WARNING
        if level == logging.WARNING:
            if len(self._logged) >= _MAX_LOGGED_SOURCES:
                self._logged.clear()
            self._logged.add(key)
        logger.log(level, fmt, *args)

    def _forget(self, remote: str) -> None:
        """`remote` sent a good batch: log its next refusal again."""
        if self._logged:
            self._logged = {key for key in self._logged if key[0] != remote}
