"""One leader watch: a follower notices a dead leader before its election timer does.

A leader whose port refuses connections is gone, not slow: its followers forget it and
start a PreVote at once instead of waiting out the election timeout
(docs/performance-goals.md#fast-failover). Three signals feed the same decision: the peer
client reports a refused connection to the leader as it happens; a stream the leader opened
to this node ends (the kernel closes a dead process's sockets, so this comes first), and
`run` probes the leader's port at once; and `run` probes the leader's port once it has been
silent for two beats (a leader with nothing to send never gives the peer client a chance to
see the refusal, and a leader cut off by the network ends no stream). Only a refusal counts:
a stream also ends when a live leader reconnects, and a leader that is only slow, or
paused, still accepts connections and keeps its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from naraft.config import Timers, parse_address
from naraft.raft import NodeId, Role
from naraft.replica import Replica

logger = logging.getLogger(__name__)


class LeaderWatch:
    def __init__(self, replica: Replica, timers: Timers) -> None:
        self._replica = replica
        self._timers = timers
        self._suspects: set[NodeId] = set()  # peers whose streams ended since the last look
        self._wake = asyncio.Event()

    def on_peer_unreachable(self, peer: NodeId, refused: bool) -> None:
        """The peer client's report (see `naraft.transport.PeerClient`)."""
        if refused and self._replica.leader == peer:
            self._leader_gone(peer)

    def on_stream_end(self, peer: NodeId) -> None:
        """A stream `peer` opened to this node ended (`naraft.transport.peer_routes`): if
        `peer` still leads when `run` wakes, it probes its port now instead of after two
        silent beats."""
        self._suspects.add(peer)
        self._wake.set()

    async def run(self) -> None:
        """Probe a silent leader's port every tick, and the leader whose stream ended as
        soon as it ends, until cancelled."""
        timers = self._timers
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timers.tick_seconds):
                    await self._wake.wait()
            self._wake.clear()
            suspects, self._suspects = self._suspects, set()
            leader = self._leader_among(suspects) or self._silent_leader()
            if leader is not None and await self._refuses(leader):
                self._leader_gone(leader)
                await asyncio.sleep(timers.election_seconds)

    def _leader_among(self, suspects: set[NodeId]) -> NodeId | None:
        """The leader this node follows, if it is one of `suspects` (several streams may end
        in one instant: one of a dead leader and one of a reconnecting peer)."""
        status = self._replica.status
        if status.role is not Role.FOLLOWER or status.leader not in suspects:
            return None
        return status.leader

    def _silent_leader(self) -> NodeId | None:
        status = self._replica.status
        leader = status.leader
        if status.role is not Role.FOLLOWER or leader is None:
            return None
        if self._replica.silent_for(leader) < 2 * self._timers.beat_seconds:
            return None
        return leader

    async def _refuses(self, leader: NodeId) -> bool:
        host, port = parse_address(leader, field="leader")
        try:
            async with asyncio.timeout(self._timers.beat_seconds):
                _reader, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            return True
        except (OSError, TimeoutError):
            return False  # unreachable or slow: the election timer decides
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return False

    def _leader_gone(self, leader: NodeId) -> None:
        """The replica forgets the leader; its core draws the random delay after which the
        PreVote starts (`Replica.forget_leader`)."""
        logger.info("leader %s refuses connections: starting an election soon", leader)
        self._replica.forget_leader()
