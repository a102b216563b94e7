"""NodeConfig (frozen), the timer profiles, and `cluster.conf` parsing.

Node ids are addresses, `host:port`, as in Nacos: the same port serves the client API and
the peer endpoints under /nacos/v1/ns/raft/, so a leader hint is directly a URL.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from naraft.errors import InvalidArgumentError

DEFAULT_QUOTA_BYTES: Final = 2 << 30  # 2 GiB, as etcd's default backend quota


class Profile(enum.StrEnum):
    DEFAULT = "default"
    NACOS_LEGACY = "nacos-legacy"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timers:
    """Tick length, and every Raft timer in ticks (docs/seed.md#timers)."""

    tick_seconds: float
    heartbeat_ticks: int
    election_ticks: int  # the election timeout is drawn in [election, 2 * election) ticks


PROFILES: Final = {
    # tick 100 ms, a beat every tick, election timeout in [1 s, 2 s)
    Profile.DEFAULT: Timers(tick_seconds=0.1, heartbeat_ticks=1, election_ticks=10),
    # Nacos 1.x: 500 ms tick, 5 s beats, 15-20 s election timeout (the seed's constants;
    # naraft draws in [15 s, 30 s) since the range is one timeout wide)
    Profile.NACOS_LEGACY: Timers(tick_seconds=0.5, heartbeat_ticks=10, election_ticks=30),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthTimings:
    """Nacos 1.x client-beat timings: unhealthy after 15 s, removed after 30 s.

    How the leader applies them: docs/consistency.md#ephemeral-instances."""

    unhealthy_after_ms: int = 15_000
    remove_after_ms: int = 30_000
    sweep_interval_seconds: float = 1.0


DEFAULT_CLUSTER_TOKEN: Final = "naraft-cluster"
"""The token of a cluster started without `--cluster-token` (as etcd's `etcd-cluster`)."""
CLUSTER_TOKEN_ENV_VAR: Final = "NARAFT_CLUSTER_TOKEN"
MAX_CLUSTER_TOKEN_CHARS: Final = 256


def cluster_id_of(token: str, members: tuple[str, ...]) -> str:
    """The cluster id: 16 hex digits of SHA-256 over the token and the sorted member list.

    As etcd's initial-cluster-token: every member computes the same id from what it is
    started with, and a new token (`naraft cluster up` draws one for fresh data directories)
    gives a new incarnation even with the same members and secret."""
    material = "\n".join(("naraft-cluster-id/1", token, *sorted(members)))
    return hashlib.sha256(material.encode()).hexdigest()[:16]


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
class NodeConfig:
    id: str  # host:port, also the client and peer address
    peers: tuple[str, ...]  # every member, this node included
    data_dir: Path
    timers: Timers
    secret: bytes | None
    listen_host: str
    listen_port: int
    health: HealthTimings = HealthTimings()
    proposal_timeout_seconds: float = 5.0
    peer_timeout_seconds: float = 2.0
    pre_vote: bool = True
    check_quorum: bool = True
    # log compaction and digest sync (naraft.digest)
    compact_max_entries: int = 10_000  # compact once the log after the snapshot is longer
    compact_keep_entries: int = 2_000  # the tail kept for briefly-lagging followers
    digest_batch_keys: int = 50  # datums per digest-sync fetch request (the seed's 50)
    digest_parallel: int = 4  # digest-sync requests in flight
    checksum_interval_seconds: float = 5.0  # leader's state checksum reports; 0: off
    # peer traffic limits, apart from the client API's 1 MiB body limit
    peer_max_body_bytes: int = 64 * 1024 * 1024  # a Raft batch, compressed or not
    max_append_bytes: int = 1024 * 1024  # entries' bytes per AppendEntries (at least one)
    http: HttpLimits = HttpLimits()
    # bound on the replicated state (keys + values), checked at apply; 0: none. The leader
    # replicates its own, so every replica checks against the same one.
    quota_bytes: int = DEFAULT_QUOTA_BYTES
    cluster_token: str = DEFAULT_CLUSTER_TOKEN  # with the members, gives the cluster id

    @property
    def standalone(self) -> bool:
        return self.peers == (self.id,)

    @property
    def cluster_id(self) -> str:
        return cluster_id_of(self.cluster_token, self.peers)


def parse_address(text: str, *, field: str) -> tuple[str, int]:
    """`host:port` -> (host, port); raises InvalidArgumentError naming `field`."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
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


def check_members(node_id: str, peers: tuple[str, ...]) -> tuple[str, ...]:
    """The member list with duplicates refused and this node required in it."""
    for peer in peers:
        parse_address(peer, field="peers")
    if len(set(peers)) != len(peers):
        raise InvalidArgumentError("peers", f"lists a member twice: {', '.join(peers)}")
    if node_id not in peers:
        raise InvalidArgumentError("peers", f"must include this node {node_id}")
    return peers
