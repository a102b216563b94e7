"""UDP push, the pure half: targets, the Nacos 1.x push packet, acks and retries.

Nacos 1.x `PushService` (docs/nacos-compat.md#udp-push): a client that lists a service with
`udpPort` > 0 becomes a push target of the node it asked. On every change of the service
that node sends `{"type":"dom","data":"<instance/list JSON>","lastRefTime":n}` to
`clientIP:udpPort`, gzip'd from 1 KiB on; the client answers
`{"type":"push-ack","lastRefTime":n,"data":""}`. An unacked packet is sent again after the
ack timeout, a bounded number of times. A target that has not listed the service again
for `pushCacheMillis` (10 s) is a zombie and is forgotten.

Everything here takes the time as an argument; `naraft.naming.udp` owns the socket, the
clock and the task.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.naming.keys import ServiceKey
from naraft.naming.model import ClientAgent, PushTarget
from naraft.naming.state import NamingState
from naraft.naming.validate import clusters_filter
from naraft.naming.views import instance_list_view, listed_hosts

# Nacos PushService.compressIfNecessary: gzip when the packet is at least 1 KiB.
GZIP_FROM_BYTES: Final = 1024
GZIP_MAGIC: Final = b"\x1f\x8b"
PUSH_DETAIL_LIMIT: Final = 100  # unacked packets shown by push/state?detail=true
PUSH_TYPE: Final = "dom"
# Nacos PushService: ACK_TIMEOUT_NANOS = 10 s, MAX_RETRY_TIMES = 1 (two sends at most).
DEFAULT_ACK_TIMEOUT_MS: Final = 10_000
DEFAULT_MAX_RETRIES: Final = 1
DEFAULT_EXPIRE_AFTER_MS: Final = 10_000  # Nacos switch defaultPushCacheMillis


@dataclass(frozen=True, slots=True, kw_only=True)
class PushTimings:
    """How long to wait for an ack before sending again, and how often to send again."""

    ack_timeout_ms: int = DEFAULT_ACK_TIMEOUT_MS
    max_retries: int = DEFAULT_MAX_RETRIES


class PushTargets:
    """Clients that asked for pushes; satisfies `naraft.naming.service.PushRegistry`.

    `add_target` answers True only while a sender is attached (`set_sending(True)`), so
    that `/instance/list` promises the push cache time only when pushes really go out.
    """

    def __init__(
        self, *, expire_after_ms: Callable[[], int] = lambda: DEFAULT_EXPIRE_AFTER_MS
    ) -> None:
        self._expire_after_ms = expire_after_ms
        self._last_seen_ms: dict[ServiceKey, dict[PushTarget, int]] = {}
        self._sending = False

    def set_sending(self, sending: bool) -> None:
        self._sending = sending

    def add_target(self, target: PushTarget, now_ms: int) -> bool:
        """Record or refresh `target` (a list request at `now_ms`); True if pushed to."""
        self._last_seen_ms.setdefault(target.service, {})[target] = now_ms
        return self._sending

    def subscriber_count(self) -> int:
        """Targets recorded over every service (zombies go at their service's next push)."""
        return sum(len(seen) for seen in self._last_seen_ms.values())

    def has_targets(self, service: ServiceKey) -> bool:
        return bool(self._last_seen_ms.get(service))

    def targets(self, service: ServiceKey, now_ms: int) -> Sequence[PushTarget]:
        """The live targets of `service`, in registration order; zombies are forgotten."""
        seen = self._last_seen_ms.get(service)
        if seen is None:
            return ()
        expire_after_ms = self._expire_after_ms()
        for target, last_seen_ms in list(seen.items()):
            if now_ms - last_seen_ms > expire_after_ms:
                del seen[target]
        if not seen:
            del self._last_seen_ms[service]
            return ()
        return tuple(seen)


def push_data(state: NamingState, target: PushTarget, *, now_ms: int, cache_ms: int) -> bytes:
    """The `instance/list` answer `target` would get now, as JSON (the packet's `data`).

    Like Nacos's push data source: the target's clusters and agent, no healthy-only filter,
    and the push cache time, since the client is registered for pushes."""
    listed = listed_hosts(
        target.service,
        state.service(target.service),
        state.instances(target.service),
        cluster_filter=clusters_filter(target.clusters),
        healthy_only=False,
        grouped_names=ClientAgent(target.agent).is_java_v1,
    )
    view = instance_list_view(
        target.service,
        listed,
        clusters=target.clusters,
        cache_ms=cache_ms,
        now_ms=now_ms,
        encoded_hosts=True,
    )
    return orjson.dumps(view)


def encode_packet(data: bytes, last_ref_time: int) -> bytes:
    """The datagram: `{"type":"dom","data":<data as a string>,"lastRefTime":n}`, gzip'd
    from `GZIP_FROM_BYTES` on (the client recognises the gzip magic)."""
    packet = orjson.dumps(
        {"type": PUSH_TYPE, "data": data.decode("utf-8"), "lastRefTime": last_ref_time}
    )
    if len(packet) >= GZIP_FROM_BYTES:
        return gzip.compress(packet, mtime=0)
    return packet


def decode_ack(datagram: bytes) -> int | None:
    """The `lastRefTime` an ack names, or None if the datagram is not an ack.

    Nacos's receiver matches on `lastRefTime` alone (with the sender's address); the
    `type` (`push-ack`, or `dump-ack`/`unknown-ack`) is not checked, nor is it here."""
    try:
        loaded: Any = orjson.loads(datagram)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(loaded, dict):
        return None
    value = loaded.get("lastRefTime")
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """One datagram to send now."""

    target: PushTarget
    packet: bytes
    last_ref_time: int
    attempt: int  # 1 for the first send, 2 for the first retry, …


@dataclass(slots=True, kw_only=True)
class _Pending:
    target: PushTarget
    packet: bytes
    sends: int
    due_ms: float


class AckTable:
    """Packets sent and not yet acked, keyed by their unique `lastRefTime`.

    A newer packet to the same target replaces an unacked older one (its data is newer);
    a packet sent `1 + max_retries` times without an ack is given up.
    """

    def __init__(self, timings: PushTimings) -> None:
        self._timings = timings
        self._pending: dict[int, _Pending] = {}
        self._by_target: dict[PushTarget, int] = {}
        self.packets = 0  # packets sent (first sends; retries are not new packets)
        self.given_up = 0  # packets never acked
        self.acked = 0

    def __len__(self) -> int:
        return len(self._pending)

    def sent(self, target: PushTarget, packet: bytes, last_ref_time: int, now_ms: float) -> Send:
        """Record a first send of `packet` to `target` at `now_ms`."""
        older = self._by_target.pop(target, None)
        if older is not None:
            self._pending.pop(older, None)
        self._by_target[target] = last_ref_time
        self.packets += 1
        self._pending[last_ref_time] = _Pending(
            target=target, packet=packet, sends=1, due_ms=now_ms + self._timings.ack_timeout_ms
        )
        return Send(target=target, packet=packet, last_ref_time=last_ref_time, attempt=1)

    def ack(self, last_ref_time: int) -> PushTarget | None:
        """The target whose packet `last_ref_time` is acked now; None if unknown or late."""
        pending = self._pending.pop(last_ref_time, None)
        if pending is None:
            return None
        if self._by_target.get(pending.target) == last_ref_time:
            del self._by_target[pending.target]
        self.acked += 1
        return pending.target

    def due(self, now_ms: float) -> Iterator[Send]:
        """The retries due at `now_ms`; packets out of retries are dropped instead."""
        for last_ref_time, pending in list(self._pending.items()):
            if pending.due_ms > now_ms:
                continue
            if pending.sends > self._timings.max_retries:
                del self._pending[last_ref_time]
                if self._by_target.get(pending.target) == last_ref_time:
                    del self._by_target[pending.target]
                self.given_up += 1
                continue
            pending.sends += 1
            pending.due_ms = now_ms + self._timings.ack_timeout_ms
            yield Send(
                target=pending.target,
                packet=pending.packet,
                last_ref_time=last_ref_time,
                attempt=pending.sends,
            )

    def next_due_ms(self) -> float | None:
        """When the earliest retry (or give-up) is due, if anything is pending."""
        return min((p.due_ms for p in self._pending.values()), default=None)

    def unacked(self, limit: int) -> list[bytes]:
        """The first `limit` packets still waiting for their ack, oldest first."""
        return [pending.packet for pending in itertools.islice(self._pending.values(), limit)]

    def forget_unacked(self) -> None:
        """Stop waiting for every pending ack: no retries, and none counted as given up
        (Nacos's `push/state?reset=true` clears its ack table the same way)."""
        self._pending.clear()
        self._by_target.clear()


def push_state_view(
    table: AckTable, *, detail: bool, reset: bool, detail_limit: int = PUSH_DETAIL_LIMIT
) -> dict[str, object]:
    """`GET /operator/push/state` in Nacos 1.4's shape: packets pushed (`total`), acked
    (`succeed`), the rest (`failed`: waiting, given up, or replaced by a newer packet to
    the same client before their ack) and `succeed / total` (0 before any push); with
    `detail`, `data` holds the packets still waiting for their ack (at most
    `detail_limit`); with `reset` those are forgotten afterwards (`AckTable.forget_unacked`)."""
    total, succeed = table.packets, table.acked
    answer: dict[str, object] = {
        "succeed": succeed,
        "total": total,
        "failed": total - succeed,
        "ratio": succeed / total if total > 0 else 0,
    }
    if detail:
        answer["data"] = [packet_text(packet) for packet in table.unacked(detail_limit)]
    if reset:
        table.forget_unacked()
    answer["reset"] = reset
    return answer


def packet_text(packet: bytes) -> str:
    """A packet as its client reads it: the JSON text, inflated when it was gzip'd."""
    raw = gzip.decompress(packet) if packet[:2] == GZIP_MAGIC else packet
    return raw.decode("utf-8", errors="replace")
