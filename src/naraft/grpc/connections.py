"""The 2.x client connections this node holds, and the server pushes that travel on them.

A Nacos 2.x client opens one HTTP/2 connection to one node. It first asks
`ServerCheckRequest` on the unary service and learns its connection id; it then opens the
bidirectional stream and sends `ConnectionSetupRequest` (labels, tenant, abilities) as
its first message. From then on the connection is registered: unary requests from the
same transport are served, and the server may push requests (`NotifySubscriberRequest`,
`ConfigChangeNotifyRequest`, `ClientDetectionRequest`, `ConnectResetRequest`) down the
stream; the client answers each with a response carrying the same `requestId`.

grpcio's asyncio server tells a handler only the peer address of its transport
(`context.peer()`, `ipv4:127.0.0.1:54321`), the same for every call on one HTTP/2
connection, so that address is the transport's identity here: the connection id is
`<node boot ms>_<ip>_<port>` as Nacos builds its own from the transport.

Bounds: a connection holds at most `MAX_OUTBOUND` queued messages and `MAX_IN_FLIGHT`
unanswered pushes. A client that stops answering cannot grow the node's memory: a push
that finds the queue full, or that goes unanswered after its retries, closes the
connection, and the client reconnects (to this node or another) and asks again for what
it follows. Pushes carry whole states (a service's instance list, a config's change
mark), never deltas, so a reconnect loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import orjson

from naraft.errors import UnavailableError
from naraft.grpc import payload

logger = logging.getLogger(__name__)

MAX_OUTBOUND: Final = 1024  # queued messages per connection
MAX_IN_FLIGHT: Final = 256  # pushes awaiting the client's answer, per connection
SETUP_WAIT_SECONDS: Final = 2.0  # how long a unary call waits for its stream's setup
MAX_LABELS: Final = 64

S = TypeVar("S", bound=Hashable)  # a push slot: a connection and what it follows


class PushFailedError(UnavailableError):
    """A push was not answered: the connection is closed or the client did not reply."""


@dataclass(slots=True, kw_only=True)
class Connection:
    """One registered 2.x client connection on this node."""

    id: str
    owner: str  # unique in the cluster: the node id and the connection id
    peer: str
    client_ip: str
    client_version: str = ""
    tenant: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    app: str = "unknown"
    created_ms: int = 0
    last_active: float = field(default_factory=time.monotonic)
    outbound: asyncio.Queue[Any] = field(
        default_factory=lambda: asyncio.Queue(maxsize=MAX_OUTBOUND)
    )
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = ""
    pushes_sent: int = 0
    pushes_failed: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def module(self) -> str:
        return self.labels.get("module", "")

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def send(self, message: Any) -> bool:
        """Queue a message for the stream; False (and the connection closes) if it is full."""
        if self.closed.is_set():
            return False
        try:
            self.outbound.put_nowait(message)
        except asyncio.QueueFull:
            self.close("its client does not read its stream (outbound queue full)")
            return False
        return True

    async def push(
        self,
        kind: str,
        body: Mapping[str, Any] | bytes,
        *,
        timeout_seconds: float,
        attempts: int = 3,
    ) -> dict[str, Any]:
        """Send a server request and return the client's answer body; retried on silence,
        and the connection closed when every attempt went unanswered (PushFailedError).
        `body` may come encoded (a JSON object's bytes), to be shared by many pushes."""
        encoded = body if isinstance(body, bytes) else orjson.dumps(body)
        for attempt in range(attempts):
            if self.closed.is_set():
                raise PushFailedError(f"connection {self.id} is closed: {self.close_reason}")
            if len(self.waiting) >= MAX_IN_FLIGHT:
                self.close(f"its client left {MAX_IN_FLIGHT} pushes unanswered")
                raise PushFailedError(f"connection {self.id} has too many unanswered pushes")
            request_id = f"{next(self._ids)}"
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.waiting[request_id] = answer
            try:
                if not self.send(
                    payload.build_encoded(kind, _with_request_id(encoded, request_id))
                ):
                    raise PushFailedError(f"connection {self.id} is closed: {self.close_reason}")
                self.pushes_sent += 1
                try:
                    async with asyncio.timeout(timeout_seconds):
                        return await answer  # close() fails it at once
                except TimeoutError:
                    pass
            finally:
                self.waiting.pop(request_id, None)
                if not answer.done():
                    answer.cancel()
            logger.debug("push %s to %s unanswered (attempt %d)", kind, self.id, attempt + 1)
        self.pushes_failed += 1
        self.close(f"{kind} unanswered after {attempts} attempts")
        raise PushFailedError(f"connection {self.id} did not answer {kind}")

    def answered(self, request_id: str, body: dict[str, Any]) -> None:
        """The client's response to a push (unknown ids are late answers: ignored)."""
        waiter = self.waiting.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(body)

    def close(self, reason: str) -> None:
        """Mark the connection closed: its stream handler ends (woken by a `CLOSE` in its
        queue), the table forgets it, and pushes waiting for an answer fail at once."""
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.closed.set()
        logger.log(
            logging.DEBUG if reason in _ORDINARY else logging.INFO,
            "connection %s closed: %s",
            self.id,
            reason,
        )
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.set_exception(PushFailedError(f"connection {self.id} closed: {reason}"))
        with contextlib.suppress(asyncio.QueueFull):
            self.outbound.put_nowait(CLOSE)  # a full queue wakes its writer anyway


_ORDINARY: Final = frozenset({"the client closed its stream", "its stream ended"})
CLOSE: Final = object()  # the writer's cue: the connection is closed


def _with_request_id(body: bytes, request_id: str) -> bytes:
    """A JSON object's bytes with `requestId` and empty `headers` added in front."""
    head = b'{"requestId":"' + request_id.encode() + b'","headers":{}'
    return head + b"}" if body == b"{}" else head + b"," + body[1:]


CloseListener = Callable[[Connection], Awaitable[None]]


class ConnectionTable:
    """The registered connections, by id and by transport (peer address)."""

    def __init__(self, node_id: str, *, max_connections: int, now_ms: Callable[[], int]) -> None:
        self._node_id = node_id
        self._now_ms = now_ms
        self._boot_ms = now_ms()
        self._max = max_connections
        self._by_id: dict[str, Connection] = {}
        self._setups: dict[str, asyncio.Event] = {}  # peer -> set when its setup arrives
        self._on_close: list[CloseListener] = []
        self.refused = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Any:
        return iter(tuple(self._by_id.values()))

    @property
    def max_connections(self) -> int:
        return self._max

    def id_of(self, peer: str) -> str:
        """The connection id of a transport: stable for its life, unique on this node."""
        host, port = split_peer(peer)
        return f"{self._boot_ms}_{host}_{port}"

    def expect(self, peer: str) -> None:
        """A ServerCheck came from `peer`: its setup should follow on the stream."""
        if len(self._setups) < 4 * self._max + 16:
            self._setups.setdefault(peer, asyncio.Event())

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    async def find(self, peer: str) -> Connection | None:
        """The connection of a transport, waiting briefly for a setup that is on its way
        (the client sends its first unary call right after the setup message)."""
        connection = self._by_id.get(self.id_of(peer))
        if connection is not None:
            return connection
        pending = self._setups.get(peer)
        if pending is None:
            return None
        try:
            async with asyncio.timeout(SETUP_WAIT_SECONDS):
                await pending.wait()
        except TimeoutError:
            return None
        return self._by_id.get(self.id_of(peer))

    def full(self) -> bool:
        return len(self._by_id) >= self._max

    def register(
        self,
        peer: str,
        *,
        client_ip: str,
        client_version: str,
        tenant: str,
        labels: Mapping[str, str],
    ) -> Connection:
        connection_id = self.id_of(peer)
        connection = Connection(
            id=connection_id,
            owner=f"{self._node_id}/{connection_id}",
            peer=peer,
            client_ip=client_ip,
            client_version=client_version[:64],
            tenant=tenant[:128],
            labels=dict(list(labels.items())[:MAX_LABELS]),
            app=str(labels.get("AppName") or labels.get("app") or "unknown")[:128],
            created_ms=self._now_ms(),
        )
        old = self._by_id.get(connection_id)
        if old is not None:
            old.close("replaced by a new setup on the same transport")
        self._by_id[connection_id] = connection
        event = self._setups.pop(peer, None)
        if event is not None:
            event.set()
        return connection

    def on_close(self, listener: CloseListener) -> None:
        """Call `listener(connection)` once for every connection that goes away."""
        self._on_close.append(listener)

    async def forget(self, connection: Connection) -> None:
        """The stream of `connection` ended: drop it and tell the listeners."""
        connection.close(connection.close_reason or "its stream ended")
        self._setups.pop(connection.peer, None)
        if self._by_id.get(connection.id) is connection:
            del self._by_id[connection.id]
        for waiter in connection.waiting.values():
            if not waiter.done():
                waiter.cancel()
        for listener in self._on_close:
            try:
                await listener(connection)
            except Exception:
                logger.exception("connection close listener failed id=%s", connection.id)

    def drop_expectation(self, peer: str) -> None:
        self._setups.pop(peer, None)


class PushSlots(Generic[S]):
    """One push in flight per slot (a connection and what it follows), and at most one more
    owed: a change that comes while a slot's push is on its way asks for one more push after
    it, of the state as it is then. A burst of changes thus costs a client two pushes, not
    one per change, and a slow client never holds more than one push per slot.

    `send(slot)` pushes the slot's current state; it returns False when there is nothing
    more to push there (the connection or the interest is gone). What it raises is logged
    and ends the slot's pushes (the client's next request or reconnect asks again)."""

    def __init__(self, send: Callable[[S], Awaitable[bool]], *, what: str) -> None:
        self._send = send
        self._what = what
        self._owed: dict[S, bool] = {}  # the slots with a push in flight: one more owed?
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, slot: S) -> None:
        """Push `slot`'s state soon (runs inside apply: only schedules)."""
        if slot in self._owed:
            self._owed[slot] = True
            return
        self._owed[slot] = False
        task = asyncio.get_running_loop().create_task(self._run(slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Return once no push is in flight."""
        while self._tasks:
            await asyncio.wait(tuple(self._tasks))

    async def _run(self, slot: S) -> None:
        try:
            while await self._send(slot) and self._owed.get(slot):
                self._owed[slot] = False
        except Exception:
            logger.exception("%s push failed slot=%s", self._what, slot)
        finally:
            self._owed.pop(slot, None)


def split_peer(peer: str) -> tuple[str, str]:
    """`ipv4:1.2.3.4:5` or `ipv6:[::1]:5` -> (host, port); anything else -> (peer, "0")."""
    _, _, rest = peer.partition(":")
    host, sep, port = rest.rpartition(":")
    if not sep:
        return peer[:128], "0"
    return host.strip("[]")[:128], port[:8]
