"""Three-node clusters on 127.0.0.1 that the benchmark starts, measures and stops:
`NaraftCluster` (real `python -m naraft server` processes) and `EtcdCluster` (etcd 3.4
from Debian's etcd-server, every setting at its default).

Either runs with TLS when given `tls_dir`: client TLS and mutual TLS between its members,
with a throwaway CA and one certificate per node from `naraft.certs.write_cluster_certs`
(etcd: `--cert-file`/`--key-file` for clients, `--peer-*` with `--peer-client-cert-auth`);
`ca_file` is then what clients verify the nodes with.

Both choose free loopback ports, keep their data directories and logs under one base
directory, remember the PID of every process they start, and signal only those PIDs.
Control-plane queries use the stdlib HTTP client with short timeouts; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import procstat

from naraft.certs import NodeCertFiles, write_cluster_certs
from naraft.client import NodeStatus as RaftStatus
from naraft.client import try_status
from naraft.cluster import NodeSpec, agreed_leader, free_ports, server_command, write_secret_file
from naraft.tls import TlsSettings, client_context

NODE_NAMES: Final = ("n1", "n2", "n3")
QUERY_TIMEOUT_SECONDS: Final = 1.0
CATCH_UP_SLACK_ENTRIES: Final = 50  # a node this close to the leader's commit is caught up


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's view: who leads (node name or None), its term, its applied index."""

    leader: str | None
    term: int
    applied_index: int
    commit_index: int


def _http_json(
    url: str, body: bytes | None = None, context: ssl.SSLContext | None = None
) -> object:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_SECONDS, context=context) as answer:
        return json.loads(answer.read())


class Cluster:
    """What both clusters share: processes by node name, signals, bounded waits."""

    name = "cluster"

    def __init__(self, base_dir: Path, *, tls: bool = False) -> None:
        if tls:
            self.name = f"{self.name}-tls"
        self.base_dir = base_dir / self.name
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._paused: set[str] = set()
        self.tls = tls
        self.ca_file: Path | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self._certs: dict[str, NodeCertFiles] = {}

    def _make_certs(self, node_ids: dict[str, str]) -> None:
        """A throwaway CA and a certificate per node (`node_ids`: name -> host:port)."""
        if not self.tls:
            return
        by_id = write_cluster_certs(self.base_dir / "tls", list(node_ids.values()))
        self._certs = {name: by_id[node_id] for name, node_id in node_ids.items()}
        self.ca_file = next(iter(self._certs.values())).ca_file
        self.ssl_context = client_context(self.ca_file)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def target(self) -> str:
        """What load.py calls this system (`naraft` or `etcd`)."""
        return self.name.removesuffix("-tls")

    # --- to be provided by each cluster
    @property
    def endpoints(self) -> list[str]:
        raise NotImplementedError

    def endpoint(self, node: str) -> str:
        raise NotImplementedError

    def _command(self, node: str, *, first_start: bool) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def node_status(self, node: str) -> NodeStatus | None:
        raise NotImplementedError

    # --- shared
    def log_path(self, node: str) -> Path:
        return self.base_dir / f"{node}.log"

    def start(self, timeout_seconds: float = 60.0) -> str:
        for node in NODE_NAMES:
            self._spawn(node, first_start=True)
        return self.wait_healthy(timeout_seconds)

    def start_node(self, node: str) -> None:
        """Restart `node` on its existing data directory (after a kill)."""
        self._spawn(node, first_start=False)

    def _spawn(self, node: str, *, first_start: bool) -> None:
        old = self._processes.get(node)
        if old is not None and old.poll() is None:
            raise ClusterError(f"{self.name} {node} is still running (pid {old.pid})")
        with self.log_path(node).open("ab") as log:
            self._processes[node] = subprocess.Popen(
                self._command(node, first_start=first_start),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                start_new_session=True,
            )

    def pid(self, node: str) -> int:
        return self._processes[node].pid

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes.values() if p.poll() is None]

    def kill(self, node: str) -> None:
        """kill -9 of `node`, then reap it."""
        process = self._processes[node]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self._paused.discard(node)

    def pause(self, node: str) -> None:
        self._processes[node].send_signal(signal.SIGSTOP)
        self._paused.add(node)

    def resume(self, node: str) -> None:
        self._processes[node].send_signal(signal.SIGCONT)
        self._paused.discard(node)

    def statuses(self) -> dict[str, NodeStatus | None]:
        return {
            node: self.node_status(node) if node not in self._paused else None
            for node in NODE_NAMES
        }

    def leader(self) -> str | None:
        """The leader a majority of the running nodes agree on, else None (etcd's view; naraft
        uses `naraft.cluster.agreed_leader`)."""
        votes: dict[str, int] = {}
        for status in self.statuses().values():
            if status is not None and status.leader is not None:
                votes[status.leader] = votes.get(status.leader, 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= 2 else None

    def max_term(self) -> int:
        return max((s.term for s in self.statuses().values() if s is not None), default=0)

    def wait_healthy(self, timeout_seconds: float = 60.0) -> str:
        """Wait until all three nodes answer, agree on one leader and are caught up to
        within CATCH_UP_SLACK_ENTRIES of its commit index; returns the leader."""
        deadline = time.monotonic() + timeout_seconds
        last: object = None
        while time.monotonic() < deadline:
            for node, process in self._processes.items():
                if process.poll() is not None:
                    raise ClusterError(
                        f"{self.name} {node} exited with {process.returncode}; "
                        f"see {self.log_path(node)}"
                    )
            statuses = self.statuses()
            last = statuses
            leaders = {s.leader for s in statuses.values() if s is not None}
            if None not in statuses.values() and len(leaders) == 1 and None not in leaders:
                leader = leaders.pop()
                assert leader is not None
                leader_status = statuses[leader]
                if leader_status is not None and all(
                    s is not None
                    and s.applied_index + CATCH_UP_SLACK_ENTRIES >= leader_status.commit_index
                    for s in statuses.values()
                ):
                    return leader
            time.sleep(0.1)
        raise ClusterError(f"{self.name} not healthy after {timeout_seconds} s; last: {last}")

    def rss_mib(self) -> dict[str, float | None]:
        return {node: procstat.rss_mib(p.pid) for node, p in self._processes.items()}

    def stop(self) -> None:
        """SIGTERM every process this object started (SIGCONT first if paused), SIGKILL
        whatever is still alive after 10 s."""
        for node, process in self._processes.items():
            if process.poll() is None:
                if node in self._paused:
                    process.send_signal(signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        self._paused.clear()
        deadline = time.monotonic() + 10
        for process in self._processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class NaraftCluster(Cluster):
    """Three `python -m naraft server` processes with a shared secret file."""

    name = "naraft"

    def __init__(self, base_dir: Path, *, python: str = sys.executable,
                 extra_flags: tuple[str, ...] = (), tls: bool = False,
                 source: Path | None = None) -> None:  # fmt: skip
        """`source`: another checkout's `src` directory, run instead of the installed
        package (`versus.py` compares two revisions this way)."""
        super().__init__(base_dir, tls=tls)
        self._python = python
        self._source = source
        self._extra_flags = extra_flags
        ports = free_ports(len(NODE_NAMES))
        self._address = {n: f"127.0.0.1:{p}" for n, p in zip(NODE_NAMES, ports, strict=True)}
        self._node_of_address = {a: n for n, a in self._address.items()}
        self._make_certs(self._address)
        self._secret_file = self.base_dir / "cluster.secret"
        self._secret_file.unlink(missing_ok=True)  # a fresh secret for every run
        write_secret_file(self._secret_file)

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in NODE_NAMES]

    def endpoint(self, node: str) -> str:
        return f"{self.scheme}://{self._address[node]}"

    def _command(self, node: str, *, first_start: bool) -> list[str]:
        data_dir = self.base_dir / f"{node}.data"
        data_dir.mkdir(exist_ok=True)
        spec = NodeSpec(
            node_id=self._address[node],
            peers=tuple(self._address[n] for n in NODE_NAMES),
            secret_file=self._secret_file,
            data_dir=data_dir,
            extra_args=self._extra_flags,
            python=self._python,
            tls=self._certs[node].settings if self.tls else TlsSettings(),
        )
        return server_command(spec)

    def _env(self) -> dict[str, str] | None:
        if self._source is None:
            return None
        return {**os.environ, "PYTHONPATH": str(self._source)}

    def _raft_status(self, node: str) -> RaftStatus | None:
        if node in self._paused:
            return None
        return try_status(
            self.endpoint(node), timeout_seconds=QUERY_TIMEOUT_SECONDS, ssl_context=self.ssl_context
        )

    def node_status(self, node: str) -> NodeStatus | None:
        status = self._raft_status(node)
        if status is None:
            return None
        leader = status.leader
        return NodeStatus(
            leader=self._node_of_address.get(leader) if leader is not None else None,
            term=status.term,
            applied_index=status.applied_index,
            commit_index=status.commit_index,
        )

    def leader(self) -> str | None:
        """The leader by `naraft.cluster.agreed_leader`, the project's one rule."""
        members = [self._address[n] for n in NODE_NAMES]
        statuses = {self._address[n]: self._raft_status(n) for n in NODE_NAMES}
        leader = agreed_leader(statuses, members)
        return None if leader is None else self._node_of_address[leader]


class EtcdCluster(Cluster):
    """Three etcd members with default tuning: fsync on, heartbeat 100 ms, election
    timeout 1000 ms, snapshot-count 100000."""

    name = "etcd"

    def __init__(
        self, base_dir: Path, *, etcd_binary: str | None = None, tls: bool = False
    ) -> None:
        super().__init__(base_dir, tls=tls)
        binary = etcd_binary or shutil.which("etcd")
        if binary is None:
            raise ClusterError("etcd not found: apt-get install -y etcd-server etcd-client")
        self._binary = binary
        ports = free_ports(2 * len(NODE_NAMES))
        self._client_port = dict(zip(NODE_NAMES, ports[:3], strict=True))
        self._peer_port = dict(zip(NODE_NAMES, ports[3:], strict=True))
        self._member_ids: dict[str, str] = {}
        self._make_certs({n: f"127.0.0.1:{p}" for n, p in self._client_port.items()})

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(n) for n in NODE_NAMES]

    def endpoint(self, node: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self._client_port[node]}"

    def _peer_url(self, node: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self._peer_port[node]}"

    def _command(self, node: str, *, first_start: bool) -> list[str]:
        cluster = ",".join(f"{n}={self._peer_url(n)}" for n in NODE_NAMES)
        tls: list[str] = []
        if self.tls:
            files = self._certs[node]
            tls = [
                "--cert-file", str(files.cert_file), "--key-file", str(files.key_file),
                "--peer-cert-file", str(files.cert_file), "--peer-key-file", str(files.key_file),
                "--peer-trusted-ca-file", str(files.ca_file), "--peer-client-cert-auth",
            ]  # fmt: skip
        return [
            self._binary, *tls, "--name", node,
            "--data-dir", str(self.base_dir / f"{node}.data"),
            "--listen-client-urls", self.endpoint(node),
            "--advertise-client-urls", self.endpoint(node),
            "--listen-peer-urls", self._peer_url(node),
            "--initial-advertise-peer-urls", self._peer_url(node),
            "--initial-cluster", cluster,
            "--initial-cluster-token", f"naraft-bench-{os.getpid()}",
            "--initial-cluster-state", "new" if first_start else "existing",
            "--logger", "zap", "--log-outputs", "stderr",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        # Only flags configure etcd here: drop any ETCD_* variable of the caller.
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}

    def node_status(self, node: str) -> NodeStatus | None:
        try:
            status = _http_json(
                f"{self.endpoint(node)}/v3/maintenance/status", b"{}", self.ssl_context
            )
        except (OSError, ValueError):
            return None
        if not isinstance(status, dict):
            return None
        header = status.get("header", {})
        self._member_ids[str(header.get("member_id"))] = node
        leader_id = str(status.get("leader", "0"))
        return NodeStatus(
            leader=self._member_ids.get(leader_id),
            term=int(status.get("raftTerm", header.get("raft_term", 0))),
            applied_index=int(status.get("raftAppliedIndex", status.get("raftIndex", 0))),
            commit_index=int(status.get("raftIndex", 0)),
        )

    def statuses(self) -> dict[str, NodeStatus | None]:
        # Member ids are learnt from each node's own status; ask twice the first time so
        # that every leader id can be named.
        if len(self._member_ids) < len(NODE_NAMES):
            super().statuses()
        return super().statuses()
