"""UDP push, the IO half: one datagram socket, fed by the change feed, owned by one task.

`UdpPusher.run()` (a task in the node's TaskGroup) binds the socket, subscribes to every
service change the node applies, and loops: push each changed service to its live targets,
send the retries that fell due, and wait for the next change or retry. Acks arrive on the
same socket (clients answer to the packet's source address) and settle their packet.
Listeners of the change feed must be quick and must not raise: `_on_change` only marks the
service and wakes the task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, Protocol

from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import ServiceKey
from naraft.naming.model import PushTarget
from naraft.naming.push import (
    AckTable,
    PushTargets,
    PushTimings,
    Send,
    decode_ack,
    encode_packet,
    push_data,
    push_state_view,
)
from naraft.naming.state import NamingState

logger = logging.getLogger(__name__)

_MAX_PENDING_PACKETS: Final = 100_000  # bounds memory when many clients never ack


class Clock(Protocol):
    def now_ms(self) -> int: ...


class _AckProtocol(asyncio.DatagramProtocol):
    def __init__(self, pusher: UdpPusher) -> None:
        self._pusher = pusher

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._pusher.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the client is gone; its target expires.
        logger.debug("udp push error: %s", exc)


class UdpPusher:
    """Pushes changed services to the targets this node registered; see the module doc."""

    def __init__(
        self,
        state: NamingState,
        feed: ChangeFeed,
        targets: PushTargets,
        clock: Clock,
        timings: PushTimings | None = None,
        *,
        bind_host: str = "0.0.0.0",
    ) -> None:
        self._state = state
        self._feed = feed
        self._targets = targets
        self._clock = clock
        self._timings = timings or PushTimings()
        self._bind_host = bind_host
        self._acks = AckTable(self._timings)
        self._dirty: set[ServiceKey] = set()
        self._wake = asyncio.Event()
        self._last_ref_time = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._bound = asyncio.Event()
        self.sent = 0  # datagrams, retries included

    @property
    def acked(self) -> int:
        return self._acks.acked

    @property
    def given_up(self) -> int:
        return self._acks.given_up

    def push_state(self, *, detail: bool, reset: bool) -> dict[str, object]:
        """`GET /operator/push/state` of this node (`naraft.naming.push.push_state_view`)."""
        return push_state_view(self._acks, detail=detail, reset=reset)

    @property
    def local_address(self) -> tuple[str, int] | None:
        """The socket's address once bound (acks go there)."""
        if self._transport is None:
            return None
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def wait_bound(self) -> None:
        """Return once the socket is bound and changes are being pushed."""
        await self._bound.wait()

    async def run(self) -> None:
        """Push until cancelled."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _AckProtocol(self), local_addr=(self._bind_host, 0)
        )
        self._transport = transport
        subscription = self._feed.subscribe_all(self._on_change)
        self._targets.set_sending(True)
        self._bound.set()
        logger.info("udp push listening on %s:%d", *(self.local_address or ("?", 0)))
        try:
            while True:
                self._push_changed(transport)
                self._send_due(transport, loop.time() * 1000)
                await self._wait(loop)
        finally:
            self._targets.set_sending(False)
            subscription.cancel()
            transport.close()
            self._transport = None
            self._bound.clear()

    def on_datagram(self, datagram: bytes) -> None:
        """An ack from a client (anything else is ignored)."""
        last_ref_time = decode_ack(datagram)
        if last_ref_time is None:
            logger.debug("udp push: not an ack (%d bytes)", len(datagram))
            return
        target = self._acks.ack(last_ref_time)
        if target is None:
            logger.debug("udp push: ack for an unknown packet lastRefTime=%d", last_ref_time)
        else:
            self._wake.set()  # the next retry deadline may have moved

    def _on_change(self, service: ServiceKey) -> None:
        if self._targets.has_targets(service):
            self._dirty.add(service)
            self._wake.set()

    async def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._dirty:
            return
        due_ms = self._acks.next_due_ms()
        delay = None if due_ms is None else max(0.0, due_ms / 1000 - loop.time())
        try:
            async with asyncio.timeout(delay):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    def _next_ref_time(self) -> int:
        # Unique per packet, so an ack names exactly one packet; microseconds keep it
        # below 2**53 for clients that parse it as a JavaScript number.
        self._last_ref_time = max(self._clock.now_ms() * 1000, self._last_ref_time + 1)
        return self._last_ref_time

    def _push_changed(self, transport: asyncio.DatagramTransport) -> None:
        if not self._dirty:
            return
        changed, self._dirty = self._dirty, set()
        switches = self._state.switches()
        if not switches.push_enabled:
            return
        now_ms = self._clock.now_ms()
        now_loop_ms = asyncio.get_running_loop().time() * 1000
        for service in sorted(changed, key=str):
            if len(self._acks) >= _MAX_PENDING_PACKETS:
                logger.warning("udp push: too many unacked packets; skipping pushes")
                return
            try:
                self._push_service(transport, service, now_ms, now_loop_ms)
            except Exception:
                # A push is best effort (clients also poll): a bug here must not stop the node.
                logger.exception("udp push of service %s failed", service)

    def _push_service(
        self,
        transport: asyncio.DatagramTransport,
        service: ServiceKey,
        now_ms: int,
        now_loop_ms: float,
    ) -> None:
        cache_ms = self._state.switches().default_push_cache_ms
        data_by_view: dict[tuple[str, str], bytes] = {}
        for target in self._targets.targets(service, now_ms):
            view_key = (target.clusters, target.agent)
            data = data_by_view.get(view_key)
            if data is None:
                data = push_data(self._state, target, now_ms=now_ms, cache_ms=cache_ms)
                data_by_view[view_key] = data
            ref = self._next_ref_time()
            send = self._acks.sent(target, encode_packet(data, ref), ref, now_loop_ms)
            self._send(transport, send)

    def _send_due(self, transport: asyncio.DatagramTransport, now_loop_ms: float) -> None:
        for send in self._acks.due(now_loop_ms):
            self._send(transport, send)

    def _send(self, transport: asyncio.DatagramTransport, send: Send) -> None:
        target: PushTarget = send.target
        logger.debug(
            "udp push service=%s to=%s:%d attempt=%d lastRefTime=%d",
            target.service,
            target.client_ip,
            target.udp_port,
            send.attempt,
            send.last_ref_time,
        )
        try:
            transport.sendto(send.packet, (target.client_ip, target.udp_port))
        except (OSError, ValueError) as error:
            # A host name or an address of the other family (uvloop raises ValueError):
            # this socket cannot reach the target, which then expires unacked.
            logger.debug(
                "udp push to %s:%d impossible: %s", target.client_ip, target.udp_port, error
            )
            return
        self.sent += 1
