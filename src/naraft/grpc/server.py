"""The Nacos 2.x gRPC server of one node: the request acceptor, the bidirectional stream,
and the table of request handlers that naming and config plug into.

Every node serves it on the HTTP port plus an offset (1000 by default: 9848 beside 8848,
as the 2.x clients compute it). Two services, with Nacos's unpackaged names:
`Request/request` (unary) and `BiRequestStream/requestBiStream`.

A request is served in this order: decode the payload (an undecodable one gets an
`ErrorResponse` 502, never a broken call); `ServerCheckRequest` is answered at once with
the connection id; any other type needs a registered connection (else 301, and the
client reconnects) and a route (else 302); the route's access rule is checked against
the `accessToken` header (naraft.api.auth, the same tokens as HTTP); then the route runs.

Writes run where the leader is. A route with a `write` step runs it here when this node
leads, and otherwise sends the decoded request, the caller's identity and its connection
to the leader (`LeaderLink`, a peer call signed like the Raft messages), which runs the
same step and returns its answer. Steps that touch this node's connections (`after`:
owning an instance, listening to a config) run here, once the write succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import grpc
from grpc import aio

from naraft.api.auth import AuthService, Identity
from naraft.auth.rules import Need, resource_of
from naraft.errors import (
    InvalidArgumentError,
    OutcomeUnknownError,
    UnauthorizedError,
    UnavailableError,
)
from naraft.grpc import payload
from naraft.grpc.connections import CLOSE, Connection, ConnectionTable, split_peer
from naraft.grpc.errors import ERROR_RESPONSE, Code, RefusedError, failed, ok, refusal_of
from naraft.raft.errors import NotLeaderError

logger = logging.getLogger(__name__)

SETUP_TIMEOUT_SECONDS: Final = 10.0  # a stream must send its setup within this
IDLE_SECONDS: Final = 20.0  # Nacos's keep-alive: a silent client is asked if it is there
DETECT_TIMEOUT_SECONDS: Final = 3.0
MAX_DETECTIONS: Final = 500  # ClientDetectionRequests in flight at once
RESET_GRACE_SECONDS: Final = 1.0  # after ConnectResetRequest, before the stream closes
MAX_REQUEST_ID_CHARS: Final = 64
FOLLOW_SECONDS: Final = 2.0  # a forwarded write waits this long to be applied here too

ACCESS_TOKEN_HEADER: Final = "accessToken"


class Client(Protocol):
    """The part of a connection a route may read: who is calling, from where."""

    @property
    def id(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def app(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RemoteClient:
    """A connection held by the follower that forwarded a write (read-only here)."""

    id: str
    owner: str
    client_ip: str
    app: str


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a route sees it."""

    kind: str
    body: Mapping[str, Any]
    headers: Mapping[str, str]
    client: Client
    identity: Identity | None
    request_id: str = ""

    def text(self, name: str, *, limit: int = 4096) -> str:
        """A string field of the body ("" when absent or null); InvalidArgumentError if it
        is not a string or longer than `limit`."""
        value = self.body.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidArgumentError(name, "must be a string")
        if len(value) > limit:
            raise InvalidArgumentError(name, f"must be at most {limit} characters")
        return value


@dataclass(frozen=True, slots=True)
class Access:
    """A route's rule: Nacos's permission (`r`/`w`) on the resource the body names."""

    kind: Literal["naming", "config"]
    level: Literal["r", "w"]


Step = Callable[[Call], Awaitable[dict[str, Any]]]
After = Callable[[Call, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How one request type is served: `handle` (runs here, for reads), or `write` (runs
    on the leader) then `after` (here, on success). The answer is of `response`."""

    kind: str
    response: str
    access: Access | None = None
    handle: Step | None = None
    write: Step | None = None
    after: After | None = None
    internal: bool = False  # only a member may ask it (through the leader link)


class Progress(Protocol):
    """How far this node has applied the log (the replica)."""

    def applied_index(self) -> int: ...

    async def wait_applied(self, index: int) -> None: ...


class LeaderRefusedError(UnavailableError):
    """The leader's address refused the connection: it never saw the write."""


class LeaderLink(Protocol):
    """Sends a write to the leader and returns its answer body (naraft.grpc.forward)."""

    async def forward(self, leader: str, message: Mapping[str, Any]) -> dict[str, Any]:
        """Raises LeaderRefusedError when the leader's address refused the connection, and
        UnavailableError (or OutcomeUnknownError) when no answer came back otherwise."""
        ...


NewLeaderWait = Callable[[str, float], Awaitable[str | None]]
"""The first leader other than the one given, or None after the seconds given."""


@dataclass(slots=True)
class ServerStats:
    requests: int = 0
    refused: int = 0
    forwarded: int = 0
    streams_opened: int = 0
    resets_sent: int = 0
    pushes_closed: int = 0  # pushes sent on connections gone since
    failed_pushes_closed: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


class GrpcServer:
    """One node's 2.x gRPC endpoint; see the module docstring."""

    def __init__(
        self,
        *,
        node_id: str,
        connections: ConnectionTable,
        auth: AuthService | None,
        link: LeaderLink | None = None,
        progress: Progress | None = None,
        push_timeout_seconds: float = 3.0,
        new_leader: NewLeaderWait | None = None,
        new_leader_seconds: float = 0.0,
    ) -> None:
        self._node_id = node_id
        self._new_leader = new_leader
        self._new_leader_seconds = new_leader_seconds
        self.connections = connections
        self._auth = auth
        self.link = link  # set once the node's HTTP session exists
        self._progress = progress
        self._more_counts: list[Callable[[], Mapping[str, int]]] = []
        self._routes: dict[str, Route] = {}
        self._server: aio.Server | None = None
        self._accepting = False
        self.push_timeout_seconds = push_timeout_seconds
        self.stats = ServerStats()
        self._detecting: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------------- routes

    def add_routes(self, routes: list[Route]) -> None:
        for route in routes:
            if route.kind in self._routes:
                raise ValueError(f"two routes for {route.kind}")
            self._routes[route.kind] = route

    def route(self, kind: str) -> Route | None:
        return self._routes.get(kind)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._routes))

    def add_counts(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Add a route family's own figures to `counts` (subscriptions, listeners)."""
        self._more_counts.append(counts)

    def counts(self) -> dict[str, int]:
        """What the metrics show of this endpoint."""
        pushed, failed = self.stats.pushes_closed, self.stats.failed_pushes_closed
        for connection in self.connections:
            pushed += connection.pushes_sent
            failed += connection.pushes_failed
        modules: dict[str, int] = {"connections_naming": 0, "connections_config": 0}
        for connection in self.connections:
            name = f"connections_{connection.module}"
            if name in modules:
                modules[name] += 1
        return {
            "connections": len(self.connections),
            **modules,
            "requests": self.stats.requests,
            "refused": self.stats.refused,
            "forwarded": self.stats.forwarded,
            "resets": self.stats.resets_sent,
            "refused_connections": self.connections.refused,
            "streams_opened": self.stats.streams_opened,
            "pushes": pushed,
            "failed_pushes": failed,
        } | {name: value for more in self._more_counts for name, value in more().items()}

    # --------------------------------------------------------------- lifecycle

    async def start(
        self,
        host: str,
        port: int,
        *,
        max_message_bytes: int,
        credentials: grpc.ServerCredentials | None = None,
    ) -> int:
        """Listen on host:port; returns the bound port (an OSError-like RuntimeError if
        it is taken)."""
        server = aio.server(
            options=[
                ("grpc.so_reuseport", 0),  # never share the port with another process
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.max_ping_strikes", 0),
            ]
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    payload.REQUEST_SERVICE,
                    {
                        payload.REQUEST_METHOD: grpc.unary_unary_rpc_method_handler(
                            self._unary, response_serializer=payload.serialize
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    payload.STREAM_SERVICE,
                    {
                        payload.STREAM_METHOD: grpc.stream_stream_rpc_method_handler(
                            self._stream, response_serializer=payload.serialize
                        )
                    },
                ),
            )
        )
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server = server
        self._accepting = True
        return int(bound)

    async def reset_all(self, reason: str) -> int:
        """Ask every client to move to another node (`ConnectResetRequest`), then close
        the streams: clients that do not act on the request move when theirs breaks.
        Returns how many connections were asked."""
        self._accepting = False
        asked = 0
        for connection in self.connections:
            if connection.send(payload.build("ConnectResetRequest", _reset_body())):
                asked += 1
        self.stats.resets_sent += asked
        if asked:
            await asyncio.sleep(RESET_GRACE_SECONDS)  # let the requests reach the clients
        for connection in self.connections:
            connection.close(reason)
        return asked

    async def stop(self, grace_seconds: float = 1.0) -> None:
        self._accepting = False
        for connection in self.connections:
            connection.close("the node is stopping")
        if self._server is not None:
            await self._server.stop(grace_seconds)
            self._server = None

    async def watch_idle_forever(self, every_seconds: float = 5.0) -> None:
        """Ask clients silent for `IDLE_SECONDS` whether they are there
        (`ClientDetectionRequest`); one that does not answer is closed."""
        while True:
            await asyncio.sleep(every_seconds)
            now = time.monotonic()
            for connection in self.connections:
                if len(self._detecting) >= MAX_DETECTIONS:
                    break  # spread over sweeps: a burst must not starve the node's loop
                if now - connection.last_active >= IDLE_SECONDS:
                    connection.touch()  # one detection at a time
                    task = asyncio.create_task(self._detect(connection))
                    self._detecting.add(task)
                    task.add_done_callback(self._detecting.discard)

    async def _detect(self, connection: Connection) -> None:
        with contextlib.suppress(UnavailableError):
            await connection.push(
                "ClientDetectionRequest", {}, timeout_seconds=DETECT_TIMEOUT_SECONDS, attempts=2
            )

    # ----------------------------------------------------------------- unary

    async def _unary(self, raw: bytes, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            decoded = payload.parse(raw)
        except InvalidArgumentError as error:
            self.stats.refused += 1
            return payload.build(ERROR_RESPONSE, failed(Code.BAD_GATEWAY, str(error)))
        kind, peer = decoded.type, context.peer()
        request_id = _request_id(decoded.body)
        self.stats.requests += 1
        self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1
        if not self._accepting:
            return _error(
                Code.INVALID_SERVER_STATUS, "the server is stopping; try another", request_id
            )
        if kind == "ServerCheckRequest":
            self.connections.expect(peer)
            body = ok(connectionId=self.connections.id_of(peer), supportAbilityNegotiation=False)
            return payload.build("ServerCheckResponse", {**body, "requestId": request_id})
        route = self._routes.get(kind)
        health_check = kind == "HealthCheckRequest"  # the SDK's keep-alive: needs no route
        if not health_check and (route is None or route.internal):
            self.stats.refused += 1
            return _error(Code.NO_HANDLER, f"no handler for request type {kind[:64]}", request_id)
        connection = await self.connections.find(peer)
        if connection is None or connection.closed.is_set():
            self.stats.refused += 1
            return _error(Code.UN_REGISTER, "Connection is unregistered.", request_id)
        connection.touch()
        if health_check or route is None:  # registered and alive: the keep-alive answer
            return payload.build("HealthCheckResponse", {**ok(), "requestId": request_id})
        answer = await self.serve(route, decoded.body, decoded.headers, connection, request_id)
        return answer

    async def serve(
        self,
        route: Route,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        client: Client,
        request_id: str,
    ) -> Any:
        """Run `route` for a request of a client of this node; the answer Payload."""
        try:
            identity = self._authorize(route, body, headers)
            call = Call(route.kind, body, headers, client, identity, request_id)
            if route.write is not None:
                answer = await self._write(route, call)
                if route.after is not None and answer.get("errorCode", 0) == 0:
                    await route.after(call, answer)
            elif route.handle is not None:
                answer = await route.handle(call)
            else:  # a route with nothing to run is a wiring bug
                raise RefusedError(Code.NO_HANDLER, f"no handler for request type {route.kind}")
        except Exception as error:  # every failure is an answer, never a broken call
            return self._refusal(route, error, request_id)
        return payload.build(route.response, {**answer, "requestId": request_id})

    def _refusal(self, route: Route, error: Exception, request_id: str) -> Any:
        code, message, typed = refusal_of(error)
        self.stats.refused += 1
        if isinstance(error, OutcomeUnknownError | RefusedError) and code is Code.SERVER_ERROR:
            # a fault (or the leader's answer to a forwarded write), not a bug: no traceback
            logger.warning("gRPC %s: %s", route.kind, message)
        elif code is Code.SERVER_ERROR and not typed:
            logger.exception("gRPC %s failed", route.kind)
        else:
            logger.debug("gRPC %s refused %d: %s", route.kind, code, message)
        kind = route.response if typed else ERROR_RESPONSE
        return payload.build(kind, {**failed(code, message), "requestId": request_id})

    def _authorize(
        self, route: Route, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Identity | None:
        service = self._auth
        if service is None or not service.enabled:
            return None
        token = headers.get(ACCESS_TOKEN_HEADER, "")
        if not token:
            if route.access is None:
                return None
            raise UnauthorizedError("user not found!")
        identity = service.identify(token)
        if route.access is not None:
            self.require(identity, route.access, body)
        return identity

    def require(self, identity: Identity | None, access: Access, body: Mapping[str, Any]) -> None:
        """UnauthorizedError unless `identity` may do `access` on what `body` names
        (nothing to check with auth off: `identity` is None only then)."""
        service = self._auth
        if service is None or not service.enabled:
            return
        if identity is None:
            raise UnauthorizedError("user not found!")
        if access.kind == "config":
            names = (_str(body, "tenant"), _str(body, "group"), _str(body, "dataId"))
        else:
            names = (
                _str(body, "namespace") or _str(body, "namespaceId"),
                _str(body, "groupName"),
                _str(body, "serviceName"),
            )
        need = Need(resource_of(names[0], names[1], access.kind, names[2]), access.level)
        if not service.allowed(identity, need):
            raise UnauthorizedError("authorization failed!")

    # ----------------------------------------------------------------- writes

    async def _write(self, route: Route, call: Call) -> dict[str, Any]:
        assert route.write is not None
        try:
            return await route.write(call)
        except NotLeaderError as error:
            leader = error.leader_hint
            if leader is None or leader == self._node_id or self.link is None:
                raise
        self.stats.forwarded += 1
        message = {
            "type": route.kind,
            "body": dict(call.body),
            "identity": call.identity.username if call.identity is not None else None,
            "client": {
                "id": call.client.id,
                "owner": call.client.owner,
                "clientIp": call.client.client_ip,
                "app": call.client.app,
            },
        }
        try:
            answer = await self.link.forward(leader, message)
        except LeaderRefusedError:
            # The leader is gone and never saw the write: as the HTTP forward does, wait for
            # the next leader and try once more, there or here.
            if self._new_leader is None:
                raise
            new = await self._new_leader(leader, self._new_leader_seconds)
            if new is None:
                raise
            logger.info("retrying %s with the new leader %s", route.kind, new)
            if new == self._node_id:
                return await route.write(call)  # NotLeaderError again: the usual refusal
            answer = await self.link.forward(new, message)
        if answer.get("errorCode", 0) not in (0, None) and answer.get("typed") is False:
            raise RefusedError(Code(int(answer["errorCode"])), str(answer.get("message", "")))
        answer.pop("typed", None)
        applied = answer.pop("appliedIndex", None)
        if self._progress is not None and isinstance(applied, int):
            # read-your-writes on the node the client is connected to, as Nacos 2.x gives
            # (its writes land on that node first): answer once this node applied it too
            try:
                async with asyncio.timeout(FOLLOW_SECONDS):
                    await self._progress.wait_applied(applied)
            except TimeoutError:
                logger.info(
                    "%s applied on the leader, not here within %ss", route.kind, FOLLOW_SECONDS
                )
        return answer

    async def run_forwarded(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """The leader's side of `LeaderLink`: run the write step of a request a member
        forwarded. Always an answer body; `typed` False marks an ErrorResponse."""
        kind = message.get("type")
        route = self._routes.get(kind) if isinstance(kind, str) else None
        body, client = message.get("body"), message.get("client")
        if route is None or route.write is None:
            refusal = failed(Code.NO_HANDLER, f"no write step for {str(kind)[:64]}")
            return {**refusal, "typed": False}
        if not isinstance(body, dict) or not isinstance(client, dict):
            refusal = failed(Code.BAD_GATEWAY, "a forwarded write needs body and client")
            return {**refusal, "typed": False}
        try:
            identity = self._forwarded_identity(message.get("identity"))
            remote = RemoteClient(
                id=str(client.get("id", ""))[:256],
                owner=str(client.get("owner", ""))[:512],
                client_ip=str(client.get("clientIp", ""))[:128],
                app=str(client.get("app", ""))[:128],
            )
            call = Call(route.kind, body, {}, remote, identity)
            answer = await route.write(call)
            if self._progress is not None:
                answer["appliedIndex"] = self._progress.applied_index()
            return answer
        except NotLeaderError:
            refusal = failed(Code.OVER_THRESHOLD, "this node is no longer the leader")
            return {**refusal, "typed": False}
        except Exception as error:
            code, text, typed = refusal_of(error)
            if isinstance(error, OutcomeUnknownError):
                logger.warning("forwarded gRPC %s: %s", route.kind, text)
            elif code is Code.SERVER_ERROR and not typed:
                logger.exception("forwarded gRPC %s failed", route.kind)
            return {**failed(code, text), "typed": typed}

    def _forwarded_identity(self, username: object) -> Identity | None:
        service = self._auth
        if service is None or not service.enabled or not isinstance(username, str):
            return None
        return service.identity_of(username)  # the member checked the token

    # ---------------------------------------------------------------- stream

    async def _stream(
        self, requests: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
    ) -> None:
        peer = context.peer()
        self.stats.streams_opened += 1
        try:
            async with asyncio.timeout(SETUP_TIMEOUT_SECONDS):
                first = await anext(requests)
            setup = payload.parse(first)
        except (TimeoutError, StopAsyncIteration, InvalidArgumentError, grpc.RpcError):
            self.connections.drop_expectation(peer)
            return
        if setup.type != "ConnectionSetupRequest" or not self._accepting:
            self.connections.drop_expectation(peer)
            if setup.type == "ConnectionSetupRequest":  # stopping: send it elsewhere
                await context.write(payload.build("ConnectResetRequest", _reset_body()))
            return
        if self.connections.full():
            self.connections.refused += 1
            self.connections.drop_expectation(peer)
            await context.write(payload.build("ConnectResetRequest", _reset_body()))
            logger.info(
                "connection from %s refused: %d connections held", peer, len(self.connections)
            )
            return
        labels = setup.body.get("labels")
        connection = self.connections.register(
            peer,
            client_ip=setup.client_ip or _host_of(peer),
            client_version=_str(setup.body, "clientVersion"),
            tenant=_str(setup.body, "tenant"),
            labels={str(k)[:128]: str(v)[:256] for k, v in labels.items()}
            if isinstance(labels, dict)
            else {},
        )
        reader = asyncio.create_task(self._read(requests, connection))
        try:
            outbound = connection.outbound
            while not (connection.closed.is_set() and outbound.empty()):
                message = await outbound.get()  # close() queues CLOSE to end the wait
                if message is CLOSE:
                    continue
                await context.write(message)
        except (asyncio.CancelledError, grpc.RpcError, aio.AioRpcError):
            connection.close("the stream broke")
        finally:
            reader.cancel()
            self.stats.pushes_closed += connection.pushes_sent
            self.stats.failed_pushes_closed += connection.pushes_failed
            await self.connections.forget(connection)

    async def _read(self, requests: AsyncIterator[bytes], connection: Connection) -> None:
        """The client's side of the stream: answers to pushes (and nothing else). When it
        ends, the connection is closed."""
        try:
            async for raw in requests:
                connection.touch()
                _take_answer(connection, raw)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        finally:
            connection.close("the client closed its stream")


def _take_answer(connection: Connection, raw: bytes) -> None:
    """Hand a client's response to the push waiting for it; anything else is dropped."""
    try:
        message = payload.parse(raw)
    except InvalidArgumentError as error:
        logger.debug("undecodable stream message from %s: %s", connection.id, error)
        return
    request_id = _request_id(message.body)
    if message.type.endswith("Response") and request_id:
        connection.answered(request_id, message.body)


def _reset_body() -> dict[str, Any]:
    # no server named: the client picks the next one from its own list
    return {"serverIp": "", "serverPort": "", "module": "internal", "headers": {}}


def _error(code: Code, message: str, request_id: str) -> Any:
    return payload.build(ERROR_RESPONSE, {**failed(code, message), "requestId": request_id})


def _request_id(body: Mapping[str, Any]) -> str:
    value = body.get("requestId")
    return value[:MAX_REQUEST_ID_CHARS] if isinstance(value, str) else ""


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    return value[:4096] if isinstance(value, str) else ""


def _host_of(peer: str) -> str:
    return split_peer(peer)[0]
