"""The composition root: one node's store, core, replica, transport, naming and API.

`run_node(config)` opens the store on its own thread, rebuilds the core from what the
store holds (hard state, log, snapshot boundary, applied state), and runs the replica,
the peer client, the leader's beat sweeper and the HTTP server in one TaskGroup until
cancelled. Shutdown order: stop accepting requests, stop the replica, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import orjson
from aiohttp import web

from naraft.api.admin import NODE, admin_routes
from naraft.api.app import make_app
from naraft.api.forward import FORWARD_SESSION, forward_middleware
from naraft.api.v1.beats import HttpBeatSender, beat_routes
from naraft.api.v1.operator import ServerInfo
from naraft.config import NodeConfig, Timers, parse_address
from naraft.digest.sync import SyncSettings
from naraft.digest.wiring import DigestService, DigestSettings
from naraft.errors import UnavailableError
from naraft.machine import NodeStateMachine
from naraft.metrics import NodeMetrics
from naraft.naming.beats import BeatForwarder
from naraft.naming.codec import encode_command
from naraft.naming.feed import ChangeFeed
from naraft.naming.health import BeatPolicy, BeatTable
from naraft.naming.keys import InstanceKey
from naraft.naming.push import PushTargets, PushTimings
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.naming.udp import UdpPusher
from naraft.raft import NodeId, NotLeaderError, RaftConfig, RaftCore, Role, RoleChange, Status
from naraft.replica import CompactionPolicy, Replica, ReplicaTimings
from naraft.state.datums import Datum, DatumTable
from naraft.state.kv import read_value
from naraft.storage import open_store
from naraft.storage.base import StoredState
from naraft.storage.sqlite import SqliteStore
from naraft.transport import PeerClient, peer_routes

logger = logging.getLogger(__name__)

DB_FILE: Final = "naraft.db"
AUDIT_FILE: Final = "election-audit.jsonl"
"""Append-only, one JSON line per role or leader change: {"node", "term", "role", "leader",
"time_ms"}; fsynced. Fault campaigns check Election Safety (one leader per term) on it."""


class SystemClock:
    """Wall-clock milliseconds, used only by the leader to stamp commands (STYLE §15.7)."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)  # noqa: TID251 - the one wall-clock read in naraft


@dataclass(slots=True)
class _Opened:
    store: SqliteStore
    state: StoredState


def _open(path: Path, node_id: str, cluster_id: str) -> _Opened:
    store = open_store(path)
    try:
        store.set_node_id(node_id)
        # The first start records the cluster id; every later one must compute the same
        # (else ClusterIdMismatchError: one line from `naraft server`, no traceback).
        if store.set_cluster_id(cluster_id):
            logger.info("data directory %s now belongs to cluster %s", path.parent, cluster_id)
        state = store.load()
    except BaseException:
        store.close()
        raise
    return _Opened(store=store, state=state)


class Node:
    """One running node; the API reaches the cluster through it (RaftNodeView, BeatSink)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        replica: Replica,
        datums: DatumTable,
        naming_state: NamingState,
        metrics: NodeMetrics,
    ) -> None:
        self._config = config
        self.replica = replica
        self._datums = datums
        self._naming_state = naming_state
        self.metrics = metrics
        self.digest: DigestService | None = None  # catch-up and checksum views (extra_state)
        self._clock = SystemClock()
        health = config.health
        self._beats = BeatTable(
            BeatPolicy(
                unhealthy_after_ms=health.unhealthy_after_ms,
                remove_after_ms=health.remove_after_ms,
            )
        )
        # Followers batch client beats for one tick and send them to the leader.
        self.beat_forwarder = BeatForwarder(
            lambda: self.replica.leader, batch_seconds=config.timers.tick_seconds
        )

    # RaftNodeView
    @property
    def status(self) -> Status:
        return self.replica.status

    @property
    def members(self) -> tuple[str, ...]:
        return self._config.peers

    async def propose(self, command: bytes) -> object:
        return await self.replica.propose(command)

    async def read_barrier(self) -> None:
        await self.replica.read_barrier()

    def kv_get(self, key: str) -> Datum | None:
        return read_value(self._datums, key)

    def metrics_text(self) -> bytes:
        self.metrics.observe_status(self.replica.status)
        self.metrics.disk_full.set(0 if self.replica.disk_full is None else 1)
        return self.metrics.render()

    def extra_state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "clusterId": self._config.cluster_id,
            "datums": len(self._datums),
            "instances": self._naming_state.instance_count(),
            "diskFull": self.replica.disk_full,
        }
        if self.digest is not None:
            state.update(self.digest.view())
        return state

    # BeatSink: client beats live in the leader's memory only; followers forward them.
    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        if not self.replica.is_leader:
            self.beat_forwarder.add(key)
            return
        self._beats.beat(key, beat_at_ms)

    # BeatReceiver: a follower's batch, stamped with the leader's clock on arrival.
    def receive_beats(self, keys: Sequence[InstanceKey]) -> bool:
        if not self.replica.is_leader:
            return False
        now_ms = self._clock.now_ms()
        for key in keys:
            self._beats.beat(key, now_ms)
        return True

    # ServerDirectory
    def servers(self) -> list[ServerInfo]:
        status = self.replica.status
        infos = []
        for member in self._config.peers:
            host, port = parse_address(member, field="peers")
            reachable = member == status.id or (
                status.role is Role.LEADER and status.peers[NodeId(member)].recent_active
            )
            infos.append(
                ServerInfo(
                    ip=host,
                    port=port,
                    state="UP" if reachable or status.role is not Role.LEADER else "DOWN",
                    extend_info={"raftPort": port, "leader": status.leader},
                )
            )
        return infos

    def on_role_change(self, change: RoleChange) -> None:
        self.metrics.on_role_change(change)
        self._audit_election(change)
        if change.role is Role.LEADER:
            # A new leader has no beat history: every ephemeral instance gets a full grace
            # period from now (DESIGN §3).
            self._beats.reset_all(self._clock.now_ms())

    def _audit_election(self, change: RoleChange) -> None:
        line = orjson.dumps(
            {
                "node": self._config.id,
                "term": change.term,
                "role": change.role.value,
                "leader": change.leader,
                "time_ms": self._clock.now_ms(),
            }
        )
        try:
            fd = os.open(
                self._config.data_dir / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            logger.warning("cannot append to the election audit log: %s", error)

    def on_persisted(self, seconds: float, entries: int) -> None:
        self.metrics.on_persisted(seconds, entries)

    def on_committed(self, seconds: float) -> None:
        self.metrics.on_committed(seconds)

    async def sweep_forever(self) -> None:
        """On the leader, turn missing beats into health changes and removals."""
        while True:
            await asyncio.sleep(self._config.health.sweep_interval_seconds)
            if not self.replica.is_leader:
                continue
            for command in self._beats.sweep(self._clock.now_ms(), self._naming_state):
                try:
                    await self.replica.propose(encode_command(command))
                except (NotLeaderError, UnavailableError, OSError) as error:
                    logger.info("health sweep stopped: %s", error)
                    break
                except Exception as error:
                    logger.warning("health sweep proposal failed: %s", error)
                    break


def forget_dead_leader(replica: Replica, tick_seconds: float) -> None:
    """The leader's port refused a connection: its process is gone. The core forgets it
    and draws a random delay (every follower saw the same refusal at the same instant:
    campaigning at once splits the vote); the PreVote starts when that delay has passed,
    with sub-tick resolution, not at the next tick."""
    loop = asyncio.get_running_loop()

    def forget(core: RaftCore) -> None:
        delay_ticks = core.forget_leader()
        if delay_ticks is not None:
            loop.call_later(delay_ticks * tick_seconds, replica.call, _hurry_election)

    replica.call(forget)


def _hurry_election(core: RaftCore) -> None:
    core.hurry_election()


async def watch_leader(replica: Replica, timers: Timers) -> None:
    """A follower whose leader fell silent for two beats checks the leader's port: a
    refused connection means the process is gone, so the follower forgets it and starts
    a PreVote at once instead of waiting out the election timer (perf-anchors §5). A
    leader that is only slow (or paused) still accepts connections and keeps its lease."""
    beat_seconds = timers.tick_seconds * timers.heartbeat_ticks
    silence_seconds = 2 * beat_seconds
    while True:
        await asyncio.sleep(timers.tick_seconds)
        status = replica.status
        leader = status.leader
        if status.role is not Role.FOLLOWER or leader is None:
            continue
        if replica.silent_for(leader) < silence_seconds:
            continue
        host, port = parse_address(leader, field="leader")
        try:
            async with asyncio.timeout(beat_seconds):
                _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        except ConnectionRefusedError:
            logger.info("leader %s refuses connections: starting an election soon", leader)
            forget_dead_leader(replica, timers.tick_seconds)
            await asyncio.sleep(timers.election_ticks * timers.tick_seconds)
        except (OSError, TimeoutError):
            pass  # unreachable or slow: the election timer decides


async def run_node(
    config: NodeConfig,
    *,
    ready: asyncio.Event | None = None,
    push_timings: PushTimings | None = None,
) -> None:
    """Run one node until cancelled. `ready` is set once the HTTP server listens."""
    loop = asyncio.get_running_loop()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="naraft-store")
    try:
        opened = await loop.run_in_executor(
            executor, _open, config.data_dir / DB_FILE, config.id, config.cluster_id
        )
    except BaseException:
        executor.shutdown(wait=True)
        raise
    try:
        await _serve(config, opened, executor, ready, push_timings or PushTimings())
    finally:
        await loop.run_in_executor(executor, opened.store.close)
        executor.shutdown(wait=True)


async def _serve(
    config: NodeConfig,
    opened: _Opened,
    executor: ThreadPoolExecutor,
    ready: asyncio.Event | None,
    push_timings: PushTimings,
) -> None:
    stored = opened.state
    node_id = NodeId(config.id)
    voters = tuple(NodeId(p) for p in config.peers)
    timers = config.timers
    core = RaftCore(
        RaftConfig(
            id=node_id,
            voters=voters,
            election_ticks=timers.election_ticks,
            heartbeat_ticks=timers.heartbeat_ticks,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
        ),
        rng=random.Random(),
        hard_state=stored.hard_state,
        log=stored.entries,
        snapshot=stored.snapshot,
        applied=stored.applied_index,
        logger=logging.getLogger("naraft.raft"),
    )
    datums = DatumTable(stored.datums)
    feed = ChangeFeed()
    naming_state = NamingState(datums, feed)
    machine = NodeStateMachine(datums, naming_state)
    metrics = NodeMetrics()
    digest = DigestService(
        datums=datums,
        applied_index=core.applied_index,
        self_id=node_id,
        members=voters,
        secret=config.secret,
        make_machine=lambda table: NodeStateMachine(table, NamingState(table)),
        beat_only=lambda: naming_state.switches().send_beat_only,
        settings=DigestSettings(
            sync=SyncSettings(batch_keys=config.digest_batch_keys, parallel=config.digest_parallel),
            checksum_interval_seconds=config.checksum_interval_seconds,
        ),
        registry=metrics.registry,
    )
    peers = {NodeId(p): f"http://{p}" for p in config.peers if p != config.id}
    replica_box: list[Replica] = []

    def on_unreachable(peer: NodeId, refused: bool) -> None:
        # The leader's port refuses connections: it is gone, not slow. Followers need not
        # wait out the election timer (perf-anchors §5).
        if refused and replica_box and replica_box[0].leader == peer:
            forget_dead_leader(replica_box[0], timers.tick_seconds)

    client = PeerClient(
        node_id,
        peers,
        config.secret,
        timeout_seconds=config.peer_timeout_seconds,
        metrics=metrics,
        on_peer_unreachable=on_unreachable,
        cluster_id=config.cluster_id,
    )
    node_box: list[Node] = []

    class _Observer:
        def on_role_change(self, change: RoleChange) -> None:
            node_box[0].on_role_change(change)

        def on_persisted(self, seconds: float, entries: int) -> None:
            metrics.on_persisted(seconds, entries)

        def on_committed(self, seconds: float) -> None:
            metrics.on_committed(seconds)

    replica = Replica(
        core,
        store=opened.store,
        store_executor=executor,
        peers=client,
        state_machine=machine,
        timings=ReplicaTimings(
            tick_seconds=timers.tick_seconds,
            proposal_timeout_seconds=config.proposal_timeout_seconds,
            leader_wait_seconds=max(2.0, 3 * timers.election_ticks * timers.tick_seconds),
        ),
        observer=_Observer(),
        on_snapshot_needed=digest.on_snapshot_needed,
        compaction=CompactionPolicy(
            max_log_entries=config.compact_max_entries,
            keep_entries=config.compact_keep_entries,
        ),
        on_applied=digest.on_applied,
        # Entries publish their own changes; a digest install or repair has none to apply.
        on_installed=naming_state.publish_replaced_changes,
    )
    replica_box.append(replica)
    digest.attach(replica)
    node = Node(config, replica=replica, datums=datums, naming_state=naming_state, metrics=metrics)
    node.digest = digest
    node_box.append(node)
    # Nacos: a push target is a zombie after pushCacheMillis without a list request.
    push_targets = PushTargets(
        expire_after_ms=lambda: naming_state.switches().default_push_cache_ms
    )
    pusher = UdpPusher(
        naming_state, feed, push_targets, node._clock, push_timings, bind_host=config.listen_host
    )
    naming = NamingService(naming_state, replica, node._clock, node, push_targets)
    app = make_app(
        naming,
        extra_routes=[
            *admin_routes(),
            *peer_routes(
                replica.deliver,
                config.secret,
                set(peers),
                metrics,
                self_id=node_id,
                cluster_id=config.cluster_id,
            ),
            *beat_routes(node, config.secret),
            *digest.routes(),
        ],
        servers=node,
        middlewares=[
            forward_middleware(
                config.id,
                config.proposal_timeout_seconds + 1.0,
                metrics.forwarded.inc,
                wait_new_leader=replica.wait_for_new_leader,
                # a new leader comes within one to two election timeouts of the old one's death
                new_leader_seconds=max(2.0, 3 * timers.tick_seconds * timers.election_ticks),
            )
        ],
    )
    app[NODE] = node
    session = aiohttp.ClientSession()
    # aiohttp resends a PUT or DELETE once when the connection breaks, even after the leader
    # applied it: a forwarded compare-and-set would then answer 409 for a write that took
    # effect. A broken forward must surface as an unknown outcome instead (found by the
    # chaos campaign; aiohttp's own test client turns the retry off the same way).
    session._retry_connection = False
    app[FORWARD_SESSION] = session
    runner = web.AppRunner(app, auto_decompress=False, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port, reuse_address=True)
        await site.start()
        logger.info(
            "node %s listening on %s:%d, members %s, cluster %s, data %s, tick %.3fs",
            config.id,
            config.listen_host,
            config.listen_port,
            ",".join(config.peers),
            config.cluster_id,
            config.data_dir,
            timers.tick_seconds,
        )
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(replica.run(), name="replica")
            tasks.create_task(client.run(), name="peer-client")
            tasks.create_task(node.sweep_forever(), name="beat-sweeper")
            tasks.create_task(pusher.run(), name="udp-push")
            beat_sender = HttpBeatSender(session, config.secret)
            tasks.create_task(node.beat_forwarder.run(beat_sender), name="beat-forwarder")
            tasks.create_task(watch_leader(replica, timers), name="leader-watch")
            tasks.create_task(digest.run(), name="digest")
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await session.close()
