"""Seeded fault schedules: what the nemesis does to the cluster while clients run.

Each `ScheduleKind` aims at a failure of docs/failure-catalogue.md (see `AIMS`). A schedule
is a coroutine drawing every choice (when, whom, how long) from one `random.Random`, so
a seed names the same sequence of faults; the *targets* that depend on the cluster
(which node leads at that moment) are looked up when the fault fires. Every fault is
noted in the history as a `"process": "nemesis"` line. A schedule returns when its time
is up; `heal` then undoes everything.
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from naraft.chaos.cluster import FILLER_FILE, ChaosCluster, ChaosNode
from naraft.chaos.powerloss import lose_unsynced
from naraft.checker import HistoryRecorder, JsonValue

ELECTION_TIMEOUT_SECONDS: Final = 2.0  # the default profile's upper bound: 10 ticks x 100 ms x 2
TRANSPORT_FAULTS: Final = "peer.loss=0.1;peer.duplicate=0.03;peer.delay_ms=150;peer.reorder=0.1"


class ScheduleKind(enum.StrEnum):
    LEADER_KILL = "leader-kill"
    ISOLATE_LEADER = "isolate-leader"
    TRANSPORT = "transport-faults"
    PAUSE_LEADER = "pause-leader"
    ROLLING_RESTART = "rolling-restart"
    POWER_LOSS_ALL = "power-loss-all"
    PARTITION = "partition"
    BRIDGE = "bridge"
    ONE_WAY = "one-way"
    POWER_LOSS_ONE = "power-loss-one"
    MIXED = "mixed"
    DISK_FULL = "disk-full"
    REPLACE_NODE = "replace-node"


CI_KINDS: Final = (
    ScheduleKind.LEADER_KILL,
    ScheduleKind.ISOLATE_LEADER,
    ScheduleKind.TRANSPORT,
    ScheduleKind.PAUSE_LEADER,
    ScheduleKind.ROLLING_RESTART,
    ScheduleKind.POWER_LOSS_ALL,
)
"""The six CI schedules of docs/fault-campaigns.md, in order."""

SOAK_KINDS: Final = (
    *CI_KINDS,
    ScheduleKind.PARTITION,
    ScheduleKind.BRIDGE,
    ScheduleKind.ONE_WAY,
    ScheduleKind.POWER_LOSS_ONE,
    ScheduleKind.MIXED,
    ScheduleKind.DISK_FULL,
    ScheduleKind.REPLACE_NODE,
)

AIMS: Final[Mapping[ScheduleKind, str]] = {
    ScheduleKind.LEADER_KILL: "lost update on process crash (etcd #14890)",
    ScheduleKind.ISOLATE_LEADER: "stale reads from a deposed leader (Jepsen etcd 0.4.1, Consul)",
    ScheduleKind.TRANSPORT: "lost/duplicated/reordered appends; non-idempotent handlers",
    ScheduleKind.PAUSE_LEADER: "stale reads from a paused zombie leader (Consul default mode)",
    ScheduleKind.ROLLING_RESTART: "lost update on crash; a node that cannot reboot (etcd #5230)",
    ScheduleKind.POWER_LOSS_ALL: "acked before fsync; every node loses unsynced data (#14370)",
    ScheduleKind.PARTITION: "split brain across a majority/minority partition",
    ScheduleKind.BRIDGE: "split brain with a bridge node that sees both sides",
    ScheduleKind.ONE_WAY: "one-way partitions: stale leader lease, PreVote/CheckQuorum",
    ScheduleKind.POWER_LOSS_ONE: "torn WAL tail repaired at restart (etcd #2736, #6378)",
    ScheduleKind.MIXED: "every fault kind, weighted (docs/fault-campaigns.md)",
    ScheduleKind.DISK_FULL: "disk full during a write corrupts the WAL (etcd #2819)",
    ScheduleKind.REPLACE_NODE: "lost writes or two leaders across a membership change",
}

NEEDS_TMPFS: Final = frozenset({ScheduleKind.DISK_FULL})
"""Kinds whose nodes keep their data on a tmpfs of their own (mounting needs root)."""


@dataclass(slots=True)
class Nemesis:
    """The fault injector's handle on one run: cluster, history notes, seeded choices."""

    cluster: ChaosCluster
    recorder: HistoryRecorder
    rng: random.Random
    actions: int = 0

    def note(self, action: str, **fields: JsonValue) -> None:
        self.actions += 1
        self.recorder.nemesis({"f": action, **fields})

    async def target(self, *, leader: bool) -> ChaosNode:
        """The leader (when one is known and `leader`), else a random serving node."""
        if leader:
            found = await self.cluster.leader()
            if found is not None:
                return found
        serving = [n for n in self.cluster.nodes if n.serving] or self.cluster.nodes
        return self.rng.choice(serving)

    async def sleep(self, low: float, high: float, deadline: float) -> bool:
        """Sleep a random time in [low, high], cut at `deadline` (loop time); False if the
        deadline passed."""
        loop = asyncio.get_running_loop()
        seconds = min(self.rng.uniform(low, high), deadline - loop.time())
        if seconds <= 0:
            return False
        await asyncio.sleep(seconds)
        return loop.time() < deadline

    async def kill(self, node: ChaosNode, *, power_loss: bool = False) -> None:
        await node.kill()
        if power_loss:
            lost = lose_unsynced(node.db_path, self.rng)
            self.note(
                "power-loss",
                node=node.id,
                dropped_bytes=lost.dropped_bytes,
                torn_bytes=lost.torn_bytes,
            )
        else:
            self.note("kill", node=node.id)

    def start(self, node: ChaosNode) -> None:
        self.cluster.start_node(node)
        self.note("start", node=node.id)

    async def heal(self) -> None:
        """Undo every fault: links, transport failpoints, pauses, dead processes."""
        self.cluster.links.heal()
        for node in self.cluster.nodes:
            free_disk(node.data_dir)
            if node.paused:
                node.resume()
            if not node.running:
                self.cluster.start_node(node)
        await self.cluster.set_transport_faults("")
        self.note("heal")


Step = Callable[[Nemesis, float], Coroutine[Any, Any, None]]


async def leader_kill(n: Nemesis, deadline: float) -> None:
    """kill -9 the leader every 4-8 s; restart it 0.5-3 s later."""
    while await n.sleep(4, 8, deadline):
        node = await n.target(leader=True)
        await n.kill(node)
        await n.sleep(0.5, 3, deadline + 3)
        n.start(node)


async def isolate_leader(n: Nemesis, deadline: float) -> None:
    """Blackhole the leader's links both ways for 6 s, twice."""
    for _ in range(2):
        if not await n.sleep(2, 4, deadline):
            return
        node = await n.target(leader=True)
        n.cluster.links.isolate(node.id, [o for o in n.cluster.ids if o != node.id])
        n.note("isolate", node=node.id)
        await n.sleep(6, 6, deadline + 6)
        n.cluster.links.heal()
        n.note("heal-links")


async def transport(n: Nemesis, deadline: float) -> None:
    """10 % loss, 3 % duplication, 0-150 ms delay, 10 % reordering on every link, in
    windows of 3-8 s with 2-4 s of calm between them."""
    while await n.sleep(1, 3, deadline):
        seed = n.rng.randrange(1 << 30)
        await n.cluster.set_transport_faults(f"{TRANSPORT_FAULTS};peer.seed={seed}")
        n.note("transport-faults", spec=TRANSPORT_FAULTS)
        await n.sleep(3, 8, deadline + 2)
        await n.cluster.set_transport_faults("")
        n.note("transport-calm")
        await n.sleep(2, 4, deadline)


async def pause_leader(n: Nemesis, deadline: float) -> None:
    """SIGSTOP the leader for 1-2.5x the election timeout, then SIGCONT; reads go on."""
    while await n.sleep(2, 5, deadline):
        node = await n.target(leader=True)
        node.pause()
        n.note("pause", node=node.id)
        await n.sleep(ELECTION_TIMEOUT_SECONDS, 2.5 * ELECTION_TIMEOUT_SECONDS, deadline + 5)
        node.resume()
        n.note("resume", node=node.id)


async def rolling_restart(n: Nemesis, deadline: float) -> None:
    """Kill every node in turn at a random point; restart it after 0.5-2 s."""
    order = list(n.cluster.nodes)
    n.rng.shuffle(order)
    while True:
        for node in order:
            if not await n.sleep(1, 4, deadline):
                return
            await n.kill(node)
            await n.sleep(0.5, 2, deadline + 2)
            n.start(node)


async def power_loss_all(n: Nemesis, deadline: float) -> None:
    """Once or twice: every node loses power at the same moment, then all restart."""
    for _ in range(2):
        if not await n.sleep(4, 9, deadline):
            return
        for node in n.cluster.nodes:
            await n.kill(node, power_loss=True)
        await n.sleep(0.5, 2, deadline + 2)
        for node in n.cluster.nodes:
            n.start(node)


async def power_loss_one(n: Nemesis, deadline: float) -> None:
    """One node (the leader half the time) loses power every 4-8 s."""
    while await n.sleep(4, 8, deadline):
        node = await n.target(leader=n.rng.random() < 0.5)
        await n.kill(node, power_loss=True)
        await n.sleep(0.5, 2, deadline + 2)
        n.start(node)


async def partition(n: Nemesis, deadline: float) -> None:
    """Random majority/minority partitions of 2-8 s, 2-5 s of heal between them."""
    while await n.sleep(2, 5, deadline):
        ids = list(n.cluster.ids)
        n.rng.shuffle(ids)
        cut = n.rng.randrange(1, (len(ids) + 1) // 2)
        minority, majority = ids[:cut], ids[cut:]
        n.cluster.links.partition(minority, majority)
        n.note("partition", minority=list(minority), majority=list(majority))
        await n.sleep(2, 8, deadline + 2)
        n.cluster.links.heal()
        n.note("heal-links")


async def bridge(n: Nemesis, deadline: float) -> None:
    """Two sides that cannot talk, and one bridge node that talks to both."""
    while await n.sleep(2, 5, deadline):
        ids = list(n.cluster.ids)
        n.rng.shuffle(ids)
        middle = ids[0]
        rest = ids[1:]
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        n.cluster.links.partition(left, right)
        n.note("bridge", bridge=middle, left=list(left), right=list(right))
        await n.sleep(3, 8, deadline + 2)
        n.cluster.links.heal()
        n.note("heal-links")


async def one_way(n: Nemesis, deadline: float) -> None:
    """Cut what one node (the leader half the time) sends, or what it receives."""
    while await n.sleep(2, 5, deadline):
        node = await n.target(leader=n.rng.random() < 0.5)
        others = [o for o in n.cluster.ids if o != node.id]
        outbound = n.rng.random() < 0.5
        links = [(node.id, o) if outbound else (o, node.id) for o in others]
        n.cluster.links.cut_links(links)
        n.note("one-way", node=node.id, direction="outbound" if outbound else "inbound")
        await n.sleep(2, 8, deadline + 2)
        n.cluster.links.heal()
        n.note("heal-links")


async def disk_full(n: Nemesis, deadline: float) -> None:
    """Fill one node's disk (the leader half the time) for 2-5 s, then free it; each
    data directory is its own tmpfs, filled up by one preallocated file."""
    while await n.sleep(2, 5, deadline):
        node = await n.target(leader=n.rng.random() < 0.5)
        filled = fill_disk(node.data_dir)
        n.note("disk-full", node=node.id, filled_bytes=filled)
        await n.sleep(2, 5, deadline + 5)
        free_disk(node.data_dir)
        n.note("disk-freed", node=node.id)


def fill_disk(data_dir: Path) -> int:
    """Take every free byte of `data_dir`'s file system with one file; the bytes taken."""
    stats = os.statvfs(data_dir)
    free = stats.f_bavail * stats.f_frsize
    fd = os.open(data_dir / FILLER_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        while free > 0:
            try:
                os.posix_fallocate(fd, size, free)
                size += free
                break
            except OSError:  # not all of it fits (rounding, metadata): take a little less
                free -= max(stats.f_frsize, free // 16)
        return size
    finally:
        os.close(fd)


def free_disk(data_dir: Path) -> None:
    (data_dir / FILLER_FILE).unlink(missing_ok=True)


async def mixed(n: Nemesis, deadline: float) -> None:
    """Fault windows of every kind in turn, weighted as docs/fault-campaigns.md lists."""
    weights: list[tuple[Step, int]] = [
        (leader_kill, 20),
        (power_loss_one, 10),
        (pause_leader, 10),
        (partition, 20),
        (one_way, 10),
        (transport, 20),
        (bridge, 5),
    ]
    loop = asyncio.get_running_loop()
    while loop.time() < deadline - 4:
        step = n.rng.choices([s for s, _ in weights], [w for _, w in weights])[0]
        window = min(deadline, loop.time() + n.rng.uniform(6, 12))
        await step(n, window)
        await n.heal()
        if not await n.sleep(2, 5, deadline):
            return


MEMBERSHIP_GRACE_SECONDS: Final = 30.0  # past the deadline (faults over), the change may finish
# (a killed leader restarts in 5-6 s on a loaded 2-core machine; 12 s ran out once in 9 runs)


async def replace_node(n: Nemesis, deadline: float) -> None:
    """Replace a member under faults: a new node starts with --join, is added as a learner
    and promoted once caught up (match >= commit), then one original member (the leader
    half the time) is removed and stopped. Meanwhile, one fault at a time every 1-3 s:
    the leader killed (restarted 0.5-3 s later) or a node (the joining one included)
    isolated for 2-5 s."""
    if not await n.sleep(1, 3, deadline):
        return
    originals = list(n.cluster.nodes)
    faults = asyncio.create_task(_membership_faults(n, deadline), name="chaos-member-faults")
    try:
        node = await n.cluster.add_joining_node()
        n.start(node)
        limit = deadline + MEMBERSHIP_GRACE_SECONDS
        if await _grow(n, node, limit):
            await _shrink(n, node, originals, limit)
    finally:
        await faults


async def _grow(n: Nemesis, node: ChaosNode, limit: float) -> bool:
    """Add `node` as a learner, promote it once caught up; whether it became a voter."""
    loop = asyncio.get_running_loop()
    while loop.time() < limit:
        rows, commit = await _member_rows(n)
        row = rows.get(node.id)
        if row is not None and node in n.cluster.joining:
            n.cluster.adopt(node)
            n.note("member-listed", node=node.id, role=str(row["role"]))
        if row is not None and row["role"] == "voter":
            return True
        match = None if row is None else row["matchIndex"]
        action = "add" if row is None else "promote"
        if action == "promote" and (not isinstance(match, int) or match < commit):
            await asyncio.sleep(0.2)
            continue
        if await n.cluster.change_member(node.id, action, via=await n.target(leader=True)):
            n.note(f"member-{action}", node=node.id)
        else:
            await asyncio.sleep(0.5)
    return False


async def _shrink(n: Nemesis, new: ChaosNode, originals: list[ChaosNode], limit: float) -> None:
    """Remove one original member (the leader half the time), then stop its process."""
    loop = asyncio.get_running_loop()
    leader = await n.cluster.leader()
    coin = n.rng.random() < 0.5
    victim = leader if leader is not None and leader in originals and coin else None
    victim = victim or n.rng.choice(originals)
    n.note("member-remove-chosen", node=victim.id, leader=leader is victim)
    while loop.time() < limit:
        rows, _ = await _member_rows(n)
        if rows and victim.id not in rows:
            n.cluster.retire(victim)
            await victim.stop()
            n.note("member-removed", node=victim.id)
            return
        via = next((o for o in n.cluster.nodes if o is not victim and o.serving), new)
        if await n.cluster.change_member(victim.id, "remove", via=via):
            n.note("member-remove", node=victim.id)
        else:
            await asyncio.sleep(0.5)


async def _member_rows(n: Nemesis) -> tuple[dict[str, dict[str, Any]], int]:
    """The members as the leader lists them (id -> row) and its commit index; empty when no
    node answered with a leader."""
    listing = await n.cluster.members()
    if listing is None:
        await asyncio.sleep(0.2)
        return {}, 0
    return {str(r["id"]): r for r in listing["members"]}, int(listing["commitIndex"])


async def _membership_faults(n: Nemesis, deadline: float) -> None:
    """One fault at a time until `deadline`; a node removed meanwhile is not restarted."""
    while await n.sleep(1, 3, deadline):
        if n.rng.random() < 0.5:
            node = await n.target(leader=True)
            await n.kill(node)
            await n.sleep(0.5, 3, deadline + 3)
            if node in n.cluster.nodes or node in n.cluster.joining:
                n.start(node)
        else:
            everyone = [*n.cluster.nodes, *n.cluster.joining]
            node = n.rng.choice(everyone)
            n.cluster.links.isolate(node.id, [o.id for o in everyone if o is not node])
            n.note("isolate", node=node.id)
            await n.sleep(2, 5, deadline + 5)
            n.cluster.links.heal()
            n.note("heal-links")


STEPS: Final[Mapping[ScheduleKind, Step]] = {
    ScheduleKind.LEADER_KILL: leader_kill,
    ScheduleKind.ISOLATE_LEADER: isolate_leader,
    ScheduleKind.TRANSPORT: transport,
    ScheduleKind.PAUSE_LEADER: pause_leader,
    ScheduleKind.ROLLING_RESTART: rolling_restart,
    ScheduleKind.POWER_LOSS_ALL: power_loss_all,
    ScheduleKind.PARTITION: partition,
    ScheduleKind.BRIDGE: bridge,
    ScheduleKind.ONE_WAY: one_way,
    ScheduleKind.POWER_LOSS_ONE: power_loss_one,
    ScheduleKind.MIXED: mixed,
    ScheduleKind.DISK_FULL: disk_full,
    ScheduleKind.REPLACE_NODE: replace_node,
}
