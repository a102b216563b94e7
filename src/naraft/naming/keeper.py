"""`BeatKeeper`: client beats and the health they imply, on whichever node holds them.

On the leader, beats go into its `BeatTable` and a sweep turns missing beats into health
changes and removals (proposed like any write); a new leader gives every ephemeral instance
a full grace period, having no beat history (docs/consistency.md#ephemeral-instances). On a
follower, beats are queued in a `BeatForwarder` and sent to the leader once a tick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from naraft.errors import UnavailableError
from naraft.naming.beats import BeatForwarder, BeatSender
from naraft.naming.codec import encode_command
from naraft.naming.health import BeatPolicy, BeatTable
from naraft.naming.keys import InstanceKey
from naraft.naming.service import Clock
from naraft.naming.state import NamingState
from naraft.raft import NotLeaderError, Role, RoleChange

logger = logging.getLogger(__name__)


class Leadership(Protocol):
    """The replica, as the beat keeper sees it."""

    @property
    def leader(self) -> str | None: ...

    @property
    def is_leader(self) -> bool: ...

    async def propose(self, command: bytes) -> object: ...


class BeatKeeper:
    """Satisfies `BeatSink` (client beats) and `BeatReceiver` (a follower's batch)."""

    def __init__(
        self,
        replica: Leadership,
        state: NamingState,
        clock: Clock,
        policy: BeatPolicy,
        *,
        sweep_interval_seconds: float,
        batch_seconds: float,
    ) -> None:
        self._replica = replica
        self._state = state
        self._clock = clock
        self._table = BeatTable(policy)
        self._sweep_interval_seconds = sweep_interval_seconds
        self.forwarder = BeatForwarder(lambda: replica.leader, batch_seconds=batch_seconds)

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        """A client's beat: kept in the leader's memory only; a follower forwards it."""
        if not self._replica.is_leader:
            self.forwarder.add(key)
            return
        self._table.beat(key, beat_at_ms)

    def receive_beats(self, keys: Sequence[InstanceKey]) -> bool:
        """A follower's batch, stamped with the leader's clock on arrival."""
        if not self._replica.is_leader:
            return False
        now_ms = self._clock.now_ms()
        for key in keys:
            self._table.beat(key, now_ms)
        return True

    def on_role_change(self, change: RoleChange) -> None:
        if change.role is Role.LEADER:
            self._table.reset_all(self._clock.now_ms())

    async def forward_forever(self, sender: BeatSender) -> None:
        await self.forwarder.run(sender)

    async def sweep_forever(self) -> None:
        """On the leader, turn missing beats into health changes and removals."""
        while True:
            await asyncio.sleep(self._sweep_interval_seconds)
            if self._replica.is_leader:
                await self._sweep_once()

    async def _sweep_once(self) -> None:
        for command in self._table.sweep(self._clock.now_ms(), self._state):
            try:
                await self._replica.propose(encode_command(command))
            except (NotLeaderError, UnavailableError, OSError) as error:
                logger.info("health sweep stopped: %s", error)
                return
            except Exception as error:
                logger.warning("health sweep proposal failed: %s", error)
                return
