"""Local clusters of real `naraft server` processes: the one place that builds a server's
command line, starts, signals and stops it, and decides which node leads.

The shape follows etcd's e2e process cluster and hashicorp/raft's testing helpers:

- `NodeSpec` says how to run one node: its id (its peer address), data directory, members,
  listen address, secret file, cluster token, standalone mode, extra flags, environment (failpoints
  included) and a command prefix (`wrap`, e.g. `ip netns exec NS`).
- `server_command(spec)` turns a spec into the argument list; every launcher in the project
  (`naraft cluster up`, the end-to-end tests, the chaos campaign, the benchmarks) uses it,
  including the tests that build a deliberately bad command line.
- `NodeProcess` runs one spec: start, SIGKILL, SIGSTOP/SIGCONT, SIGTERM with a SIGKILL
  fallback, restart, the log file; sync methods, with `a`-prefixed async twins that wait in
  a thread.
- `ProcessCluster` makes N specs on free loopback ports with a 0600 secret file, starts and
  stops them together (a context manager, sync or async) and waits for readiness. With
  `tls=True` it also makes a throwaway CA and node certificates (`naraft.tls`) and runs
  every node with client TLS and peer mutual TLS; `ssl_context` is then what a client
  needs to reach them.

The leader rule (`agreed_leader`), the only one in the project: node L leads at term T when
L itself reports role "leader" at term T and a majority of the cluster's members (L
included) report leader L at term T. Two nodes cannot both pass in one moment: two majorities
share a member, and a member reports one leader at one term. A node that still believes in
an old leader, a paused or killed node, or a partitioned minority cannot make a leader pass
or fail the rule, so the rule is usable while faults are injected.

This module is for launching and observing; the server packages never import it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import aiohttp

from naraft.client import NodeStatus, fetch_status, try_status
from naraft.tls import (
    CA_FILE,
    CERT_FLAG,
    KEY_FLAG,
    PEER_CA_FLAG,
    PEER_CERT_FLAG,
    PEER_KEY_FLAG,
    TlsSettings,
    client_context,
)
from naraft.transport.auth import generate_secret, write_secret_file

if TYPE_CHECKING:
    from naraft.certs import Issued, NodeCertFiles

T = TypeVar("T")

LOG_FILE: Final = "node.log"
SECRET_FILE: Final = "cluster.secret"
ADMIN_PASSWORD_FILE: Final = "admin.password"  # beside the secret, for every node
TLS_DIR: Final = "tls"
FAILPOINTS_ENV_VAR: Final = "NARAFT_FAILPOINTS"
STOP_TIMEOUT_SECONDS: Final = 10.0
LOOPBACK: Final = "127.0.0.1"
# a node's Nacos 2.x gRPC port is its client port plus this: the server's default
# (naraft.config.GrpcSettings; a test holds the two equal), kept free beside each port
GRPC_PORT_OFFSET: Final = 1000


TRACEBACK_START: Final = "Traceback (most recent call last):"
_JSON_TRACEBACK: Final = '"exception":"' + TRACEBACK_START


def tracebacks_in(log_text: str) -> list[str]:
    """Each Python traceback in a node's log, with the log line before it.

    A traceback is a line that begins with Python's opening phrase (text logs) or a JSON
    line whose `exception` field does. The bare word is not enough: a client's request can
    carry it, and the access log writes the request target as received (a fuzzer that
    draws string literals from this project's source sends it now and then)."""
    lines = log_text.splitlines()
    found: list[str] = []
    for at, line in enumerate(lines):
        if _JSON_TRACEBACK in line:
            found.append(line)
        elif line.startswith(TRACEBACK_START):
            end = at + 1
            while end < len(lines) and not lines[end][:1].isdigit():
                end += 1  # the frames and the exception, up to the next log line
            found.append("\n".join(lines[max(0, at - 1) : end]))
    return found


class ClusterError(RuntimeError):
    """A cluster did not reach the state waited for (with what it last saw)."""


# ---------------------------------------------------------------------- specs


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """How to run one node. `node_id` is its peer address (host:port); `listen` the address
    it binds when that differs (e.g. behind a proxy). An empty `peers` with `standalone`
    false runs a one-member cluster that still needs a secret; most one-node users want
    `standalone=True`."""

    node_id: str
    data_dir: Path
    peers: tuple[str, ...] = ()
    listen: str | None = None
    secret_file: Path | None = None
    cluster_token: str | None = None
    auth: str | None = None  # on, off or auto (the node's default)
    admin_password_file: Path | None = None  # the first admin's, read at the first start
    standalone: bool = False
    join: str | None = None  # a running member's URL: start empty, wait for `member add`
    cluster_conf: Path | None = None  # members from Nacos's cluster.conf instead of `peers`
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    failpoints: str | None = None
    wrap: tuple[str, ...] = ()
    python: str = sys.executable
    log_path: Path | None = None
    tls: TlsSettings = TlsSettings()  # the node's certificate files; none: plaintext
    ca_file: Path | None = None  # what a client trusts for the certificate it presents

    @property
    def address(self) -> str:
        """Where clients reach it: the listen address, else the id."""
        return self.listen or self.node_id

    @property
    def url(self) -> str:
        return f"{'https' if self.tls.enabled else 'http'}://{self.address}"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client's TLS context for this node (None: plaintext)."""
        return client_context(self.ca_file) if self.tls.enabled else None

    @property
    def log_file(self) -> Path:
        return self.log_path if self.log_path is not None else self.data_dir / LOG_FILE


def server_command(spec: NodeSpec) -> list[str]:
    """The argument list that runs `spec`: the only place a `naraft server` command line is
    built. `extra_args` come last, so a caller may repeat a flag to override it."""
    args = [*spec.wrap, spec.python, "-m", "naraft", "server"]
    args += ["--id", spec.node_id, "--data-dir", str(spec.data_dir)]
    if spec.listen is not None:
        args += ["--listen", spec.listen]
    if spec.standalone:
        args.append("--standalone")
    if spec.join is not None:
        args += ["--join", spec.join]
    elif spec.cluster_conf is not None:
        args += ["--cluster-conf", str(spec.cluster_conf)]
    elif spec.peers:
        args += ["--peers", ",".join(spec.peers)]
    if spec.secret_file is not None:
        args += ["--cluster-secret-file", str(spec.secret_file)]
    if spec.cluster_token is not None:
        args += ["--cluster-token", spec.cluster_token]
    if spec.auth is not None:
        args += ["--auth", spec.auth]
    if spec.admin_password_file is not None:
        args += ["--admin-password-file", str(spec.admin_password_file)]
    tls = spec.tls
    for flag, path in (
        (CERT_FLAG, tls.cert_file),
        (KEY_FLAG, tls.key_file),
        (PEER_CERT_FLAG, tls.peer_cert_file),
        (PEER_KEY_FLAG, tls.peer_key_file),
        (PEER_CA_FLAG, tls.peer_trusted_ca_file),
    ):
        if path is not None:
            args += [flag, str(path)]
    return args + list(spec.extra_args)


def server_env(spec: NodeSpec) -> dict[str, str]:
    """This process's environment with the spec's additions (failpoints included)."""
    env = {**os.environ, **spec.env}
    if spec.failpoints is not None:
        env[FAILPOINTS_ENV_VAR] = spec.failpoints
    return env


def node_data_dir(root: Path, node_id: str) -> Path:
    """Where a cluster under `root` keeps the data of node `node_id` (host:port)."""
    return root / node_id.replace(":", "_")


EPHEMERAL_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PICKED_PORT: Final = 10_000


def _below_ephemeral(companion_offset: int) -> range | None:
    """The ports worth picking from: below the kernel's ephemeral range, which every
    outgoing connection draws its local port from (a port picked there can be taken by any
    client's connection before the server binds it: the race `free_ports` avoids). None
    when the range cannot be read or leaves too little room."""
    try:
        low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    top = min(low, 65_536) - companion_offset
    return range(_LOWEST_PICKED_PORT, top) if top - _LOWEST_PICKED_PORT >= 1_000 else None


def free_ports(
    count: int, host: str = LOOPBACK, *, companion_offset: int = GRPC_PORT_OFFSET
) -> list[int]:
    """`count` distinct free TCP ports on `host` (bound together briefly, then released).
    Each port's companion (port + `companion_offset`: a node's gRPC port) is free too, since
    any port picked may become a node's client port; 0 skips that. On Linux they are drawn
    at random from below the ephemeral range (`_below_ephemeral`), else the kernel picks."""
    candidates = _below_ephemeral(companion_offset)
    rng = random.Random()
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(100 * count + 100):
            if len(ports) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            try:
                s.bind((host, rng.choice(candidates) if candidates is not None else 0))
            except OSError:
                continue  # taken: draw another
            port = s.getsockname()[1]
            if companion_offset:
                if port + companion_offset > 65_535:
                    continue
                companion = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(companion)
                try:
                    companion.bind((host, port + companion_offset))
                except OSError:
                    continue
            ports.append(port)
        if len(ports) < count:
            raise OSError(f"found only {len(ports)} of {count} free ports on {host}")
        return ports
    finally:
        for s in sockets:
            s.close()


def taken_ports(host: str, ports: Sequence[int]) -> dict[int, str]:
    """The `ports` on `host` that a server could not listen on now, with why (bound the way
    `naraft server` binds, SO_REUSEADDR included, then released at once)."""
    taken: dict[int, str] = {}
    for port in ports:
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        except OSError as error:
            text = error.strerror or str(error)
            taken[port] = text[:1].lower() + text[1:]
    return taken


# ---------------------------------------------------------------------- processes


class NodeProcess:
    """One node's process, started from its spec (again after a stop or kill)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False  # SIGSTOPped: alive, but answers nothing until resumed
        self.killed = False  # SIGKILLed by us since the last start
        self.starts = 0
        self.ssl_context = spec.ssl_context  # built once: loading the CA costs

    @property
    def id(self) -> str:
        return self.spec.node_id

    @property
    def address(self) -> str:
        return self.spec.node_id

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def data_dir(self) -> Path:
        return self.spec.data_dir

    @property
    def log_path(self) -> Path:
        return self.spec.log_file

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def serving(self) -> bool:
        """Running and not paused: it may answer."""
        return self.running and not self.paused

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, *, env: Mapping[str, str] | None = None) -> None:
        """Start the process (a no-op while it runs); `env` adds to the spec's environment
        for this start only. Output goes to the log file, appended, created 0600."""
        if self.running:
            return
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as log:  # the child holds its own copy
            self.process = subprocess.Popen(
                server_command(self.spec),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**server_env(self.spec), **(env or {})},
                start_new_session=True,
            )
        self.paused = False
        self.killed = False
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL (kill -9): no cleanup, no flush; returns once the process is gone."""
        process = self.process
        if process is not None and process.poll() is None:
            self.killed = True
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process stays alive but answers nothing."""
        if self.running and not self.paused:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        if self.running and self.paused:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, *, hand_over: bool = True) -> None:
        """SIGCONT + SIGTERM (a clean stop; a leader hands leadership over first) or, without
        `hand_over`, SIGINT (a clean stop now); SIGKILL after `STOP_TIMEOUT_SECONDS`."""
        process = self.process
        self.paused = False
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM if hand_over else signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    stop = terminate

    def restart(self, *, env: Mapping[str, str] | None = None) -> None:
        """A clean stop, then a start with the same spec and data directory."""
        self.terminate()
        self.start(env=env)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def aterminate(self) -> None:
        await asyncio.to_thread(self.terminate)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tracebacks(self) -> list[str]:
        """The Python tracebacks its log holds (`tracebacks_in`)."""
        return tracebacks_in(self.log_text())

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    def status(self, timeout_seconds: float = 1.0) -> NodeStatus | None:
        """Its Raft status, or None when it is not serving or does not answer."""
        if not self.serving:
            return None
        return try_status(self.url, timeout_seconds=timeout_seconds, ssl_context=self.ssl_context)


# ---------------------------------------------------------------------- the leader rule


def agreed_leader(statuses: Mapping[str, NodeStatus | None], members: Sequence[str]) -> str | None:
    """The leader by the module's rule: the node L that reports role "leader" at term T
    while a majority of `members` (L included) report leader L at term T; else None.
    `statuses` maps node ids to what they answered (None: no answer)."""
    quorum = len(members) // 2 + 1
    for node_id, status in statuses.items():
        if status is None or not status.leads or node_id not in members:
            continue
        backers = sum(
            1
            for other, seen in statuses.items()
            if other in members
            and seen is not None
            and seen.leader == node_id
            and seen.term == status.term
        )
        if backers >= quorum:
            return node_id
    return None


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
    errors: tuple[type[Exception], ...] = (),
    timeout_error: type[ClusterError] = ClusterError,
) -> T:
    """Poll `condition` until it returns something other than None/False; `timeout_error`
    with the last value (or error: OSError, ValueError, KeyError and `errors` count as "not
    yet") on timeout."""
    not_yet: tuple[type[Exception], ...] = (OSError, ValueError, KeyError, *errors)
    deadline = time.monotonic() + timeout_seconds
    last: object = None
    while True:
        try:
            value = condition()
            if value is not None and value is not False:
                return value
            last = value
        except not_yet as error:
            last = error
        if time.monotonic() > deadline:
            raise timeout_error(
                f"timed out after {timeout_seconds}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval_seconds)


# ---------------------------------------------------------------------- clusters


class ProcessCluster:
    """N nodes on free loopback ports (or `ports`) under `root` (created 0700), one data
    directory each (0700), sharing one secret file (created 0600, or kept with its secret if
    `root` has one). A one-node cluster runs standalone unless `standalone=False`.

    `separate_listen` gives every node a second port to listen on while its id (its peer
    address) keeps the first: the chaos campaign puts a proxy on the id's port. `wrap`
    prefixes every command (e.g. a network namespace). `tls` runs every node with client
    TLS and peer mutual TLS, with a throwaway CA and certificates written 0600 under
    `root/tls` (kept there for restarts); `ca_file` and `ssl_context` are for clients. Use
    `with` or `async with`; leaving stops every process started.
    """

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        extra_args: Sequence[str] = (),
        host: str = LOOPBACK,
        ports: Sequence[int] | None = None,
        separate_listen: bool = False,
        standalone: bool | None = None,
        secret: str | None = None,
        cluster_token: str | None = None,
        auth: str | None = None,
        admin_password: str | None = None,
        env: Mapping[str, str] | None = None,
        failpoints: str | None = None,
        wrap: Sequence[str] = (),
        python: str = sys.executable,
        log_dir: Path | None = None,
        tls: bool = False,
    ) -> None:
        """`log_dir` puts the node logs there (named after the data directories) instead of
        inside each data directory. `auth` is passed as `--auth`; with it on, the first
        admin's password is `admin_password` or a generated one, kept 0600 in
        `root/admin.password` (`admin_password_file`) and given to every node."""
        self.root = root
        self.size = size
        self.secret = secret if secret is not None else generate_secret()
        wanted = size * (2 if separate_listen else 1)
        all_ports = (
            list(ports)
            if ports is not None
            else free_ports(wanted, host, companion_offset=GRPC_PORT_OFFSET)
        )
        self.ports = all_ports[:size]
        self.host = host
        self.tls = tls
        self.members = [f"{host}:{port}" for port in self.ports]
        listens: list[str | None] = [None] * size
        if separate_listen:
            listens = [f"{host}:{port}" for port in all_ports[size:]]
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secret_file = root / SECRET_FILE
        write_secret_file(self.secret_file, self.secret)  # kept if there: a restart reuses it
        self.secret = self.secret_file.read_text().strip()
        self.admin_password_file: Path | None = None
        if auth == "on" or admin_password is not None:
            self.admin_password_file = root / ADMIN_PASSWORD_FILE
            write_secret_file(self.admin_password_file, admin_password)
        one = standalone if standalone is not None else size == 1
        # the CA is kept while this launcher runs, to sign a certificate for a joining node
        # (none when the certificates were there already: a restarted cluster's CA key is gone)
        self._ca: Issued | None = None
        certs: dict[str, NodeCertFiles] = {}
        if tls:
            # naraft.certs loads cryptography: only a launcher asked for TLS pays for it
            from naraft.certs import new_ca, write_cluster_certs

            if not (root / TLS_DIR / CA_FILE).exists():
                self._ca = new_ca()
            certs = write_cluster_certs(root / TLS_DIR, self.members, ca=self._ca)
        self.ca_file: Path | None = root / TLS_DIR / CA_FILE if tls else None
        self.ssl_context: ssl.SSLContext | None = (
            None if self.ca_file is None else client_context(self.ca_file)
        )
        self.nodes: list[NodeProcess] = []
        for member, listen in zip(self.members, listens, strict=True):
            data_dir = node_data_dir(root, member)
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            spec = NodeSpec(
                node_id=member,
                data_dir=data_dir,
                listen=listen,
                standalone=one,
                peers=() if one else tuple(self.members),
                secret_file=None if one else self.secret_file,
                cluster_token=cluster_token,
                auth=auth,
                admin_password_file=self.admin_password_file,
                extra_args=tuple(extra_args),
                env=dict(env or {}),
                failpoints=failpoints,
                wrap=tuple(wrap),
                python=python,
                log_path=None if log_dir is None else log_dir / f"{data_dir.name}.log",
                tls=certs[member].settings if tls else TlsSettings(),
                ca_file=self.ca_file,
            )
            self.nodes.append(NodeProcess(spec))

    def add_joining_node(
        self, join_url: str | None = None, *, separate_listen: bool = False
    ) -> NodeProcess:
        """A new node (not started) on a free port that joins this cluster through
        `join_url` (default: the first node's URL) with `naraft server --join`, as every
        other node is run; it counts as a member for the leader rule from now on.
        `separate_listen` as in the constructor: it listens on a second port."""
        if self.tls and self._ca is None:
            raise ClusterError(
                "a joining node needs a certificate from the cluster's CA, and this launcher "
                "did not make it (the certificates were there already)"
            )
        ports = free_ports(
            2 if separate_listen else 1, self.host, companion_offset=GRPC_PORT_OFFSET
        )
        port = ports[0]
        member = f"{self.host}:{port}"
        template = self.nodes[0].spec
        data_dir = node_data_dir(self.root, member)
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_path = None
        if template.log_path is not None:
            log_path = template.log_path.with_name(f"{data_dir.name}.log")
        spec = replace(
            template,
            node_id=member,
            data_dir=data_dir,
            listen=f"{self.host}:{ports[1]}" if separate_listen else None,
            standalone=False,
            peers=(),
            join=join_url if join_url is not None else self.nodes[0].url,
            secret_file=self.secret_file,
            log_path=log_path,
        )
        if self._ca is not None:
            from naraft.certs import write_node_cert

            certs = write_node_cert(self._ca, self.root / TLS_DIR, member)
            spec = replace(spec, tls=certs.settings)
        node = NodeProcess(spec)
        self.nodes.append(node)
        self.members.append(member)
        self.ports.append(port)
        return node

    def forget_member(self, node_id: str) -> None:
        """`node_id` was removed from the cluster: the leader rule no longer counts it."""
        self.members.remove(node_id)

    @property
    def admin_password(self) -> str | None:
        """The first admin's password (user `nacos`), when this launcher chose it."""
        if self.admin_password_file is None:
            return None
        return self.admin_password_file.read_text().strip()

    # -- lifecycle

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        """Stop every node cleanly, without hand-overs (all of them are going)."""
        for node in self.nodes:
            node.terminate(hand_over=False)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> ProcessCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ProcessCluster:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # -- lookups

    def node(self, node_id: str) -> NodeProcess:
        return next(node for node in self.nodes if node.id == node_id)

    def serving_nodes(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.serving]

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"--- {n.id}\n{n.log_tail(lines)}" for n in self.nodes)

    # -- status and the leader

    def statuses(self, among: Sequence[NodeProcess] | None = None) -> dict[str, NodeStatus | None]:
        return {node.id: node.status() for node in (self.nodes if among is None else among)}

    async def astatuses(
        self, session: aiohttp.ClientSession, among: Sequence[NodeProcess] | None = None
    ) -> dict[str, NodeStatus | None]:
        asked = self.nodes if among is None else among
        found = await asyncio.gather(
            *(fetch_status(session, n.url) if n.serving else _none() for n in asked)
        )
        return {node.id: status for node, status in zip(asked, found, strict=True)}

    def find_leader(
        self, among: Sequence[NodeProcess] | None = None, *, settled: bool = False
    ) -> NodeProcess | None:
        """The leader now by `agreed_leader` (asking `among`, default every node), or None.
        `settled` also asks that every node asked that runs unpaused answer and report that
        leader at its term (a restarted node has caught up with the election): the same
        leader, found only once the whole cluster has seen it."""
        asked = self.nodes if among is None else among
        statuses = self.statuses(asked)
        leader = agreed_leader(statuses, self.members)
        if leader is None:
            return None
        if settled:
            leading = statuses[leader]
            assert leading is not None  # agreed_leader names only a node that answered
            term = leading.term
            for node in asked:
                seen = statuses[node.id]
                if node.serving and (seen is None or (seen.leader, seen.term) != (leader, term)):
                    return None
        return self.node(leader)

    async def afind_leader(
        self, session: aiohttp.ClientSession, among: Sequence[NodeProcess] | None = None
    ) -> NodeProcess | None:
        leader = agreed_leader(await self.astatuses(session, among), self.members)
        return None if leader is None else self.node(leader)

    def leader(
        self,
        *,
        timeout_seconds: float = 15.0,
        exclude: str | None = None,
        among: Sequence[NodeProcess] | None = None,
        settled: bool = False,
    ) -> NodeProcess:
        """Wait for the leader (`agreed_leader`), other than `exclude` if given; `settled` as
        in `find_leader`."""

        def found() -> NodeProcess | None:
            leader = self.find_leader(among, settled=settled)
            return None if leader is None or leader.id == exclude else leader

        try:
            return wait_for(found, timeout_seconds=timeout_seconds, what="an agreed leader")
        except ClusterError as error:
            raise ClusterError(f"{error}\n{self.logs()}") from None


async def _none() -> None:
    return None
