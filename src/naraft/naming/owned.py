"""`OwnedInstances`: the ephemeral instances bound to this node's live client connections.

Nacos 2.x binds an ephemeral instance registered over gRPC to its client connection
instead of client beats. naraft keeps the v1 health model underneath: the node holding the
connection beats each of the connection's instances, every `interval_seconds`, into the
same `BeatSink` client beats use (the leader's `BeatTable`; a follower's `BeatForwarder`
batch). So while the connection lives the leader keeps the instance healthy; when it
closes the gRPC layer calls `close(owner)` and `NamingService.release_owner` with the keys
(one commit); when this node dies its beats stop and the leader's sweep turns the instance
unhealthy, then removes it, after the beat timeouts (docs/nacos-compat.md, "Connection-bound
ephemeral instances (2.x)").

Node-local memory only, never replicated. Bounded by `MAX_OWNED_KEYS` (owner, key) pairs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from naraft.errors import UnavailableError
from naraft.naming.keys import InstanceKey
from naraft.naming.service import BeatSink, Clock

logger = logging.getLogger(__name__)

MAX_OWNED_KEYS: Final = 1_000_000
"""(connection, instance) pairs one node holds; `add` past it is refused."""

BEAT_SLICE_KEYS: Final = 10_000
"""Keys beaten at once. A round's slices are spread over the interval, so a follower's
`BeatForwarder` (at most 100,000 keys a batch) sees a few slices per batch, not all."""


class OwnedInstancesFullError(UnavailableError):
    """This node holds `MAX_OWNED_KEYS` connection-bound instances already: the client
    should register through another node (or later)."""


class OwnedInstances:
    """owner (a live client connection on this node) -> the keys of its ephemeral
    instances; see the module docstring. One event loop; no method blocks."""

    def __init__(self, clock: Clock, *, max_keys: int = MAX_OWNED_KEYS) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._by_owner: dict[str, set[InstanceKey]] = {}
        # key -> how many live owners hold it (one client may hold it over two connections
        # to this node for a moment); a key is beaten once however many hold it.
        self._holders: dict[InstanceKey, int] = {}
        self._size = 0
        self.beats = 0  # beats recorded, for tests and metrics

    def __len__(self) -> int:
        """(owner, key) pairs held."""
        return self._size

    def __contains__(self, key: object) -> bool:
        """Whether some live connection on this node holds instance `key`."""
        return key in self._holders

    def owners(self) -> tuple[str, ...]:
        return tuple(self._by_owner)

    def keys_of(self, owner: str) -> frozenset[InstanceKey]:
        return frozenset(self._by_owner.get(owner, ()))

    def add(self, owner: str, key: InstanceKey) -> None:
        """`owner` registered `key` (an ephemeral instance). Raises OwnedInstancesFullError
        past the bound, ValueError for a persistent key or an empty owner."""
        if not owner:
            raise ValueError("owner must not be empty")
        if not key.ephemeral:
            raise ValueError(f"{key.instance_id} is persistent: it is never connection-bound")
        keys = self._by_owner.get(owner)
        if keys is not None and key in keys:
            return
        if self._size >= self._max_keys:
            raise OwnedInstancesFullError(
                f"this node holds {self._max_keys} connection-bound instances already"
            )
        self._by_owner.setdefault(owner, set()).add(key)
        self._holders[key] = self._holders.get(key, 0) + 1
        self._size += 1

    def discard(self, owner: str, key: InstanceKey) -> None:
        """`owner` deregistered `key` (no-op if it did not hold it)."""
        keys = self._by_owner.get(owner)
        if keys is None or key not in keys:
            return
        keys.remove(key)
        if not keys:
            del self._by_owner[owner]
        self._release(key)

    def close(self, owner: str) -> frozenset[InstanceKey]:
        """`owner`'s connection closed: forget it; the keys it held, for `release_owner`."""
        keys = self._by_owner.pop(owner, set())
        for key in keys:
            self._release(key)
        return frozenset(keys)

    def _release(self, key: InstanceKey) -> None:
        self._size -= 1
        left = self._holders[key] - 1
        if left:
            self._holders[key] = left
        else:
            del self._holders[key]

    async def beat_once(self, beats: BeatSink, interval_seconds: float = 0.0) -> int:
        """Beat every key held now, once, in slices spread over `interval_seconds`; keys
        released meanwhile are skipped. Returns how many were beaten."""
        keys = list(self._holders)
        slices = [keys[i : i + BEAT_SLICE_KEYS] for i in range(0, len(keys), BEAT_SLICE_KEYS)]
        pause = interval_seconds / len(slices) if slices else 0.0
        beaten = 0
        for number, chunk in enumerate(slices):
            if number:
                await asyncio.sleep(pause)
            now_ms = self._clock.now_ms()
            for key in chunk:
                if key in self._holders:
                    await beats.record_beat(key, now_ms)
                    beaten += 1
        self.beats += beaten
        return beaten

    async def run(self, beats: BeatSink, interval_seconds: float) -> None:
        """Beat every held key every `interval_seconds`, until cancelled."""
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self.beat_once(beats, interval_seconds)
            except Exception:  # a bug in a sink must not stop the node; the next round retries
                logger.exception("beating connection-bound instances failed")
            spent = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, interval_seconds - spent))
