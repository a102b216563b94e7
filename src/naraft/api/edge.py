"""The limits every HTTP server needs: read timeouts, a connection cap, malformed input.

aiohttp reads headers and bodies without a deadline and accepts every connection, so a
client that sends half a request, or opens thousands of sockets, holds the node's memory and
descriptors for as long as it likes. `GuardedHandler` is aiohttp's connection protocol with:

- a header deadline: from a connection's first byte (or its opening) until the request's
  headers are complete, `header_timeout` seconds, else the connection is closed;
- a bound on the headers' total size (`MAX_HEADER_BYTES`; aiohttp bounds each line only);
- a body deadline: once the headers are in, the declared body must arrive within
  `body_timeout` seconds, else 408 (`edge_middleware` arms it only while the body is
  incomplete);
- a connection cap kept by `ConnectionGate`: client connections beyond `max_clients` are
  answered 503 and closed. Peers share the port, so a connection whose first request is a
  peer route is counted apart, under its own cap. An unclassified connection (no complete
  request yet) counts as a client; when every slot is taken, the oldest of those makes room
  for a new one, so stalled sockets cannot lock peers out;
- malformed HTTP (a bad request line, header or chunk) answered 400 with one log line,
  where aiohttp logs a traceback for each;
- a request that will wait long for its answer (a config long poll) can take its connection
  out of aiohttp (`GuardedHandler.hand_over`): a `HeldConnection` keeps only the transport
  and writes the answer itself, then gives the connection back to a new `GuardedHandler`.
  A request held inside aiohttp costs about 16 KB (its parser, tasks, request and the
  middleware frames); a held connection a few hundred bytes plus the transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, Protocol

from aiohttp import HttpVersion, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from naraft.api.errors import (
    EDGE_BAD_REQUEST,
    EDGE_BODY_TIMEOUT,
    EDGE_TOO_MANY_CONNECTIONS,
    Handler,
)

logger = logging.getLogger(__name__)

UNCLASSIFIED_RESERVE: Final = 32
"""Slots beyond the client cap for connections that have not sent a request yet: a peer
reconnecting while clients hold every slot lands here and is then counted as a peer."""

MAX_HEADER_BYTES: Final = 64 * 1024
"""A request line and headers larger than this are refused (431): aiohttp bounds each line
(8190 bytes) and their number (`MAX_HEADER_COUNT`), not their sum."""
MAX_HEADER_COUNT: Final = 128
"""More header lines than this are a 400 (aiohttp's parser counts them). Set here, not left
to aiohttp's default, so that an upgrade cannot move it; Tomcat, under Nacos, allows 100."""
_MAX_REASON_CHARS: Final = 200
_GRACE_SECONDS: Final = 0.1
"""A deadline that fires is checked once more this much later. Each libuv (uvloop) loop
iteration runs due timers before it polls its sockets: a process stopped while busy and
then resumed must first read what arrived meanwhile, or it would cut requests that are
already in its buffers."""
_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 36\r\nConnection: close\r\n\r\nrequest headers larger than 64 KiB\r\n"
)

IsPeerRequest = Callable[[web.BaseRequest], bool]
Answered = Callable[[int, int | None], None]
"""Told the status and body size once a held connection answers (499, None: the client
left first)."""
CLIENT_CLOSED: Final = 499
"""The status a request is counted and logged with when its client left before the answer
(nginx's "client closed")."""


class Gated(Protocol):
    """A connection the gate counts: it can be closed to make room."""

    def evict(self) -> None: ...


class BodyTimeoutError(RequestPayloadError):
    """The declared body did not arrive in time (answered 408)."""


class MalformedBodyError(RequestPayloadError):
    """The body broke its framing (a bad chunk) after the headers were accepted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeLimits:
    """What `GuardedHandler` and `edge_middleware` enforce (see `naraft.config.HttpLimits`)."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    max_clients: int
    max_peers: int


def one_line(text: object) -> str:
    """`text` with its whitespace collapsed and its length bounded: fit for one log line."""
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_REASON_CHARS else line[:_MAX_REASON_CHARS] + "..."


class ConnectionGate:
    """Counts open connections by kind. Dicts keep insertion order: the oldest first."""

    def __init__(self, limits: EdgeLimits) -> None:
        self._limits = limits
        self._max_peers = limits.max_peers
        self._pending: dict[Gated, None] = {}  # no request yet: counted as clients
        self._clients: dict[Gated, None] = {}
        self._peers: dict[Gated, None] = {}

    def admit(self, handler: Gated) -> None:
        """Let a new connection wait for its first request. When every slot is taken, the
        oldest unclassified connection is closed to make room (there is one: classified
        clients never exceed their cap, so the reserve is held by unclassified ones)."""
        if len(self._pending) + len(self._clients) >= self._limits.max_clients + (
            UNCLASSIFIED_RESERVE
        ):
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            oldest.evict()
        self._pending[handler] = None

    def classify(self, handler: Gated, *, peer: bool) -> bool:
        """Record the kind of a connection from its first request; False when that kind
        is over its cap (the request is then refused with 503)."""
        if handler not in self._pending:
            return True  # classified by an earlier request
        del self._pending[handler]
        if peer:
            if len(self._peers) >= self._max_peers:
                return False
            self._peers[handler] = None
            return True
        if len(self._clients) >= self._limits.max_clients:
            return False
        self._clients[handler] = None
        return True

    def set_max_peers(self, cap: int) -> None:
        """A new peer cap (the members changed): it judges connections classified from now
        on; open ones stay."""
        if cap < 1:
            raise ValueError(f"the peer connection cap must be >= 1, not {cap}")
        self._max_peers = cap

    def release(self, handler: Gated) -> None:
        for group in (self._pending, self._clients, self._peers):
            group.pop(handler, None)

    def transfer(self, old: Gated, new: Gated) -> None:
        """`new` takes `old`'s slot (a connection handed from one protocol to another)."""
        for group in (self._pending, self._clients, self._peers):
            if old in group:
                del group[old]
                group[new] = None
                return

    def held(self) -> list[HeldConnection]:
        """The connections handed out of aiohttp (they are clients)."""
        return [c for c in self._clients if isinstance(c, HeldConnection)]


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection protocol with deadlines, the gate and one-line 400s."""

    __slots__ = (
        "_awaiting",
        "_body_request",
        "_body_timer",
        "_gate",
        "_header_bytes",
        "_header_due",
        "_header_timer",
        "_header_wait",
        "_limits",
        "_parsed_at_arm",
        "_renew",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        gate: ConnectionGate,
        limits: EdgeLimits,
        renew: Callable[[], GuardedHandler],
        **kwargs: Any,
    ) -> None:
        """`renew` makes the protocol a held connection's next request goes to."""
        super().__init__(manager, **kwargs)
        self._gate = gate
        self._limits = limits
        self._renew = renew
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_request: web.BaseRequest | None = None  # its body is still arriving
        self._awaiting = True  # waiting for the headers of the next request
        self._header_wait = False  # those headers have begun (or the connection is new)
        self._header_due = 0.0  # when the current header wait runs out (loop time)
        self._parsed_at_arm = 0  # requests parsed when the current header wait began
        self._header_bytes = 0  # received since then

    # connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._gate.admit(self)
        super().connection_made(transport)
        self._start_header_wait()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gate.release(self)
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        body = self._body_request
        # the rest of a body its handler left unread (aiohttp drains it after the answer)
        draining = body is not None and not body.content.is_eof()
        headers = self._awaiting and not draining
        if headers:
            if not self._header_wait:
                self._start_header_wait()
            self._header_bytes += len(data)
        parsed = self._request_count
        super().data_received(data)
        if (
            headers
            and self._request_count == self._parsed_at_arm
            and self._header_bytes > MAX_HEADER_BYTES
            and self.transport is not None
        ):
            logger.info(
                "closed a connection from %s: request headers larger than %d bytes",
                self._peer(),
                MAX_HEADER_BYTES,
            )
            self.transport.write(_TOO_LARGE)
            self.force_close()  # closing flushes the answer first
            return
        if body is not None and self._request_count != parsed and not body.content.is_eof():
            # A new message while a body is incomplete can only be aiohttp's parse error
            # (a bad chunk): it would otherwise leave the handler waiting for the body.
            body.content.set_exception(MalformedBodyError("malformed body framing"))

    def evict(self) -> None:
        """Close an unclassified connection to make room for a new one."""
        logger.info(
            "connection limit reached: closed a connection from %s that sent no request yet",
            self._peer(),
        )
        self.force_close()

    # request lifecycle (called by `edge_middleware`)

    def headers_complete(self) -> None:
        # the header timer stays armed: the next wait reuses it (see _start_header_wait)
        self._awaiting = False
        self._header_wait = False
        self._body_request = None

    def start_body_deadline(self, request: web.BaseRequest) -> None:
        self._body_request = request
        self._body_timer = self._loop.call_later(
            self._limits.body_timeout_seconds, self._body_deadline, request
        )

    def request_done(self, request: web.BaseRequest) -> None:
        if request.content.is_eof():
            self._body_request = None  # else: kept while aiohttp drains the rest
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._awaiting = True

    def classify(self, *, peer: bool) -> bool:
        return self._gate.classify(self, peer=peer)

    # taking the connection out of aiohttp

    def can_hand_over(self, request: web.BaseRequest) -> bool:
        """The request was read whole and nothing else is queued behind it."""
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()
            and not self._messages
            and request.content.is_eof()
            and request.writer.output_size == 0
        )

    def hand_over(self, request: web.BaseRequest) -> HeldConnection:
        """Take the connection of `request` (`can_hand_over` is true) out of aiohttp: from
        here on it reads, writes and closes nothing of it, and forgets the connection once
        the handler returns (answer `HeldResponse`). The gate slot passes on. Uses aiohttp's
        internals: `_messages` above; the manager's `connection_lost`, which frees the
        handler once its task ends."""
        transport = self.transport
        assert transport is not None
        held = HeldConnection(
            transport,
            self._gate,
            self._renew,
            keep_alive=request.keep_alive,
            version=request.version,
        )
        self._gate.transfer(self, held)
        self._cancel_timers()
        self.keep_alive(False)  # cancels aiohttp's idle timer
        transport.set_protocol(held)
        if not transport.is_reading():
            transport.resume_reading()  # so that a client that leaves is seen
        self.transport = None
        self.force_close()  # with no transport: only ends aiohttp's loop for this connection
        if self._manager is not None:
            self._manager.connection_lost(self, None)
        return held

    # errors

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse: one log line and a plain 400, no traceback.
        A 500 (a bug of ours that escaped every middleware) keeps aiohttp's traceback."""
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        self.headers_complete()
        reason = one_line(message or exc or "malformed request")
        logger.info("bad request from %s answered %d: %s", request.remote, status, reason)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already")
        answer = web.Response(status=status, text=f"bad request: {reason}")
        answer.force_close()
        return answer

    # timers

    def _start_header_wait(self) -> None:
        """A request's headers begin: they must be complete within the header timeout.
        One timer serves every request of a connection: arming and cancelling one per
        request cost 3.5 us each. A timer that fires before the current wait's deadline
        (it was armed for an earlier request) is re-armed for the rest."""
        self._parsed_at_arm = self._request_count
        self._header_bytes = 0
        self._header_wait = True
        self._header_due = self._loop.time() + self._limits.header_timeout_seconds
        if self._header_timer is None:
            self._header_timer = self._loop.call_at(self._header_due, self._header_deadline)

    def _header_deadline(self, confirmed: bool = False) -> None:
        self._header_timer = None
        if not self._header_wait:
            return  # the wait it was armed for is over; the next one arms anew
        if self._loop.time() < self._header_due:
            self._header_timer = self._loop.call_at(self._header_due, self._header_deadline)
            return
        # A request parsed since the wait began is complete even if its handler has not
        # started yet (a process stopped and resumed runs overdue timers before waiting tasks).
        complete = self._request_count != self._parsed_at_arm
        if self._awaiting and not complete and self.transport is not None:
            if not confirmed:
                self._header_timer = self._loop.call_later(
                    _GRACE_SECONDS, self._header_deadline, True
                )
                return
            logger.info(
                "closed a connection from %s: no complete request headers within %.1f s",
                self._peer(),
                self._limits.header_timeout_seconds,
            )
            self.force_close()

    def _body_deadline(self, request: web.BaseRequest, confirmed: bool = False) -> None:
        """The handler's read fails (408 from `input_middleware`); a handler that does not
        read the body makes aiohttp's drain after the answer fail and close instead."""
        self._body_timer = None
        if not request.content.is_eof():
            if not confirmed:
                self._body_timer = self._loop.call_later(
                    _GRACE_SECONDS, self._body_deadline, request, True
                )
                return
            seconds = self._limits.body_timeout_seconds
            request.content.set_exception(
                BodyTimeoutError(f"the request body did not arrive within {seconds:.1f} s")
            )

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """aiohttp logs a traceback when draining a failed body after the answer; that
        is a client's fault, worth one line."""
        error = kwargs.get("exc_info")
        if isinstance(error, RequestPayloadError | HttpProcessingError | ConnectionError):
            logger.info("closed a connection from %s: %s", self._peer(), one_line(error))
            self.force_close()
            return
        super().log_exception(*args, **kwargs)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _peer(self) -> str:
        return _remote(self.transport)


def _remote(transport: asyncio.BaseTransport | None) -> str:
    if transport is None:
        return "?"
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def edge_middleware(is_peer: IsPeerRequest) -> Middleware:
    """The outermost middleware: classifies a connection by its first request (503 when
    its kind is over the cap), stops the header deadline and arms the body deadline."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        protocol = request.protocol
        if not isinstance(protocol, GuardedHandler):
            return await handler(request)  # a test server without the guards
        protocol.headers_complete()
        try:
            if not protocol.classify(peer=is_peer(request)):
                logger.info("too many connections: answered 503 to %s", request.remote)
                answer = web.Response(
                    status=EDGE_TOO_MANY_CONNECTIONS, text="too many connections; retry later"
                )
                answer.force_close()
                return answer
            if not request.content.is_eof():
                protocol.start_body_deadline(request)
            return await handler(request)
        finally:
            protocol.request_done(request)

    return edge


def input_middleware(max_params: int) -> Middleware:
    """Inside the error middleware: bounds the number of parameters (query plus urlencoded
    form) and turns input that cannot be decoded (not UTF-8, a broken chunked body) into a
    400 with one log line instead of a 500 with a traceback."""

    @web.middleware
    async def check_input(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            await _check_params(request, max_params)
            return await handler(request)
        except (UnicodeDecodeError, RequestPayloadError) as error:
            timed_out = isinstance(error, BodyTimeoutError)
            status = EDGE_BODY_TIMEOUT if timed_out else EDGE_BAD_REQUEST
            reason = one_line(error)
            if isinstance(error, UnicodeDecodeError):
                reason = f"the request is not valid UTF-8 ({reason})"
            logger.info("%s %s answered %d: %s", request.method, request.path, status, reason)
            answer = web.Response(status=status, text=reason)
            if isinstance(error, RequestPayloadError):
                # the rest of the body is unusable: end it (aiohttp would drain it and log
                # the error again) and close the connection after the answer
                request.content.feed_eof()
                answer.force_close()
            return answer

    return check_input


FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"


async def _check_params(request: web.Request, limit: int) -> None:
    """400 when the query and the urlencoded form hold more than `limit` parameters. The
    form body itself is bounded by the body limit; counting its separators costs one pass."""
    count = len(request.rel_url.query)
    if request.content_type == FORM_CONTENT_TYPE and request.body_exists:
        body = await request.read()
        if body.strip():
            count += body.count(b"&") + 1
    if count > limit:
        raise web.HTTPBadRequest(
            text=f"too many parameters: {count}; at most {limit} (--max-params)"
        )


class GuardedSite(web.BaseSite):
    """Serves a runner's application on an already bound and listening socket, with
    `GuardedHandler` as the connection protocol."""

    __slots__ = ("_gate", "_handler_args", "_limits", "_sock", "_ssl")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        limits: EdgeLimits,
        *,
        idle_timeout_seconds: float,
        backlog: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """With `ssl_context`, the socket speaks TLS only; a handshake must end within the
        header deadline (the connection is counted by the gate only once it has)."""
        super().__init__(runner, backlog=backlog)
        self._sock = sock
        self._ssl = ssl_context
        self._limits = limits
        self._gate = ConnectionGate(limits)
        self._handler_args: dict[str, Any] = {
            "keepalive_timeout": idle_timeout_seconds,
            # an unread body is drained after the answer for at most this long
            "lingering_time": limits.body_timeout_seconds,
            "access_log": None,
            "auto_decompress": False,
            "max_headers": MAX_HEADER_COUNT,
        }

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{'http' if self._ssl is None else 'https'}://{host}:{port}"

    @property
    def gate(self) -> ConnectionGate:
        return self._gate

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> GuardedHandler:
            return GuardedHandler(
                server,
                gate=self._gate,
                limits=self._limits,
                renew=protocol,
                loop=loop,
                **self._handler_args,
            )

        self._server = await loop.create_server(
            protocol,
            sock=self._sock,
            backlog=self._backlog,
            ssl=self._ssl,
            ssl_handshake_timeout=None
            if self._ssl is None
            else self._limits.header_timeout_seconds,
        )

    async def stop(self) -> None:
        """Stop listening, then close the connections held out of aiohttp (it closes its
        own as the runner cleans up)."""
        await super().stop()
        for held in self._gate.held():
            held.close()


class HeldConnection(asyncio.Protocol):
    """A client connection taken out of aiohttp while its request waits for an answer.
    It keeps the transport and little else; `answer` writes a whole HTTP response, then
    gives a keep-alive connection to a new `GuardedHandler` (with what the client sent
    meanwhile) or closes it. Until then, bytes the client sends are kept, up to the header
    limit; a client that leaves (or half-closes: asyncio's default then closes the
    transport) calls `on_lost`. (Bytes of a next request that arrived together with the held
    one, already inside aiohttp's parser, are lost: no Nacos client pipelines behind a long
    poll.)"""

    __slots__ = (
        "_gate",
        "_keep_alive",
        "_received",
        "_renew",
        "_transport",
        "_version",
        "on_answered",
        "on_lost",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        gate: ConnectionGate,
        renew: Callable[[], GuardedHandler],
        *,
        keep_alive: bool,
        version: HttpVersion,
    ) -> None:
        self._transport: asyncio.Transport | None = transport
        self._gate = gate
        self._renew = renew
        self._keep_alive = keep_alive
        self._version = version
        self._received = b""
        self.on_lost: Callable[[], None] | None = None  # the waiting request is dropped
        self.on_answered: Answered | None = None  # observes the answer (metrics, log)

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) > MAX_HEADER_BYTES:
            logger.info(
                "closed a held connection from %s: it sent more than %d bytes while it waited",
                _remote(self._transport),
                MAX_HEADER_BYTES,
            )
            self.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gate.release(self)
        if self._transport is None:
            return  # answered
        self._transport = None
        lost, self.on_lost = self.on_lost, None
        if lost is not None:
            lost()
        self._answered(CLIENT_CLOSED, None)

    def evict(self) -> None:
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def answer(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        """Write the response (nothing if the client left already) and hand the connection
        on. `headers` must not hold Content-Length, Date or Connection."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._transport = None
        self.on_lost = None
        keep_alive = self._keep_alive
        major, minor = self._version
        lines = [f"HTTP/{major}.{minor} {status} {HTTPStatus(status).phrase}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        lines.append(f"Content-Length: {len(body)}")
        lines.append(f"Date: {formatdate(usegmt=True)}")
        if not keep_alive:
            lines.append("Connection: close")
        elif (major, minor) < (1, 1):
            lines.append("Connection: keep-alive")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._answered(status, len(body))
        if not keep_alive:
            transport.close()
            return
        self._gate.release(self)
        protocol = self._renew()
        try:
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            if self._received:  # the client's next request (a partial one that aiohttp
                protocol.data_received(self._received)  # had parsed already is lost)
        except OSError as error:  # the socket failed under us: the client reconnects
            logger.info("closed a connection from %s: %s", _remote(transport), one_line(error))
            transport.close()

    def _answered(self, status: int, size: int | None) -> None:
        answered, self.on_answered = self.on_answered, None
        if answered is not None:
            answered(status, size)


class HeldResponse(web.StreamResponse):
    """What a handler returns once it handed its connection over: aiohttp finds no
    transport to write it to and forgets the connection."""

    def __init__(self, connection: HeldConnection) -> None:
        super().__init__()
        self.connection = connection
