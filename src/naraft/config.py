"""The node's configuration tree, the timer profiles, and `cluster.conf` parsing.

`NodeConfig` is made of the consumers' own frozen settings (`PushTimings`,
`ConfigSettings`, `SyncSettings` inside `DigestSettings`, `CompactionPolicy`, and the groups
defined here): each default is written once, in the dataclass that uses it. `validate()`
checks what spans groups (the core's rules on its timers, through `RaftConfig`; a peer batch
against the peer body limit, a config's content against it, the member list, the secret);
derived values are properties. `naraft.config_sources` fills the tree
from flags, `NARAFT_*` environment variables and a TOML file.

Node ids are addresses, `host:port`, as in Nacos: the same port serves the client API and
the peer endpoints under /nacos/v1/ns/raft/, so a leader hint is directly a URL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from naraft.configs.settings import ConfigSettings
from naraft.digest.wiring import DigestSettings
from naraft.errors import InvalidArgumentError
from naraft.naming.health import BeatPolicy
from naraft.naming.push import PushTimings
from naraft.raft import NodeId, RaftConfig
from naraft.replica import CompactionPolicy, ReplicaTimings
from naraft.tls import TlsSettings
from naraft.transport import DEFAULT_MAX_BATCH_BYTES
from naraft.transport.auth import SECRET_ENV_VAR
from naraft.transport.version import CURRENT, ProtocolRange, parse_range

DEFAULT_QUOTA_BYTES: Final = 2 << 30  # 2 GiB, as etcd's default backend quota
SECRET_REQUIRED: Final = "a clustered node needs a cluster secret"


def _default(owner: type, name: str) -> Any:
    """The default `owner` (a dataclass) declares for `name`: written there, read here."""
    return {f.name: f.default for f in dataclasses.fields(owner)}[name]


class Profile(enum.StrEnum):
    DEFAULT = "default"
    NACOS_LEGACY = "nacos-legacy"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timers:
    """Tick length, and every Raft timer in ticks (docs/seed.md#timers)."""

    tick_seconds: float
    heartbeat_ticks: int
    election_ticks: int  # the election timeout is drawn in [election, 2 * election) ticks

    @property
    def beat_seconds(self) -> float:
        return self.tick_seconds * self.heartbeat_ticks

    @property
    def election_seconds(self) -> float:
        return self.tick_seconds * self.election_ticks


PROFILES: Final = {
    # tick 100 ms, a beat every tick, election timeout in [1 s, 2 s)
    Profile.DEFAULT: Timers(tick_seconds=0.1, heartbeat_ticks=1, election_ticks=10),
    # Nacos 1.x: 500 ms tick, 5 s beats, 15-20 s election timeout (the seed's constants;
    # naraft draws in [15 s, 30 s) since the range is one timeout wide)
    Profile.NACOS_LEGACY: Timers(tick_seconds=0.5, heartbeat_ticks=10, election_ticks=30),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthTimings:
    """Client-beat timings (Nacos 1.x: unhealthy after 15 s, removed after 30 s), how
    often the leader sweeps for silent instances, and how often a node beats the
    instances its live client connections own (`naming.owned`, Nacos 2.x).

    How the leader applies them: docs/consistency.md#ephemeral-instances."""

    policy: BeatPolicy = BeatPolicy()
    sweep_interval_seconds: float = 1.0
    connection_beat_interval_seconds: float = 5.0  # as a Nacos client's beat

    @property
    def connection_beat_seconds(self) -> float:
        """The connection beat interval in effect: as set, but at most a third of the
        silence that makes an instance unhealthy (a 1.x client's 5 s against 15 s), so a
        shortened `unhealthy-after-ms` never makes live connections' instances flap."""
        return min(self.connection_beat_interval_seconds, self.policy.unhealthy_after_ms / 3000)


DEFAULT_CLUSTER_TOKEN: Final = "naraft-cluster"
"""The token of a cluster started without `--cluster-token` (as etcd's `etcd-cluster`)."""
MAX_CLUSTER_TOKEN_CHARS: Final = 256


def cluster_id_of(token: str, members: tuple[str, ...]) -> str:
    """The cluster id: 16 hex digits of SHA-256 over the token and the sorted member list.

    As etcd's initial-cluster-token: every member computes the same id from what it is
    started with, and a new token (`naraft cluster up` draws one for fresh data directories)
    gives a new incarnation even with the same members and secret."""
    material = "\n".join(("naraft-cluster-id/1", token, *sorted(members)))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


DATA_DIR_TOKEN_FILE: Final = "cluster.token"
"""A data directory's own cluster token, written by `naraft snapshot restore`: a node started
on that directory without `--cluster-token` takes it, so the restored node (or every member
restored from one file with the same members) computes the new cluster's id."""


def check_cluster_token(token: str) -> str:
    """The token, refused if empty, too long or not printable ASCII (it travels in logs)."""
    if not token or len(token) > MAX_CLUSTER_TOKEN_CHARS:
        raise InvalidArgumentError(
            "--cluster-token", f"must be 1 to {MAX_CLUSTER_TOKEN_CHARS} characters"
        )
    if not all(33 <= ord(char) <= 126 for char in token):
        raise InvalidArgumentError("--cluster-token", "must be printable ASCII without spaces")
    return token


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """The HTTP server's limits on what one client may hold (`naraft.api.edge`)."""

    header_timeout_seconds: float = 5.0  # a request's headers, from its first byte
    body_timeout_seconds: float = 15.0  # a request's body, once its headers are in
    idle_timeout_seconds: float = 60.0  # a keep-alive connection between requests
    max_connections: int = 1000  # client connections; peers are counted apart
    max_params: int = 256  # query plus urlencoded form parameters of one request
    peer_connections_per_member: int = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcSettings:
    """The Nacos 2.x gRPC endpoint (`naraft.grpc`): the HTTP port plus `port_offset`."""

    port_offset: int = 1000  # 9848 beside 8848, as the 2.x clients compute it
    max_connections: int = 20_000  # more are told to reset to another node
    max_message_bytes: int = 10 * 1024 * 1024  # Nacos's own inbound limit
    push_timeout_seconds: float = 3.0  # one push's answer, before a retry


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerLimits:
    """Peer traffic, judged apart from the client API's limits (1 MiB bodies)."""

    timeout_seconds: float = 2.0  # one peer request's answer; a stream's ping interval
    max_body_bytes: int = 64 * 1024 * 1024  # a Raft batch, compressed or not
    max_append_bytes: int = _default(RaftConfig, "max_append_bytes")  # at least one entry
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES  # one send, below the receivers' limit
    # the peer protocol versions this node speaks, LOW..HIGH (transport.version); this
    # build's own unless overridden (to stand in for another build in tests)
    protocol: str = str(CURRENT)


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftSettings:
    """The Raft extensions naraft turns on, and how long a client write may wait."""

    pre_vote: bool = _default(RaftConfig, "pre_vote")
    check_quorum: bool = _default(RaftConfig, "check_quorum")
    proposal_timeout_seconds: float = _default(ReplicaTimings, "proposal_timeout_seconds")


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"  # one JSON object a line, for log shippers


LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """What the node logs and how: its level, its line format, and whether each HTTP
    request is logged (the access log, on by default as in Nacos)."""

    level: str = "INFO"
    format: LogFormat = LogFormat.TEXT
    access_log: bool = True


class AuthMode(enum.StrEnum):
    AUTO = "auto"  # on unless the node listens on loopback only
    ON = "on"
    OFF = "off"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    """Logins, tokens and permissions (`naraft.api.auth`; docs/auth.md)."""

    mode: AuthMode = AuthMode.AUTO
    token_ttl_seconds: int = 18000  # Nacos's default tokenTtl
    # the first admin's password, read at the cluster's first start: the file, else the
    # NARAFT_ADMIN_PASSWORD variable, else one generated and written into the data directory
    admin_password_file: Path | None = None
    admin_password: str | None = field(default=None, repr=False)
    login_failures_per_minute: int = 10  # per source address; more are answered 403 at once


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """One node's whole configuration. Build it, call `validate()`, pass it to `run_node`."""

    id: str  # host:port, also the client and peer address
    peers: tuple[str, ...]  # every member, this node included
    data_dir: Path
    secret: bytes | None
    listen_host: str
    listen_port: int
    timers: Timers = PROFILES[Profile.DEFAULT]
    raft: RaftSettings = RaftSettings()
    health: HealthTimings = HealthTimings()
    push: PushTimings = PushTimings()
    http: HttpLimits = HttpLimits()
    grpc: GrpcSettings = GrpcSettings()
    peer: PeerLimits = PeerLimits()
    digest: DigestSettings = DigestSettings()
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)
    configs: ConfigSettings = ConfigSettings()
    # bound on the replicated state (keys + values), checked at apply; 0: none. The leader
    # replicates its own, so every replica checks against the same one.
    quota_bytes: int = DEFAULT_QUOTA_BYTES
    cluster_token: str = DEFAULT_CLUSTER_TOKEN  # with the members, gives the cluster id
    log: LogSettings = LogSettings()
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()  # none: plaintext HTTP (docs/tls.md)
    # where the members came from when it was Nacos's cluster.conf: rewritten on changes
    cluster_conf: Path | None = None
    # a new node joining a running cluster through this member's URL (`naraft member add`
    # makes it a member); `peers` is then empty until it learns them
    join: str | None = None
    # the cluster id the data directory records (or the join answer gave): it stays the
    # cluster's identity when members change. Set by the node at start, never a setting.
    known_cluster_id: str | None = None

    def validate(self) -> NodeConfig:
        """`self` when every rule across groups holds; raises InvalidArgumentError naming
        the setting otherwise (the one place each rule is checked)."""
        parse_address(self.id, field="id")
        if self.join is None:
            check_members(self.id, self.peers)
        else:
            check_join_url(self.join)
            for peer in self.peers:
                parse_address(peer, field="peers")
        check_cluster_token(self.cluster_token)
        try:  # the core's own rules (election above heartbeat) are checked where they live
            _ = self.raft_config
        except ValueError as error:
            raise InvalidArgumentError("timers", str(error)) from None
        if self.peer.max_append_bytes * 2 > self.peer.max_body_bytes:
            # Commands travel in base64 (4/3) inside JSON: keep twice the room.
            raise InvalidArgumentError(
                "max-append-kib", "must be at most half of peer-max-body-mib"
            )
        try:
            parse_range(self.peer.protocol)
        except ValueError as error:
            raise InvalidArgumentError("peer-protocol", str(error)) from None
        if 3 * self.configs.max_content_bytes > self.peer.max_body_bytes:
            # A publish entry holds the content and (in its history record) the old one,
            # in base64 inside JSON on the wire.
            raise InvalidArgumentError(
                "config-max-content-bytes", "must be at most a third of peer-max-body-mib"
            )
        if self.secret is None and not self.standalone:
            raise InvalidArgumentError(
                "cluster-secret-file",
                "is required",
                message=f"{SECRET_REQUIRED}: --cluster-secret-file or {SECRET_ENV_VAR}",
            )
        self.tls.check(clustered=not self.standalone)  # reads the files: a bad one fails here
        return self

    @property
    def raft_config(self) -> RaftConfig:
        timers = self.timers
        return RaftConfig(
            id=NodeId(self.id),
            # a joining node learns its configuration from the leader's log, never from here
            voters=() if self.join is not None else tuple(NodeId(p) for p in self.peers),
            joining=self.join is not None,
            election_ticks=timers.election_ticks,
            heartbeat_ticks=timers.heartbeat_ticks,
            pre_vote=self.raft.pre_vote,
            check_quorum=self.raft.check_quorum,
            max_append_bytes=self.peer.max_append_bytes,
        )

    @property
    def peer_protocol(self) -> ProtocolRange:
        return parse_range(self.peer.protocol)

    @property
    def auth_enabled(self) -> bool:
        """Secure by default: auth is on unless the node listens on loopback only, or the
        operator said otherwise (`--auth on|off`)."""
        mode = self.auth.mode
        if mode is AuthMode.OFF:
            return False
        return mode is AuthMode.ON or not is_loopback(self.listen_host)

    @property
    def standalone(self) -> bool:
        return self.join is None and self.peers == (self.id,)

    @property
    def cluster_id(self) -> str:
        """Signed into every peer request and kept in the data directory: the one the data
        directory records once known (members change, the cluster stays), else the one the
        token and the starting members give."""
        if self.known_cluster_id is not None:
            return self.known_cluster_id
        return cluster_id_of(self.cluster_token, self.peers)

    @property
    def new_leader_seconds(self) -> float:
        """How long a write with no leader waits for one: a new leader comes within one to
        two election timeouts of the old one's death."""
        return max(2.0, 3 * self.timers.election_seconds)

    @property
    def replica_timings(self) -> ReplicaTimings:
        return ReplicaTimings(
            tick_seconds=self.timers.tick_seconds,
            proposal_timeout_seconds=self.raft.proposal_timeout_seconds,
            leader_wait_seconds=self.new_leader_seconds,
        )

    @property
    def peer_batch_bytes(self) -> int:
        """A sender's batch, below the receivers' body limit (members share settings)."""
        return min(self.peer.max_batch_bytes, self.peer.max_body_bytes // 2)

    def peer_connections_for(self, members: int) -> int:
        # members may come (a joining node starts knowing none): room for a few more
        return self.http.peer_connections_per_member * (members + 2)


def parse_address(text: str, *, field: str) -> tuple[str, int]:
    """`host:port` -> (host, port); raises InvalidArgumentError naming `field`."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise InvalidArgumentError(field, f"must be host:port, not {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InvalidArgumentError(field, f"port must be 1..65535, not {port}")
    return host, port


def read_cluster_conf(path: Path) -> tuple[str, ...]:
    """Nacos's cluster.conf: one `host:port` a line; `#` comments and blank lines ignored.
    A line without a port means 8848, as in Nacos."""
    members: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" not in line:
            line = f"{line}:8848"
        parse_address(line, field=f"{path}:{number}")
        members.append(line)
    if not members:
        raise InvalidArgumentError(str(path), "lists no member")
    return tuple(members)


def check_join_url(url: str) -> str:
    """The URL of a running member to join through: http(s)://host:port."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise InvalidArgumentError("join", f"must be http(s)://host:port, not {url!r}")
    parse_address(rest.rstrip("/"), field="join")
    return url


def write_cluster_conf(path: Path, members: Iterable[str]) -> None:
    """Rewrite Nacos's cluster.conf with `members`, one a line, atomically (a reader sees
    the old file or the new one, never half of it)."""
    text = "# written by naraft when the cluster's members changed\n" + "".join(
        f"{member}\n" for member in sorted(members)
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def check_members(node_id: str, peers: tuple[str, ...]) -> tuple[str, ...]:
    """The member list with duplicates refused and this node required in it."""
    for peer in peers:
        parse_address(peer, field="peers")
    if len(set(peers)) != len(peers):
        raise InvalidArgumentError("peers", f"lists a member twice: {', '.join(peers)}")
    if node_id not in peers:
        raise InvalidArgumentError("peers", f"must include this node {node_id}")
    return peers
