"""The composition root: one node's store, core, replica, transport, naming and API.

`run_node(config)` first binds its listening socket (a taken port must not touch the
data), then creates and locks the data directory (one process per directory), opens the
store on its own thread, rebuilds the core from what the store holds (hard state, log,
snapshot boundary, applied state), and runs the replica, the peer client, the leader's beat
sweeper and the HTTP server in one TaskGroup until cancelled. Shutdown order: stop accepting
requests, stop the replica, close the store, release the lock. Every file the node creates
is private to its user (0600, directories 0700): the data is the cluster's whole state.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import random
import socket
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
from naraft.api.edge import EdgeLimits, GuardedSite
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
from naraft.transport import (
    DEFAULT_MAX_BATCH_BYTES,
    PeerClient,
    peer_routes,
)

logger = logging.getLogger(__name__)

DB_FILE: Final = "naraft.db"
LOCK_FILE: Final = "LOCK"
"""Held with flock(LOCK_EX) for the life of the node; holds the holder's pid."""
LISTEN_BACKLOG: Final = 1024
AUDIT_FILE: Final = "election-audit.jsonl"
"""Append-only, one JSON line per role or leader change: {"node", "term", "role", "leader",
"time_ms"}; fsynced. Fault campaigns check Election Safety (one leader per term) on it."""


class SystemClock:
    """Wall-clock milliseconds, used only by the leader to stamp commands
    (docs/conventions.md#the-async-shell)."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)  # noqa: TID251 - the one wall-clock read in naraft


class StartupError(Exception):
    """The node cannot start (a taken port, an unusable or locked data directory); the
    message is the one line the operator sees."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port. Listening at once makes a taken port fail
    here, before the data directory is touched; connections wait in the backlog until the
    node serves them."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as error:
        raise StartupError(f"cannot listen on {where}: {_reason(error)}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # a restarted node must not wait for its old connections' TIME_WAIT to end
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise StartupError(f"cannot listen on {where}: {_reason(error)}") from None
    return sock


def lock_data_dir(path: Path) -> int:
    """Create `path` (0700) if needed and lock it for this process; returns the lock's
    descriptor, to close at exit. A second node on the same directory would interleave
    writes to one database and one election audit, so it is refused."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StartupError(f"cannot use the data directory {path}: {_reason(error)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _lock_holder(fd)
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(f"cannot lock the data directory {path}: {_reason(error)}") from None
        by = f" (pid {holder})" if holder else ""
        raise StartupError(f"the data directory {path} is in use by another node{by}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _lock_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None


def _reason(error: OSError) -> str:
    """`Address already in use` → `address already in use`: the tail of one line."""
    text = error.strerror or str(error)
    return text[:1].lower() + text[1:]


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
        machine: NodeStateMachine | None = None,
    ) -> None:
        self._config = config
        self.replica = replica
        self._machine = machine or NodeStateMachine(datums, naming_state)
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
        self.metrics.observe_machine(self._machine)
        return self.metrics.render()

    def quota_refusal(self) -> str | None:
        return self._machine.quota_refusal()

    def extra_state(self) -> dict[str, object]:
        state: dict[str, object] = {
            "clusterId": self._config.cluster_id,
            "datums": len(self._datums),
            "instances": self._naming_state.instance_count(),
            "diskFull": self.replica.disk_full,
            **self._machine.view(),
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
            # period from now (docs/consistency.md#ephemeral-instances).
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
                self._config.data_dir / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
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

    async def establish_quota_forever(self) -> None:
        """On the leader, make this node's --quota-bytes the cluster's (replicated, so that
        every replica checks writes against the same quota at apply)."""
        while True:
            await asyncio.sleep(self._config.timers.tick_seconds)  # right after an election
            proposal = self._machine.quota_proposal()
            if proposal is None or not self.replica.is_leader:
                continue
            try:
                await self.replica.propose(proposal)
            except (NotLeaderError, UnavailableError) as error:
                logger.info("state quota not proposed yet: %s", error)


async def watch_leader(replica: Replica, timers: Timers) -> None:
    """A follower whose leader fell silent for two beats checks the leader's port: a
    refused connection means the process is gone, so the follower forgets it and starts
    a PreVote at once instead of waiting out the election timer
    (docs/performance-goals.md#fast-failover). A leader that is only slow (or paused)
    still accepts connections and keeps its lease."""
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
            replica.forget_leader()
            await asyncio.sleep(timers.election_ticks * timers.tick_seconds)
        except (OSError, TimeoutError):
            pass  # unreachable or slow: the election timer decides


async def run_node(
    config: NodeConfig,
    *,
    ready: asyncio.Event | None = None,
    push_timings: PushTimings | None = None,
) -> None:
    """Run one node until cancelled. `ready` is set once the HTTP server serves.
    Raises `StartupError` for a taken port or an unusable or locked data directory."""
    loop = asyncio.get_running_loop()
    with contextlib.closing(bind_listener(config.listen_host, config.listen_port)) as sock:
        lock_fd = lock_data_dir(config.data_dir)
        try:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="naraft-store")
            try:
                opened = await loop.run_in_executor(
                    executor, _open, config.data_dir / DB_FILE, config.id, config.cluster_id
                )
                try:
                    await _serve(config, opened, executor, sock, ready, push_timings)
                finally:
                    await loop.run_in_executor(executor, opened.store.close)
            finally:
                executor.shutdown(wait=True)
        finally:
            os.close(lock_fd)  # releases the lock


async def _serve(
    config: NodeConfig,
    opened: _Opened,
    executor: ThreadPoolExecutor,
    sock: socket.socket,
    ready: asyncio.Event | None,
    push_timings: PushTimings | None,
) -> None:
    stored = opened.state
    node_id = NodeId(config.id)
    voters = tuple(NodeId(p) for p in config.peers)
    timers = config.timers
    cluster_id = config.cluster_id  # signed into every peer request, checked on receipt
    core = RaftCore(
        RaftConfig(
            id=node_id,
            voters=voters,
            election_ticks=timers.election_ticks,
            heartbeat_ticks=timers.heartbeat_ticks,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
            max_append_bytes=config.max_append_bytes,
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
    machine = NodeStateMachine(datums, naming_state, quota_bytes=config.quota_bytes)
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
        cluster_id=cluster_id,
    )
    peers = {NodeId(p): f"http://{p}" for p in config.peers if p != config.id}
    replica_box: list[Replica] = []

    def on_unreachable(peer: NodeId, refused: bool) -> None:
        # The leader's port refuses connections: it is gone, not slow. Followers need not
        # wait out the election timer (docs/performance-goals.md#fast-failover).
        if refused and replica_box and replica_box[0].leader == peer:
            replica_box[0].forget_leader()

    client = PeerClient(
        node_id,
        peers,
        config.secret,
        timeout_seconds=config.peer_timeout_seconds,
        metrics=metrics,
        on_peer_unreachable=on_unreachable,
        cluster_id=cluster_id,
        # below the receivers' limit (members share their settings)
        max_batch_bytes=min(DEFAULT_MAX_BATCH_BYTES, config.peer_max_body_bytes // 2),
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
    node = Node(
        config,
        replica=replica,
        datums=datums,
        naming_state=naming_state,
        metrics=metrics,
        machine=machine,
    )
    node.digest = digest
    node_box.append(node)
    # Nacos: a push target is a zombie after pushCacheMillis without a list request.
    push_targets = PushTargets(
        expire_after_ms=lambda: naming_state.switches().default_push_cache_ms
    )
    pusher = UdpPusher(
        naming_state,
        feed,
        push_targets,
        node._clock,
        push_timings or PushTimings(),
        bind_host=config.listen_host,
    )
    naming = NamingService(naming_state, replica, node._clock, node, push_targets, guard=machine)
    app = make_app(
        naming,
        extra_routes=admin_routes(),
        peer_routes=[
            *peer_routes(
                replica.deliver,
                config.secret,
                set(peers),
                metrics,
                self_id=node_id,
                cluster_id=cluster_id,
                max_body_bytes=config.peer_max_body_bytes,
            ),
            *beat_routes(
                node, config.secret, self_id=node_id, members=set(peers), cluster_id=cluster_id
            ),
            *digest.routes(),
        ],
        servers=node,
        max_params=config.http.max_params,
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
        http = config.http
        limits = EdgeLimits(
            header_timeout_seconds=http.header_timeout_seconds,
            body_timeout_seconds=http.body_timeout_seconds,
            max_clients=http.max_connections,
            max_peers=http.peer_connections_per_member * len(config.peers),
        )
        site = GuardedSite(runner, sock, limits, idle_timeout_seconds=http.idle_timeout_seconds)
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
            tasks.create_task(node.establish_quota_forever(), name="state-quota")
            tasks.create_task(pusher.run(), name="udp-push")
            beat_sender = HttpBeatSender(
                session, config.secret, self_id=node_id, cluster_id=cluster_id
            )
            tasks.create_task(node.beat_forwarder.run(beat_sender), name="beat-forwarder")
            tasks.create_task(watch_leader(replica, timers), name="leader-watch")
            tasks.create_task(digest.run(), name="digest")
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await session.close()
