"""The leader watch on real loopback sockets: a stream's end makes it probe the leader's
port at once, and only a refusal from the leader it follows makes it forget the leader.

The tick is a minute long, so the watch's own silence probe never runs within a test:
whatever it does, it does because a stream ended."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, cast

from naraft.config import Timers
from naraft.leader_watch import LeaderWatch
from naraft.raft import NodeId, Role
from naraft.replica import Replica

WAIT_SECONDS: Final = 5.0
SLOW_TICKS: Final = Timers(tick_seconds=60.0, heartbeat_ticks=1, election_ticks=10)


@dataclass(frozen=True, slots=True)
class _Status:
    role: Role
    leader: NodeId | None


@dataclass
class FollowerReplica:
    """What the watch reads of a replica: a follower that has heard its leader just now."""

    leader: NodeId | None
    forgotten: list[NodeId | None] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> _Status:
        return _Status(Role.FOLLOWER, self.leader)

    def silent_for(self, _peer: NodeId) -> float:
        return 0.0

    def forget_leader(self) -> None:
        self.forgotten.append(self.leader)
        self.changed.set()


def refusing_address() -> NodeId:
    """A loopback address nothing listens on: a connection to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return NodeId(f"127.0.0.1:{probe.getsockname()[1]}")


@contextlib.asynccontextmanager
async def listening() -> AsyncIterator[tuple[NodeId, asyncio.Event]]:
    """A live leader's port, and an event set when a connection comes (the probe)."""
    probed = asyncio.Event()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        probed.set()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield NodeId(f"127.0.0.1:{port}"), probed
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def watching(replica: FollowerReplica) -> AsyncIterator[LeaderWatch]:
    watch = LeaderWatch(cast(Replica, replica), SLOW_TICKS)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def let_the_watch_run() -> None:
    """Give the watch's task its turn (it takes a wake-up within a few loop steps)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_end_of_a_dead_leaders_stream_makes_the_follower_forget_it_at_once() -> None:
    replica = FollowerReplica(leader=refusing_address())
    async with watching(replica) as watch:
        watch.on_stream_end(replica.leader or NodeId(""))
        async with asyncio.timeout(WAIT_SECONDS):  # a minute's tick would be far later
            await replica.changed.wait()
    assert replica.forgotten == [replica.leader]


async def test_a_live_leader_whose_stream_ended_is_probed_and_kept() -> None:
    async with listening() as (alive, probed):
        replica = FollowerReplica(leader=alive)
        async with watching(replica) as watch:
            watch.on_stream_end(alive)
            async with asyncio.timeout(WAIT_SECONDS):
                await probed.wait()
            # the same watch still acts on the next refusal: the accepted probe left no mark
            replica.leader = refusing_address()
            watch.on_stream_end(replica.leader)
            async with asyncio.timeout(WAIT_SECONDS):
                await replica.changed.wait()
    assert replica.forgotten == [replica.leader]


async def test_the_end_of_a_stream_from_a_peer_that_does_not_lead_is_not_probed() -> None:
    async with listening() as (alive, probed):
        replica = FollowerReplica(leader=alive)
        async with watching(replica) as watch:
            watch.on_stream_end(refusing_address())  # gone, but not the leader
            await let_the_watch_run()
            watch.on_stream_end(alive)
            async with asyncio.timeout(WAIT_SECONDS):
                await probed.wait()
            await let_the_watch_run()
    assert replica.forgotten == []


async def test_a_dead_leaders_stream_end_is_not_hidden_by_another_peers_in_the_same_instant() -> (
    None
):
    replica = FollowerReplica(leader=refusing_address())
    async with listening() as (alive, _probed), watching(replica) as watch:
        watch.on_stream_end(replica.leader or NodeId(""))
        watch.on_stream_end(alive)  # another peer's stream, ended in the same turn
        async with asyncio.timeout(WAIT_SECONDS):
            await replica.changed.wait()
    assert replica.forgotten == [replica.leader]
