"""Real `naraft server` processes on 127.0.0.1 for end-to-end tests.

`LocalCluster` starts N nodes on free loopback ports with their own data directories
(real SQLite files), waits on HTTP conditions with bounded retries (never sleep-and-hope),
kills and restarts nodes (SIGKILL, SIGSTOP/SIGCONT), and always stops every process it
started. A failing test gets each node's log tail in its message.

`WriteLedger` records every write a test attempts with what a client may conclude from its
answer (`WriteOutcome`: acked, not-applied, unknown); `write_concurrently` and
`BackgroundWriter` fill one from client threads, so a test can check that every acked write
is present and no not-applied one is.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from naraft.chaos.cluster import free_ports

T = TypeVar("T")

FAST_TIMERS: tuple[str, ...] = ("--tick-ms", "50", "--election-ticks", "10")


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
    paused: bool = False  # SIGSTOPped: alive, but answers nothing until resumed

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
        self.paused = False

    def terminate(self) -> None:
        self.paused = False
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
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

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
        secret_file.chmod(0o600)  # as `naraft cluster up` does; a readable one is warned about
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

    def leader(
        self,
        *,
        timeout_seconds: float = 15.0,
        exclude: str | None = None,
        among: Sequence[NodeProcess] | None = None,
    ) -> NodeProcess:
        """The leader every running node (of `among`, default all) agrees on (and that says
        it leads). Paused nodes are not asked."""

        def agreed() -> NodeProcess | None:
            asked = self.nodes if among is None else among
            views = [self.state(n) for n in asked if n.running and not n.paused]
            leaders = {v["leader"] for v in views}
            if len(leaders) != 1:
                return None
            (leader,) = leaders
            if leader is None or leader == exclude:
                return None
            node = self.node(leader)
            if not node.running or node.paused:
                return None
            return node if self.state(node)["role"] == "leader" else None

        try:
            return wait_for(agreed, timeout_seconds=timeout_seconds, what="an agreed leader")
        except WaitTimeoutError as error:
            raise WaitTimeoutError(f"{error}\n{self.logs()}") from None

    def wait_ready(self, timeout_seconds: float = 15.0) -> NodeProcess:
        """The agreed leader, once it has replicated its state quota (its first entry after
        the election's no-op), so that a test sees a quiet log."""
        leader = self.leader(timeout_seconds=timeout_seconds)
        args = list(self.extra_args)
        quota_off = "--quota-bytes" in args and args[args.index("--quota-bytes") + 1] == "0"
        if not quota_off:
            wait_for(
                lambda: self.state(leader).get("quotaBytes", 0) is not None,
                timeout_seconds=timeout_seconds,
                what="the leader to replicate its state quota",
            )
        return leader

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

    def running_nodes(self) -> list[NodeProcess]:
        """The nodes whose process is alive and not paused."""
        return [n for n in self.nodes if n.running and not n.paused]

    def restart(self, node: NodeProcess) -> None:
        """Start `node` again with the same arguments and data directory."""
        node.terminate()
        node.start()

    def wait_caught_up(
        self,
        node: NodeProcess,
        timeout_seconds: float = 30.0,
        among: Sequence[NodeProcess] | None = None,
    ) -> int:
        """Wait until `node` has applied the commit index of the leader that the nodes
        (`among`, default all) agree on; return that index."""
        leader = self.leader(timeout_seconds=timeout_seconds, among=among)
        commit = int(self.state(leader)["commitIndex"])
        try:
            self.wait_applied(node, commit, timeout_seconds=timeout_seconds)
        except WaitTimeoutError as error:
            raise WaitTimeoutError(f"{error}\n{self.logs()}") from None
        return commit

    def missing_writes(
        self, node: NodeProcess, writes: Mapping[str, str], consistency: str = "local"
    ) -> dict[str, str]:
        """The `writes` (key -> value) that `node` does not show, with what it shows instead."""
        missing = {}
        for key, value in writes.items():
            answer = self.get(node, key, consistency=consistency)
            if answer.status_code != 200 or answer.json().get("value") != value:
                missing[key] = f"{answer.status_code} {answer.text[:80]}"
        return missing

    def present_keys(self, node: NodeProcess, keys: Iterable[str]) -> dict[str, str]:
        """The `keys` that `node` holds (local read), with their answers."""
        present = {}
        for key in keys:
            answer = self.get(node, key, consistency="local")
            if answer.status_code != 404:
                present[key] = f"{answer.status_code} {answer.text[:80]}"
        return present


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


# ---------------------------------------------------------------------- write ledgers

WRITE_TIMEOUT_SECONDS: Final = 15.0  # > the proposal timeout (5 s) plus a forward's slack


class WriteOutcome(enum.StrEnum):
    """What a client may conclude from the answer to one write."""

    ACKED = "acked"  # 200: committed and applied
    NOT_APPLIED = "not-applied"  # surely not applied: 503 "not-applied", or never sent
    UNKNOWN = "unknown"  # may or may not be applied: 503 "unknown", timeout, reset, ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    key: str
    value: str
    through: str  # the node the client sent it to
    outcome: WriteOutcome
    status: int | None  # None when no HTTP answer arrived
    detail: str


def classify_write(answer: httpx.Response) -> WriteOutcome:
    """200 is acked; a 503 saying `"outcome": "not-applied"` surely did not apply; anything
    else (503 "unknown", a 503 without an outcome, another status) is unknown."""
    if answer.status_code == 200:
        return WriteOutcome.ACKED
    try:
        body = answer.json()
    except ValueError:
        return WriteOutcome.UNKNOWN
    if isinstance(body, dict) and body.get("outcome") == WriteOutcome.NOT_APPLIED.value:
        return WriteOutcome.NOT_APPLIED
    return WriteOutcome.UNKNOWN


def attempt_put(
    client: httpx.Client,
    node: NodeProcess,
    key: str,
    value: str,
    timeout_seconds: float = WRITE_TIMEOUT_SECONDS,
) -> WriteRecord:
    """PUT key=value through `node` once (no retry) and classify the answer."""
    try:
        answer = client.put(
            f"{node.url}/naraft/v1/kv/{key}", json={"value": value}, timeout=timeout_seconds
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        # No connection was made, so nothing was sent.
        return WriteRecord(
            key=key,
            value=value,
            through=node.address,
            outcome=WriteOutcome.NOT_APPLIED,
            status=None,
            detail=repr(error),
        )
    except httpx.HTTPError as error:  # sent, then the answer was lost: unknown
        return WriteRecord(
            key=key,
            value=value,
            through=node.address,
            outcome=WriteOutcome.UNKNOWN,
            status=None,
            detail=repr(error),
        )
    return WriteRecord(
        key=key,
        value=value,
        through=node.address,
        outcome=classify_write(answer),
        status=answer.status_code,
        detail=answer.text[:200],
    )


class WriteLedger:
    """Every write attempted, with its outcome; safe to fill from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[WriteRecord] = []

    def add(self, record: WriteRecord) -> None:
        with self._lock:
            self._records.append(record)

    @property
    def records(self) -> tuple[WriteRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def with_outcome(self, outcome: WriteOutcome) -> dict[str, str]:
        """key -> value of the writes that ended with `outcome`."""
        return {r.key: r.value for r in self.records if r.outcome is outcome}

    def acked(self) -> dict[str, str]:
        return self.with_outcome(WriteOutcome.ACKED)

    def count(self, outcome: WriteOutcome) -> int:
        return sum(1 for r in self.records if r.outcome is outcome)

    def unexpected(self) -> list[WriteRecord]:
        """Answers that are neither 200 nor 503: a 4xx/5xx here is a server bug."""
        return [r for r in self.records if r.status is not None and r.status not in (200, 503)]

    def summary(self) -> str:
        counts = {o.value: self.count(o) for o in WriteOutcome}
        return f"{len(self.records)} writes: {counts}"


def write_concurrently(
    nodes: Sequence[NodeProcess],
    keys: Sequence[str],
    *,
    threads: int = 4,
    ledger: WriteLedger | None = None,
    value_of: Callable[[str], str] = lambda key: f"value-of-{key}",
) -> WriteLedger:
    """Write each key once, through the nodes in turn, from `threads` client threads."""
    ledger = ledger if ledger is not None else WriteLedger()

    def worker(share: Sequence[str], offset: int) -> None:
        with httpx.Client() as client:
            for i, key in enumerate(share):
                node = nodes[(offset + i) % len(nodes)]
                ledger.add(attempt_put(client, node, key, value_of(key)))

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="e2e-writer") as pool:
        futures = [pool.submit(worker, keys[t::threads], t) for t in range(threads)]
        for future in futures:
            future.result()
    return ledger


class BackgroundWriter:
    """A client thread writing fresh keys (`prefix-N`), one at a time, through the nodes
    `targets()` returns, in turn, until stopped. Use as a context manager."""

    def __init__(
        self,
        targets: Callable[[], Sequence[NodeProcess]],
        *,
        prefix: str = "bg",
        ledger: WriteLedger | None = None,
    ) -> None:
        self.ledger = ledger if ledger is not None else WriteLedger()
        self._targets = targets
        self._prefix = prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"e2e-{prefix}", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WRITE_TIMEOUT_SECONDS + 10)
        if self._thread.is_alive():
            raise AssertionError("the background writer did not stop")
        if self._error is not None:
            raise AssertionError(f"the background writer failed: {self._error!r}")

    def _run(self) -> None:
        try:
            with httpx.Client() as client:
                n = 0
                while not self._stop.is_set():
                    targets = self._targets()
                    if not targets:
                        self._stop.wait(0.05)
                        continue
                    node = targets[n % len(targets)]
                    key = f"{self._prefix}-{n}"
                    self.ledger.add(attempt_put(client, node, key, f"v-{key}"))
                    n += 1
        except BaseException as error:  # reported by stop()
            self._error = error
