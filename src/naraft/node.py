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
import dataclasses
import errno
import fcntl
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import grpc
from aiohttp import web

from naraft.api.admin import NODE, admin_routes
from naraft.api.app import is_peer_request, make_app
from naraft.api.auth import MAX_PASSWORD_BYTES, AuthService, generate_password, hash_password
from naraft.api.core_ops import core_ops_routes
from naraft.api.edge import ConnectionGate, EdgeLimits, GuardedSite
from naraft.api.forward import FORWARD_SESSION, FORWARD_TLS, forward_middleware
from naraft.api.health import HEALTH, readiness_reason
from naraft.api.members import MEMBERS_NODE, join_routes, member_routes
from naraft.api.observe import AccessLog, observe_middleware
from naraft.api.snapshot import SNAPSHOT, snapshot_routes
from naraft.api.v1.beats import HttpBeatSender, beat_routes
from naraft.api.v1.configs import ConfigApi
from naraft.api.v1.operator import PUSH_STATS, ServerInfo
from naraft.auth.state import ADMIN_USER, AuthApplied, encode_bootstrap, signing_key
from naraft.config import (
    AuthMode,
    LogFormat,
    NodeConfig,
    is_loopback,
    parse_address,
    write_cluster_conf,
)
from naraft.configs.listeners import ListenerHub
from naraft.configs.service import ConfigService
from naraft.configs.state import ConfigState
from naraft.digest.server import FrozenState
from naraft.digest.wiring import DigestService
from naraft.election_audit import ElectionAudit
from naraft.errors import InvalidArgumentError, NaraftError, UnavailableError
from naraft.grpc.clients import ClientViews, client_routes
from naraft.grpc.config import ConfigRoutes
from naraft.grpc.connections import ConnectionTable
from naraft.grpc.forward import HttpLeaderLink, grpc_forward_routes
from naraft.grpc.naming import NamingRoutes
from naraft.grpc.server import GrpcServer
from naraft.leader_watch import LeaderWatch
from naraft.machine import (
    MEMBERSHIP_KEY,
    NodeStateMachine,
    cluster_version_of,
    membership_of,
    raised_version,
)
from naraft.metrics import NodeMetrics
from naraft.naming.feed import ChangeFeed
from naraft.naming.keeper import BeatKeeper
from naraft.naming.owned import OwnedInstances
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.naming.udp import UdpPusher
from naraft.node_events import NodeEvents
from naraft.raft import Index, NodeId, NotLeaderError, RaftCore, RaftError, Role, Status
from naraft.raft.membership import Membership, MembershipChange, decode_membership
from naraft.replica import Replica
from naraft.state.datums import Datum, DatumChanges, DatumTable
from naraft.state.kv import read_value
from naraft.storage import open_store
from naraft.storage.base import StoredState
from naraft.storage.sqlite import SqliteStore
from naraft.tls import PeerTls, server_context
from naraft.transport import PeerClient, peer_routes
from naraft.transport import join as join_protocol
from naraft.transport.auth import write_secret_file
from naraft.transport.join import JOIN_PATH
from naraft.transport.members import MemberView
from naraft.transport.signing import PeerSigner, PeerVerifier, wall_clock_ms
from naraft.upgrade import ClusterVersionGate

logger = logging.getLogger(__name__)

DB_FILE: Final = "naraft.db"
LOCK_FILE: Final = "LOCK"
"""Held with flock(LOCK_EX) for the life of the node; holds the holder's pid."""
LISTEN_BACKLOG: Final = 1024
ADMIN_PASSWORD_FILE: Final = "admin.password"
"""The first admin's generated password (0600), written by the node whose bootstrap won."""
CONFIG_PRUNE_INTERVAL_SECONDS: Final = 60.0


class SystemClock:
    """Wall-clock milliseconds, used only by the leader to stamp commands
    (docs/conventions.md#the-async-shell)."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)  # noqa: TID251 - the one wall-clock read in naraft


class NodeStoppingError(Exception):
    """Ends the node's task group when a stop was asked for (run_node returns)."""


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
    return text if text.isascii() and text.isdigit() else None


def _reason(error: OSError) -> str:
    """`Address already in use` → `address already in use`: the tail of one line."""
    text = error.strerror or str(error)
    return text[:1].lower() + text[1:]


@dataclass(slots=True)
class _Opened:
    store: SqliteStore
    state: StoredState
    recorded_cluster_id: str | None  # None: a new data directory
    persisted: Membership | None  # the members the data directory holds, if any change ran


def _open(path: Path, node_id: str) -> _Opened:
    store = open_store(path)
    try:
        store.set_node_id(node_id)
        state = store.load()
        recorded = store.recorded_cluster_id()
    except BaseException:
        store.close()
        raise
    return _Opened(
        store=store, state=state, recorded_cluster_id=recorded, persisted=persisted_members(state)
    )


def _record_cluster_id(opened: _Opened, cluster_id: str, data_dir: Path) -> None:
    # The first start records the cluster id; every later one must compute the same
    # (else ClusterIdMismatchError: one line from `naraft server`, no traceback).
    if opened.store.set_cluster_id(cluster_id):
        logger.info("data directory %s now belongs to cluster %s", data_dir, cluster_id)


def persisted_members(state: StoredState) -> Membership | None:
    """The configuration a data directory holds: its newest membership entry, else the one
    its applied state records; None if no membership change ever reached it."""
    for entry in reversed(state.entries):
        found = decode_membership(entry.command)
        if found is not None:
            return found
    return membership_of(state.datums)


def recorded_version(state: StoredState) -> int:
    """The peer protocol version a data directory records every member speaking: its
    applied state's record, raised by any record still in its log (1: none)."""
    raised = (raised_version(entry.command) for entry in state.entries)
    return max((cluster_version_of(state.datums), *(v for v in raised if v is not None)))


def check_build_reads(config: NodeConfig, opened: _Opened) -> None:
    """Raises StartupError when the cluster recorded a peer protocol version this build
    does not speak: its log may hold commands this build cannot apply (a downgrade)."""
    recorded = recorded_version(opened.state)
    if config.peer_protocol.high < recorded:
        raise StartupError(
            f"the data directory {config.data_dir} belongs to a cluster that records peer "
            f"protocol {recorded}, and this build speaks {config.peer_protocol}: its log may "
            "hold commands this build cannot apply. Run a build that speaks version "
            f"{recorded} (a cluster is never downgraded past a version it recorded)"
        )


def settle_members(config: NodeConfig, opened: _Opened) -> NodeConfig:
    """The configuration to run with once the data directory has been read: persisted
    members are the truth. Raises StartupError (one line naming what to run instead) for
    `--standalone` on a clustered data directory or a member list that disagrees with it."""
    persisted, recorded = opened.persisted, opened.recorded_cluster_id
    where = config.data_dir
    if persisted is None:
        if config.standalone and recorded is not None and recorded != config.cluster_id:
            raise StartupError(
                f"the data directory {where} holds the data of cluster {recorded}, not of "
                "this standalone node: start it with the cluster's --peers (or --join URL); "
                "to take a member out of a cluster use `naraft member remove`"
            )
        return config
    members = sorted(persisted.members)
    listed = ",".join(members)
    if config.join is not None:
        return dataclasses.replace(config, peers=tuple(members), known_cluster_id=recorded)
    if config.standalone and persisted.members != {config.id}:
        raise StartupError(
            f"the data directory {where} belongs to a cluster whose members are {listed}: "
            f"start it with --peers {listed}, not --standalone "
            "(to shrink the cluster, run `naraft member remove ID --server URL`)"
        )
    if set(config.peers) != persisted.members:
        raise StartupError(
            f"--peers {','.join(sorted(config.peers))} disagrees with the members the data "
            f"directory {where} holds ({listed}): start it with --peers {listed}; change "
            "members with `naraft member add ID --server URL` or `naraft member remove ID "
            "--server URL`"
        )
    return dataclasses.replace(config, known_cluster_id=recorded)


@dataclass(frozen=True, slots=True)
class NamingSizes:
    """The registry's sizes and push counts (metrics.NamingView)."""

    state: NamingState
    targets: PushTargets
    pusher: UdpPusher

    def service_count(self) -> int:
        return len(self.state.all_services())

    def instance_count(self) -> int:
        return self.state.instance_count()

    def subscriber_count(self) -> int:
        return self.targets.subscriber_count()

    def pushes(self) -> tuple[int, int]:
        return self.pusher.sent, self.pusher.given_up


class Node:
    """One running node as the API sees it (RaftNodeView, ServerDirectory, HealthView)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        replica: Replica,
        machine: NodeStateMachine,
        datums: DatumTable,
        naming_state: NamingState,
        metrics: NodeMetrics,
        digest: DigestService,
        configs: ConfigApi,
        naming_sizes: NamingSizes,
        owned: OwnedInstances,
        grpc: GrpcServer,
        member_view: MemberView,
    ) -> None:
        self._config = config
        self._member_view = member_view
        self.grpc = grpc
        self.configs = configs
        # The ephemeral instances this node's live client connections (Nacos 2.x) own.
        self.owned = owned
        self.replica = replica
        self._machine = machine
        self._datums = datums
        self._naming_state = naming_state
        self.metrics = metrics
        self._digest = digest
        self._naming_sizes = naming_sizes

    # RaftNodeView
    @property
    def status(self) -> Status:
        return self.replica.status

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._member_view)

    # MembersNode
    @property
    def clustered(self) -> bool:
        return not self._config.standalone

    async def propose_membership(self, change: MembershipChange) -> object:
        return await self.replica.propose_membership(change)

    async def wait_for_status(
        self, holds: Callable[[Status], bool], timeout_seconds: float
    ) -> Status | None:
        return await self.replica.wait_for_status(holds, timeout_seconds)

    async def propose(self, command: bytes) -> object:
        return await self.replica.propose(command)

    async def read_barrier(self) -> None:
        await self.replica.read_barrier()

    async def local_read_point(self) -> None:
        await self.replica.local_read_point()

    def kv_get(self, key: str) -> Datum | None:
        return read_value(self._datums, key)

    # SnapshotSource
    @property
    def self_id(self) -> str:
        return self._config.id

    @property
    def cluster_id(self) -> str:
        return self._config.cluster_id

    def freeze_state(self) -> FrozenState:
        return self._digest.freeze()

    def now_ms(self) -> int:
        return SystemClock().now_ms()

    def metrics_text(self) -> bytes:
        self.metrics.observe_status(self.replica.status)
        self.metrics.disk_full.set(0 if self.replica.disk_full is None else 1)
        self.metrics.observe_machine(self._machine)
        self.metrics.observe_naming(self._naming_sizes, leader=self.replica.is_leader)
        self.metrics.observe_grpc(self.grpc.counts())
        state = self._machine.configs
        self.metrics.observe_configs(state.count(), state.history_count(), self.configs.hub.held)
        return self.metrics.render()

    def quota_refusal(self) -> str | None:
        return self._machine.quota_refusal()

    @property
    def cluster_version(self) -> int:
        """The peer protocol version the cluster records (`naraft.upgrade`)."""
        return self._machine.cluster_version

    # HealthView
    def readiness(self) -> str | None:
        membership = self.replica.status.membership
        if membership is not None and self._config.id not in membership.members:
            if membership.members:
                return "not a member: removed from the cluster (`naraft member list`)"
            return (
                f"waiting to be added to the cluster (`naraft member add {self._config.id}"
                " --server URL`)"
            )
        return readiness_reason(
            self.replica.status,
            silent_for=self.replica.silent_for,
            election_seconds=self._config.timers.election_seconds,
        )

    async def transfer_leadership(self, target: NodeId | None) -> str:
        return await self.replica.transfer_leadership(target)

    async def hand_over_then_stop(self, stop: asyncio.Event) -> None:
        """Once `stop` is set (SIGTERM), a leader hands leadership over before the node
        stops, so that a rolling restart costs no election timeout: writes arriving
        meanwhile wait for the new leader instead of failing. Then raises `NodeStoppingError`."""
        await stop.wait()
        membership = self.replica.status.membership
        if self.replica.is_leader and membership is not None and len(membership.voters) > 1:
            try:
                leader = await self.replica.transfer_leadership()
            except (NaraftError, RaftError) as error:
                logger.warning("stopping without a hand-over: %s", error)
            else:
                logger.info("handed leadership over to %s; stopping", leader)
        moved = await self.grpc.reset_all("the node is stopping")
        if moved:
            logger.info("asked %d gRPC clients to move to another node", moved)
        raise NodeStoppingError

    def extra_state(self) -> dict[str, object]:
        return {
            "clusterId": self._config.cluster_id,
            "authEnabled": self._config.auth_enabled,
            "datums": len(self._datums),
            "instances": self._naming_state.instance_count(),
            "diskFull": self.replica.disk_full,
            **self._machine.view(),
            **self._digest.view(),
        }

    # ServerDirectory
    def servers(self) -> list[ServerInfo]:
        status = self.replica.status
        infos = []
        for member in self._member_view:
            host, port = parse_address(member, field="peers")
            progress = status.peers.get(NodeId(member))
            reachable = member == status.id or (
                status.role is Role.LEADER and progress is not None and progress.recent_active
            )
            infos.append(
                ServerInfo(
                    ip=host,
                    port=port,
                    state="UP" if reachable or status.role is not Role.LEADER else "DOWN",
                    extend_info={"raftPort": port, "leader": status.leader},
                    is_self=member == status.id,
                )
            )
        return infos

    async def prune_config_history_forever(self) -> None:
        """On the leader, drop config history past the retention even when no config is
        written (each config write prunes too; this covers an idle cluster)."""
        service = self.configs.service
        while True:
            await asyncio.sleep(CONFIG_PRUNE_INTERVAL_SECONDS)
            if not self.replica.is_leader or not service.prune_due():
                continue
            try:
                await service.prune_history()
            except NaraftError as error:
                logger.info("config history not pruned yet: %s", error)
            except NotLeaderError:
                continue

    async def establish_quota_forever(self) -> None:
        """On the leader, make this node's quota the cluster's (replicated, so that every
        replica checks writes against the same quota at apply)."""
        while True:
            await asyncio.sleep(self._config.timers.tick_seconds)  # right after an election
            proposal = self._machine.quota_proposal()
            if proposal is None or not self.replica.is_leader:
                continue
            try:
                await self.replica.propose(proposal)
            except (NotLeaderError, UnavailableError) as error:
                logger.info("state quota not proposed yet: %s", error)
            except NaraftError as error:  # rejected at apply: never expected; must not end
                logger.warning("state quota proposal refused, next try in 60 s: %s", error)
                await asyncio.sleep(60)

    async def establish_auth_forever(self) -> None:
        """On the leader of a cluster without a signing key (its first start with auth on),
        propose the bootstrap: a fresh key and the first admin `nacos`, whose password is
        the configured one or a generated one (then written 0600 into the data directory and
        logged once, by the node whose bootstrap applied). Ends once the key is there."""
        auth = self._config.auth
        while signing_key(self._datums) is None:
            await asyncio.sleep(self._config.timers.tick_seconds)
            if not self.replica.is_leader or signing_key(self._datums) is not None:
                continue
            try:
                password, generated = _admin_password(auth.admin_password_file, auth.admin_password)
            except (OSError, ValueError) as error:
                logger.error("cannot use the admin password, next try in 60 s: %s", error)
                await asyncio.sleep(60)
                continue
            hashed = await asyncio.to_thread(hash_password, password)
            try:
                result = await self.replica.propose(encode_bootstrap(os.urandom(32).hex(), hashed))
            except (NotLeaderError, UnavailableError) as error:
                logger.info("auth bootstrap not proposed yet: %s", error)
                continue
            except NaraftError as error:
                logger.warning("auth bootstrap refused, next try in 60 s: %s", error)
                await asyncio.sleep(60)
                continue
            if isinstance(result, AuthApplied) and result.bootstrapped:
                logger.info("auth bootstrapped: a new token signing key, admin user %s", ADMIN_USER)
                if generated:
                    path = self._config.data_dir / ADMIN_PASSWORD_FILE
                    await asyncio.to_thread(write_secret_file, path, password)
                    logger.warning(
                        "generated the password of the admin user %s (shown once, kept in %s): %s",
                        ADMIN_USER,
                        path,
                        password,
                    )


def _admin_password(file: Path | None, given: str | None) -> tuple[str, bool]:
    """The first admin's password and whether it was generated; ValueError for one bcrypt
    cannot take (over 72 bytes)."""
    if file is not None:
        text = file.read_text().strip()
        if text:
            if len(text.encode()) > MAX_PASSWORD_BYTES:
                raise ValueError(f"{file}: longer than {MAX_PASSWORD_BYTES} bytes")
            return text, False
    if given:
        return given, False
    return generate_password(), True


async def run_node(
    config: NodeConfig, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run one node until cancelled, or until `stop` is set (then a leader hands over
    first); `config` is a validated tree (`NodeConfig.validate`). `ready` is set once the
    HTTP server serves. Raises `StartupError` for a taken port, an unusable or locked data
    directory, or certificate files that cannot be loaded."""
    loop = asyncio.get_running_loop()
    tls = _load_tls(config)
    with contextlib.closing(bind_listener(config.listen_host, config.listen_port)) as sock:
        lock_fd = lock_data_dir(config.data_dir)
        try:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="naraft-store")
            try:
                opened = await loop.run_in_executor(
                    executor, _open, config.data_dir / DB_FILE, config.id
                )
                try:
                    check_build_reads(config, opened)
                    config = settle_members(config, opened)
                    if config.join is not None and opened.persisted is None:
                        config = await _join(config, opened.recorded_cluster_id, tls.peers)
                    await loop.run_in_executor(
                        executor, _record_cluster_id, opened, config.cluster_id, config.data_dir
                    )
                    # not contextlib.suppress: on 3.11 it does not look into the task
                    # group's ExceptionGroup
                    try:  # noqa: SIM105
                        await _serve(_wire(config, opened, executor, tls), sock, ready, stop)
                    except* NodeStoppingError:
                        pass  # a clean stop, asked for through `stop`
                finally:
                    await loop.run_in_executor(executor, opened.store.close)
            finally:
                executor.shutdown(wait=True)
        finally:
            os.close(lock_fd)  # releases the lock


@dataclass(slots=True, kw_only=True)
class _Wired:
    """Every part of one node, built and subscribed, none running yet."""

    config: NodeConfig
    cluster_id: str
    node: Node
    client: PeerClient
    keeper: BeatKeeper
    owned: OwnedInstances
    pusher: UdpPusher
    watch: LeaderWatch
    digest: DigestService
    app: web.Application
    access_log: AccessLog | None
    tls: PeerTls  # how this node reaches the others
    listener_ssl: ssl.SSLContext | None
    members: MemberView


async def _join(config: NodeConfig, recorded: str | None, tls: PeerTls) -> NodeConfig:
    """Learn the cluster id and members from the member at `config.join` (retrying while
    it cannot be reached); StartupError when it answers that our secret is not the
    cluster's, or its cluster is not the one this data directory joined before."""
    assert config.join is not None
    assert config.secret is not None
    url = config.join.rstrip("/") + JOIN_PATH
    delay = 0.2
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls.ssl)) as session:
        while True:
            body, asked = join_protocol.make_request(config.secret, config.id, wall_clock_ms())
            try:
                async with session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=config.peer.timeout_seconds * 2),
                    server_hostname=tls.server_hostname,
                ) as answer:
                    text = await answer.content.read(join_protocol.MAX_JOIN_ANSWER_BYTES + 1)
                    if answer.status == 403:
                        raise StartupError(
                            f"{config.join} refused to tell its members: "
                            f"{text.decode(errors='replace')[:200]} (is --cluster-secret-file "
                            "the cluster's secret?)"
                        )
                    if answer.status != 200:
                        raise aiohttp.ClientError(f"status {answer.status}")
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                logger.warning("cannot reach %s to join yet (%s); trying again", config.join, error)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)
                continue
            try:
                learnt = join_protocol.check_answer(config.secret, asked, text)
            except join_protocol.JoinError as error:
                raise StartupError(f"{config.join}: {error}") from None
            break
    if recorded is not None and recorded != learnt.cluster_id:
        raise StartupError(
            f"{config.join} belongs to cluster {learnt.cluster_id}, but the data directory "
            f"{config.data_dir} joined cluster {recorded}: use an empty --data-dir"
        )
    logger.info(
        "joining cluster %s (members %s, leader %s): waiting for `naraft member add %s`",
        learnt.cluster_id,
        ",".join(learnt.members),
        learnt.leader,
        config.id,
    )
    return dataclasses.replace(config, peers=learnt.members, known_cluster_id=learnt.cluster_id)


def _core(config: NodeConfig, stored: StoredState) -> RaftCore:
    return RaftCore(
        config.raft_config,
        rng=random.Random(),
        hard_state=stored.hard_state,
        log=stored.entries,
        snapshot=stored.snapshot,
        applied=stored.applied_index,
        membership=membership_of(stored.datums),
        logger=logging.getLogger("naraft.raft"),
    )


@dataclass(frozen=True, slots=True)
class _Tls:
    listener: ssl.SSLContext | None  # None: plaintext
    peers: PeerTls


def _load_tls(config: NodeConfig) -> _Tls:
    """The listener's and the peer client's contexts, read once at start (`validate` has
    checked the files; one removed since is still one line, not a traceback)."""
    try:
        return _Tls(server_context(config.tls), PeerTls.of(config.tls))
    except (OSError, InvalidArgumentError) as error:  # ssl.SSLError is an OSError
        raise StartupError(f"cannot load the TLS files: {error}") from None


def _wire(
    config: NodeConfig, opened: _Opened, executor: ThreadPoolExecutor, loaded: _Tls
) -> _Wired:
    """Build every part in dependency order; parts built after the replica subscribe to
    its events (`NodeEvents`) rather than being handed to it."""
    node_id = NodeId(config.id)
    cluster_id = config.cluster_id  # signed into every peer request, checked on receipt
    datums = DatumTable(opened.state.datums)
    feed = ChangeFeed()
    naming_state = NamingState(datums, feed)
    config_state = ConfigState(datums)
    machine = NodeStateMachine(
        datums, naming_state, quota_bytes=config.quota_bytes, configs=config_state
    )
    metrics = NodeMetrics()
    events = NodeEvents()
    hub = ListenerHub(
        config_state,
        max_polls=config.configs.max_held_polls,
        max_keys=config.configs.max_poll_keys,
        on_notify=metrics.config_notify.observe,
    )
    # Every node wakes its own long polls when it applies a change (entries or installs).
    events.applied.append(lambda changes, _index: hub.on_changes(changes.changed_keys()))
    tls = loaded.peers
    core = _core(config, opened.state)
    # The one view of who the members are: the peer client and every verifier read it, and
    # it follows the core's configuration (a joining node starts from what the join told it).
    members = MemberView(core.membership.members or config.peers)
    client = PeerClient(
        node_id,
        {NodeId(p): tls.url(p) for p in members if p != config.id},
        config.secret,
        timeout_seconds=config.peer.timeout_seconds,
        metrics=metrics,
        on_peer_unreachable=events.on_peer_unreachable,
        cluster_id=cluster_id,
        max_batch_bytes=config.peer_batch_bytes,
        protocol=config.peer_protocol,
        version_floor=lambda: machine.cluster_version,
        tls=tls,
    )
    members.subscribe(lambda added, removed: _follow_members(client, tls, node_id, added, removed))
    if config.cluster_conf is not None:
        conf = config.cluster_conf
        members.subscribe(lambda _added, _removed: _rewrite_cluster_conf(conf, members))
    follow = _MembersFollower(members, core.membership, members.members)
    events.membership.append(follow.on_membership)
    replica = Replica(
        core,
        store=opened.store,
        store_executor=executor,
        peers=client,
        state_machine=machine,
        timings=config.replica_timings,
        observer=events,
        on_snapshot_needed=events.on_snapshot_needed,
        compaction=config.compaction,
        on_applied=events.on_applied,
        # Entries publish their own changes; a digest install or repair has none to apply.
        on_installed=lambda changes: _installed(changes, naming_state, machine),
        on_membership=events.on_membership,
    )
    clock = SystemClock()
    peer_members: Collection[str] = frozenset() if config.standalone else members
    digest = _digest(config, replica, naming_state, metrics, cluster_id, tls, peer_members)
    keeper = BeatKeeper(
        replica,
        naming_state,
        clock,
        config.health.policy,
        sweep_interval_seconds=config.health.sweep_interval_seconds,
        # Followers batch client beats for one tick and send them to the leader.
        batch_seconds=config.timers.tick_seconds,
    )
    # Beats the instances this node's client connections own, as their clients would.
    owned = OwnedInstances(clock)
    watch = LeaderWatch(replica, config.timers)
    audit = ElectionAudit(config.id, config.data_dir, clock)
    events.role_changes += [metrics.on_role_change, audit.on_role_change, keeper.on_role_change]
    events.persisted.append(metrics.on_persisted)
    events.committed.append(metrics.on_committed)
    events.applied.append(digest.on_applied)
    events.applied.append(follow.on_applied)
    events.snapshot_needed.append(digest.on_snapshot_needed)
    events.peer_unreachable.append(watch.on_peer_unreachable)
    configs = ConfigApi(
        service=ConfigService(config_state, replica, clock, config.configs, guard=machine),
        hub=hub,
        count=metrics.count_config_request,
    )
    # Nacos: a push target is a zombie after pushCacheMillis without a list request.
    targets = PushTargets(expire_after_ms=lambda: naming_state.switches().default_push_cache_ms)
    pusher = UdpPusher(
        naming_state, feed, targets, clock, config.push, bind_host=config.listen_host
    )
    gate = ClusterVersionGate(
        self_id=node_id,
        own=config.peer_protocol,
        recorded=lambda: machine.cluster_version,
        status=lambda: replica.status,
        peer_range=client.peer_range,
        propose=replica.propose,
    )
    naming = NamingService(naming_state, replica, clock, keeper, targets, guard=machine, gate=gate)
    auth = AuthService(
        enabled=config.auth_enabled,
        datums=datums,
        generation=lambda: machine.auth_generation,
        propose=replica.propose,
        clock=lambda: clock.now_ms() / 1000,
        token_ttl_seconds=config.auth.token_ttl_seconds,
        login_failures_per_minute=config.auth.login_failures_per_minute,
    )
    grpc_server, client_views = _grpc(
        config, replica, naming, owned, auth, clock, feed, configs.service, events
    )
    node = Node(
        config, replica=replica, machine=machine, datums=datums, naming_state=naming_state,
        metrics=metrics, digest=digest, configs=configs,
        naming_sizes=NamingSizes(naming_state, targets, pusher), owned=owned, grpc=grpc_server,
        member_view=members,
    )  # fmt: skip
    access_log = (
        AccessLog(json_lines=LogFormat(config.log.format) is LogFormat.JSON)
        if config.log.access_log
        else None
    )
    app = _app(
        config, node, naming, keeper, digest, metrics, cluster_id, auth, access_log, peer_members,
        on_peer_stream_end=watch.on_stream_end, clients=client_views,
    )  # fmt: skip
    app[FORWARD_TLS] = tls
    app[PUSH_STATS] = pusher
    return _Wired(
        config=config, cluster_id=cluster_id, node=node, client=client, keeper=keeper,
        owned=owned, pusher=pusher, watch=watch, digest=digest, app=app, access_log=access_log,
        tls=tls, listener_ssl=loaded.listener, members=members,
    )  # fmt: skip


def follow_peer_cap(gate: ConnectionGate, config: NodeConfig, members: MemberView) -> None:
    """Keep the gate's peer connection cap sized for the members, now and after each change
    (a cluster grown by `member add` needs room for the newcomers' connections)."""

    def resize(_added: frozenset[str], _removed: frozenset[str]) -> None:
        gate.set_max_peers(config.peer_connections_for(len(members)))

    resize(frozenset(), frozenset())
    members.subscribe(resize)


class _MembersFollower:
    """Keeps the member view at the members of the newest configuration in the log AND of
    the last committed one: a member being removed (a leader removing itself included) is
    still heard until its removal commits, so that the change can commit (Raft §4.2.2)."""

    def __init__(self, view: MemberView, newest: Membership, committed: frozenset[str]) -> None:
        self._view = view
        self._newest = newest
        self._committed = committed

    def on_membership(self, membership: Membership) -> None:
        """The core's newest configuration changed (appended, truncated or installed)."""
        self._newest = membership
        self._update()

    def on_applied(self, changes: DatumChanges, _index: Index) -> None:
        if MEMBERSHIP_KEY not in changes.puts:
            return
        committed = membership_of(changes.puts)
        if committed is not None:
            self._committed = frozenset(committed.members)
            self._update()

    def _update(self) -> None:
        newest = frozenset(self._newest.members)
        if newest:  # a joining node knows none until its first membership entry
            self._view.update(newest | self._committed)


def _follow_members(
    client: PeerClient,
    tls: PeerTls,
    self_id: NodeId,
    added: frozenset[str],
    removed: frozenset[str],
) -> None:
    if added or removed:
        logger.info(
            "members changed: added %s, removed %s",
            ",".join(sorted(added)) or "none",
            ",".join(sorted(removed)) or "none",
        )
    for member in sorted(added - {self_id}):
        client.add_peer(NodeId(member), tls.url(member))
    for member in sorted(removed - {self_id}):
        client.remove_peer(NodeId(member))


def _rewrite_cluster_conf(path: Path, members: MemberView) -> None:
    """Keep Nacos's cluster.conf, which this node was started from, naming the members."""
    try:
        write_cluster_conf(path, members.members)
    except OSError as error:
        logger.warning("cannot rewrite %s with the new members: %s", path, error)
    else:
        logger.info("rewrote %s: %s", path, ",".join(sorted(members.members)))


class _Applied:
    """The replica's applied index, as the gRPC server's `Progress`."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def applied_index(self) -> int:
        return self._replica.status.applied_index

    async def wait_applied(self, index: int) -> None:
        await self._replica.wait_applied(Index(index))


def _grpc(
    config: NodeConfig,
    replica: Replica,
    naming: NamingService,
    owned: OwnedInstances,
    auth: AuthService,
    clock: SystemClock,
    feed: ChangeFeed,
    configs: ConfigService,
    events: NodeEvents,
) -> tuple[GrpcServer, ClientViews]:
    """The 2.x gRPC server and its routes (started by `_serve`, beside the HTTP site), and
    the views of its connections that `/nacos/v2/ns/client…` serves."""
    connections = ConnectionTable(
        config.id, max_connections=config.grpc.max_connections, now_ms=clock.now_ms
    )
    server = GrpcServer(
        node_id=config.id,
        connections=connections,
        auth=auth,
        progress=_Applied(replica),
        push_timeout_seconds=config.grpc.push_timeout_seconds,
        new_leader=replica.wait_for_new_leader,
        new_leader_seconds=config.new_leader_seconds,
    )
    naming_routes = NamingRoutes(
        naming, owned, server, push_timeout_seconds=config.grpc.push_timeout_seconds
    )
    server.add_routes(naming_routes.routes())
    naming_routes.attach(connections, feed)
    config_routes = ConfigRoutes(
        configs, server, push_timeout_seconds=config.grpc.push_timeout_seconds
    )
    server.add_routes(config_routes.routes())
    config_routes.attach(connections)
    # Every node notifies its own listening connections of the changes it applies.
    events.applied.append(lambda changes, _index: config_routes.on_changes(changes.changed_keys()))
    views = ClientViews(connections, naming_routes, owned, naming.state, now_ms=clock.now_ms)
    return server, views


def _installed(changes: DatumChanges, naming: NamingState, machine: NodeStateMachine) -> None:
    naming.publish_replaced_changes(changes)
    machine.note_installed()  # the auth caches read again


def _digest(
    config: NodeConfig,
    replica: Replica,
    naming_state: NamingState,
    metrics: NodeMetrics,
    cluster_id: str,
    tls: PeerTls,
    members: Collection[str],
) -> DigestService:
    return DigestService(
        replica=replica,
        datums=naming_state.datums,
        self_id=NodeId(config.id),
        members=members if members else (config.id,),
        secret=config.secret,
        make_machine=lambda table: NodeStateMachine(table, NamingState(table)),
        beat_only=lambda: naming_state.switches().send_beat_only,
        settings=config.digest,
        registry=metrics.registry,
        cluster_id=cluster_id,
        tls=tls,
    )


def _app(
    config: NodeConfig,
    node: Node,
    naming: NamingService,
    keeper: BeatKeeper,
    digest: DigestService,
    metrics: NodeMetrics,
    cluster_id: str,
    auth: AuthService,
    access_log: AccessLog | None,
    peers: Collection[str],
    *,
    on_peer_stream_end: Callable[[NodeId], None],
    clients: ClientViews,
) -> web.Application:
    """`peers`: the member view (empty for a standalone node, which serves no peer route);
    `on_peer_stream_end`: told the sender when a peer's stream to this node ends; `clients`:
    the 2.x connections' views (`/nacos/v2/ns/client…`)."""
    node_id = NodeId(config.id)
    app = make_app(
        naming,
        auth=auth,
        identity_verifier=PeerVerifier(
            config.secret, cluster_id=cluster_id, self_id=config.id, members=peers
        ),
        extra_routes=[
            *admin_routes(),
            *snapshot_routes(),
            *member_routes(),
            *core_ops_routes(),
            *client_routes(clients),
        ],
        peer_routes=[
            *peer_routes(
                node.replica.deliver,
                config.secret,
                peers,
                metrics,
                self_id=node_id,
                cluster_id=cluster_id,
                max_body_bytes=config.peer.max_body_bytes,
                protocol=config.peer_protocol,
                version_floor=lambda: node.cluster_version,
                on_stream_end=on_peer_stream_end,
            ),
            *beat_routes(
                keeper, config.secret, self_id=node_id, members=peers, cluster_id=cluster_id
            ),
            *digest.routes(),
            *join_routes(
                None if config.standalone else config.secret, cluster_id, lambda: node.status
            ),
            *grpc_forward_routes(
                node.grpc.run_forwarded,
                config.secret,
                self_id=node_id,
                members=peers,
                cluster_id=cluster_id,
            ),
        ],
        servers=node,
        configs=node.configs,
        max_params=config.http.max_params,
        observe=observe_middleware(metrics, access_log=access_log, is_peer=is_peer_request),
        peer_certificate_required=config.tls.peer_tls,
        middlewares=[
            forward_middleware(
                config.id,
                config.raft.proposal_timeout_seconds + 1.0,
                metrics.forwarded.inc,
                wait_new_leader=node.replica.wait_for_new_leader,
                new_leader_seconds=config.new_leader_seconds,
                signer=PeerSigner(config.secret, cluster_id=cluster_id, self_id=config.id),
            )
        ],
    )
    app[NODE] = node
    app[SNAPSHOT] = node
    app[MEMBERS_NODE] = node
    app[HEALTH] = node
    return app


async def _serve(
    wired: _Wired, sock: socket.socket, ready: asyncio.Event | None, stop: asyncio.Event | None
) -> None:
    config, app, node = wired.config, wired.app, wired.node
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=wired.tls.ssl))
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
            max_peers=config.peer_connections_for(len(wired.members)),  # then follow_peer_cap
        )
        site = GuardedSite(
            runner,
            sock,
            limits,
            idle_timeout_seconds=http.idle_timeout_seconds,
            ssl_context=wired.listener_ssl,
        )
        follow_peer_cap(site.gate, config, wired.members)
        await site.start()
        await _start_grpc(wired, session)
        logger.info(
            "node %s listening on %s:%d (%s), members %s, cluster %s, data %s, tick %.3fs",
            config.id,
            config.listen_host,
            config.listen_port,
            _tls_summary(config),
            ",".join(config.peers),
            config.cluster_id,
            config.data_dir,
            config.timers.tick_seconds,
        )
        if not config.auth_enabled:
            if not is_loopback(config.listen_host):
                logger.warning(
                    "auth is OFF (--auth off) on %s: anyone who reaches this node can read "
                    "and change everything",
                    config.listen_host,
                )
        elif config.auth.mode is AuthMode.AUTO:
            logger.info(
                "auth is on: %s is not loopback only (--auth off to turn it off)",
                config.listen_host,
            )
        if ready is not None:
            ready.set()
        beat_sender = HttpBeatSender(
            session,
            config.secret,
            self_id=NodeId(config.id),
            cluster_id=wired.cluster_id,
            tls=wired.tls,
        )
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(node.replica.run(), name="replica")
            tasks.create_task(wired.client.run(), name="peer-client")
            tasks.create_task(wired.keeper.sweep_forever(), name="beat-sweeper")
            tasks.create_task(node.establish_quota_forever(), name="state-quota")
            if config.auth_enabled:
                tasks.create_task(node.establish_auth_forever(), name="auth-bootstrap")
            tasks.create_task(node.prune_config_history_forever(), name="config-history")
            tasks.create_task(wired.pusher.run(), name="udp-push")
            tasks.create_task(wired.keeper.forward_forever(beat_sender), name="beat-forwarder")
            tasks.create_task(
                wired.owned.run(wired.keeper, config.health.connection_beat_seconds),
                name="connection-beats",
            )
            tasks.create_task(wired.watch.run(), name="leader-watch")
            tasks.create_task(wired.digest.run(), name="digest")
            tasks.create_task(node.grpc.watch_idle_forever(), name="grpc-idle")
            if stop is not None:
                tasks.create_task(node.hand_over_then_stop(stop), name="stop")
    finally:
        with contextlib.suppress(Exception):
            await node.grpc.stop()
        node.configs.hub.close()  # held polls answered empty: their clients poll elsewhere
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await session.close()
        if wired.access_log is not None:
            wired.access_log.flush()


async def _start_grpc(wired: _Wired, session: aiohttp.ClientSession) -> None:
    """Listen for 2.x clients on the client port plus the offset, with the client
    certificate when clients speak TLS; StartupError if the port is taken."""
    config, server = wired.config, wired.node.grpc
    server.link = HttpLeaderLink(
        session,
        config.secret,
        self_id=config.id,
        timeout_seconds=config.raft.proposal_timeout_seconds + 1.0,
        cluster_id=wired.cluster_id,
        tls=wired.tls,
    )
    credentials = None
    tls = config.tls
    if tls.client_tls and tls.cert_file is not None and tls.key_file is not None:
        credentials = grpc.ssl_server_credentials(
            [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())]
        )
    port = config.listen_port + config.grpc.port_offset
    try:
        await server.start(
            config.listen_host,
            port,
            max_message_bytes=config.grpc.max_message_bytes,
            credentials=credentials,
        )
    except (OSError, RuntimeError) as error:
        raise StartupError(
            f"cannot listen for gRPC on {config.listen_host}:{port} "
            f"(client port + grpc-port-offset): {error}"
        ) from error


def _tls_summary(config: NodeConfig) -> str:
    tls = config.tls
    if not tls.enabled:
        return "plaintext"
    clients = "clients over TLS" if tls.client_tls else "clients see the peer certificate"
    return f"{clients}, peers over mutual TLS" if tls.peer_tls else clients
