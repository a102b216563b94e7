"""Client beats that arrive at a follower: collected for one tick, sent to the leader at once.

Only the leader keeps the last-beat table (`naraft.naming.health.BeatTable`), and a beat is
never a log entry. A follower answers the client at once and queues the instance key;
`BeatForwarder.run` sends each tick's keys to the leader in one request (deduplicated: the
leader stamps them with its own clock on receipt). A batch that finds no leader, or whose
request fails, is dropped: the client beats again within its interval (5 s), far inside
the 15 s the leader waits before it calls an instance unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import orjson

from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.naming.keys import InstanceKey, ServiceKey

logger = logging.getLogger(__name__)

MAX_PENDING_BEATS: Final = 100_000  # distinct instances queued for one batch
MAX_BEATS_PER_REQUEST: Final = 4096  # ~0.4 MB of JSON, well inside the 1 MiB body limit


class BeatSender(Protocol):
    """Delivers a batch to the leader's beat endpoint."""

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        """Raises UnavailableError if the leader did not take the batch."""
        ...


class BeatForwarder:
    """A follower's queue of client beats for the leader; see the module docstring."""

    def __init__(
        self,
        leader: Callable[[], str | None],
        *,
        batch_seconds: float,
        send_timeout_seconds: float = 2.0,
    ) -> None:
        self._leader = leader
        self._batch_seconds = batch_seconds
        self._send_timeout_seconds = send_timeout_seconds
        self._pending: set[InstanceKey] = set()
        self._wake = asyncio.Event()
        self.forwarded = 0  # keys the leader took
        self.dropped = 0  # keys lost to a missing leader or a failed request

    def add(self, key: InstanceKey) -> None:
        """Queue a beat of `key` for the next batch (never blocks, never raises)."""
        if len(self._pending) >= MAX_PENDING_BEATS and key not in self._pending:
            self.dropped += 1
            return
        self._pending.add(key)
        self._wake.set()

    async def run(self, sender: BeatSender) -> None:
        """Forward batches until cancelled."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._batch_seconds)  # let one tick's beats gather
            self._wake.clear()
            batch, self._pending = tuple(self._pending), set()
            leader = self._leader()
            if leader is None:
                self.dropped += len(batch)
                logger.debug("beats dropped: no leader known count=%d", len(batch))
                continue
            for start in range(0, len(batch), MAX_BEATS_PER_REQUEST):
                chunk = batch[start : start + MAX_BEATS_PER_REQUEST]
                try:
                    async with asyncio.timeout(self._send_timeout_seconds):
                        await sender.send_beats(leader, chunk)
                except (UnavailableError, TimeoutError) as error:
                    self.dropped += len(chunk)
                    logger.info(
                        "beats to leader %s dropped count=%d: %s", leader, len(chunk), error
                    )
                    continue
                self.forwarded += len(chunk)


def encode_beats(keys: Sequence[InstanceKey]) -> bytes:
    """The batch body: `{"beats": [[namespace, group, service, cluster, ip, port, eph], …]}`."""
    return orjson.dumps(
        {
            "beats": [
                [
                    k.service.namespace_id,
                    k.service.group_name,
                    k.service.service_name,
                    k.cluster_name,
                    k.ip,
                    k.port,
                    k.ephemeral,
                ]
                for k in keys
            ]
        }
    )


_ROW_SHAPE: Final = "each beat is [ns, group, service, cluster, ip, port, ephemeral]"


def decode_beats(body: bytes) -> tuple[InstanceKey, ...]:
    """Parse a batch body; raises InvalidArgumentError (field `beats`) if malformed."""
    try:
        loaded: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("beats", "must be a JSON object") from None
    rows = loaded.get("beats") if isinstance(loaded, dict) else None
    if not isinstance(rows, list):
        raise InvalidArgumentError("beats", "must be a list")
    keys: list[InstanceKey] = []
    services: dict[tuple[str, str, str], ServiceKey] = {}  # a batch names few services
    for row in rows:
        # exact types, as orjson gives them (bool is not a port); a leader decodes every
        # beat its followers take, so no pattern match (an ABC check per row, 6 us)
        if type(row) is not list or len(row) != 7:
            raise InvalidArgumentError("beats", _ROW_SHAPE)
        ns, group, name, cluster, ip, port, eph = row
        if not (
            type(ns) is str
            and type(group) is str
            and type(name) is str
            and type(cluster) is str
            and type(ip) is str
            and type(port) is int
            and type(eph) is bool
            and 0 <= port <= 65_535
        ):
            raise InvalidArgumentError("beats", _ROW_SHAPE)
        service = services.get((ns, group, name))
        if service is None:
            service = ServiceKey(namespace_id=ns, group_name=group, service_name=name)
            services[ns, group, name] = service
        keys.append(
            InstanceKey(service=service, ephemeral=eph, cluster_name=cluster, ip=ip, port=port)
        )
    return tuple(keys)
