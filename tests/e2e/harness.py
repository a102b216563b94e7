"""Real `naraft server` processes on 127.0.0.1 for end-to-end tests.

`LocalCluster` starts N nodes on free loopback ports with their own data directories
(real SQLite files), waits on HTTP conditions with bounded retries (never sleep-and-hope),
kills and restarts nodes (SIGKILL, SIGSTOP/SIGCONT), and always stops every process it
started. A failing test gets each node's log tail in its message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

FAST_TIMERS: tuple[str, ...] = ("--tick-ms", "50", "--election-ticks", "10")


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (bound briefly, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class WaitTimeoutError(AssertionError):
    pass


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
) -> T:
    """Poll `condition` until it returns a value other than None/False; report the last
    exception or value on timeout."""
    deadline = time.monotonic() + timeout_seconds
    last: object = None
    while True:
        try:
            value = condition()
            if value is not None and value is not False:
                return value
            last = value
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last = error
        if time.monotonic() > deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout_seconds}s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval_seconds)


@dataclass
class NodeProcess:
    address: str
    data_dir: Path
    log_path: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush (kill -9)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class LocalCluster:
    """N real nodes on loopback. Use as a context manager (stops everything on exit)."""

    root: Path
    size: int = 3
    extra_args: Sequence[str] = FAST_TIMERS
    host: str = "127.0.0.1"
    ports: list[int] = field(default_factory=list)
    nodes: list[NodeProcess] = field(default_factory=list)
    secret: str = "e2e-test-cluster-secret"
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = free_ports(self.size)
        members = [f"{self.host}:{p}" for p in self.ports]
        secret_file = self.root / "cluster.secret"
        self.root.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(self.secret)
        for member in members:
            data_dir = self.root / member.replace(":", "_")
            data_dir.mkdir(parents=True, exist_ok=True)
            args = [
                sys.executable, "-m", "naraft", "server",
                "--id", member, "--data-dir", str(data_dir),
            ]  # fmt: skip
            if self.size == 1:
                args.append("--standalone")
            else:
                args += ["--peers", ",".join(members), "--cluster-secret-file", str(secret_file)]
            args += list(self.extra_args)
            self.nodes.append(NodeProcess(member, data_dir, data_dir / "node.log", args))

    def __enter__(self) -> LocalCluster:
        for node in self.nodes:
            node.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for node in self.nodes:
            node.terminate()
        self.client.close()

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def node(self, address: str) -> NodeProcess:
        return next(n for n in self.nodes if n.address == address)

    def logs(self) -> str:
        return "\n".join(f"--- {n.address}\n{n.log_tail()}" for n in self.nodes)

    def state(self, node: NodeProcess) -> dict[str, Any]:
        answer = self.client.get(f"{node.url}/nacos/v1/ns/raft/state", timeout=1.0)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def leader(self, *, timeout_seconds: float = 15.0, exclude: str | None = None) -> NodeProcess:
        """The leader every running node agrees on (and that says it leads)."""

        def agreed() -> NodeProcess | None:
            views = [self.state(n) for n in self.nodes if n.running]
            leaders = {v["leader"] for v in views}
            if len(leaders) != 1:
                return None
            (leader,) = leaders
            if leader is None or leader == exclude:
                return None
            node = self.node(leader)
            return node if node.running and self.state(node)["role"] == "leader" else None

        try:
            return wait_for(agreed, timeout_seconds=timeout_seconds, what="an agreed leader")
        except WaitTimeoutError as error:
            raise WaitTimeoutError(f"{error}\n{self.logs()}") from None

    def wait_ready(self, timeout_seconds: float = 15.0) -> NodeProcess:
        return self.leader(timeout_seconds=timeout_seconds)

    def put(self, node: NodeProcess, key: str, value: str, **extra: object) -> httpx.Response:
        return self.client.put(
            f"{node.url}/naraft/v1/kv/{key}", json={"value": value, **extra}, timeout=10.0
        )

    def get(self, node: NodeProcess, key: str, consistency: str = "local") -> httpx.Response:
        return self.client.get(
            f"{node.url}/naraft/v1/kv/{key}", params={"consistency": consistency}, timeout=10.0
        )

    def wait_applied(self, node: NodeProcess, index: int, timeout_seconds: float = 15.0) -> None:
        wait_for(
            lambda: self.state(node)["appliedIndex"] >= index,
            timeout_seconds=timeout_seconds,
            what=f"{node.address} to apply {index}",
        )


@contextlib.contextmanager
def local_cluster(
    root: Path, size: int = 3, extra_args: Sequence[str] = FAST_TIMERS
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(root=root, size=size, extra_args=extra_args)
    try:
        with cluster:
            yield cluster
    except BaseException:
        sys.stderr.write(cluster.logs() + "\n")
        raise


def naraft_command(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "naraft", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
