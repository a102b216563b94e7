"""The end-to-end tests' fixture layer over `naraft.cluster` and `naraft.client`.

`LocalCluster` is a `ProcessCluster` (real `naraft server` processes on free loopback ports,
real SQLite files, the module's one leader rule) with fast timers, httpx reads and writes,
and waits on HTTP conditions with bounded retries (never sleep-and-hope) whose failures carry
each node's log tail.

`WriteLedger` records every write a test attempts with what a client may conclude from its
answer (`naraft.client.WriteOutcome`, by its one classifier: applied, not-applied,
unknown); `write_concurrently` and `BackgroundWriter` fill one from client threads, so a
test can check that every applied write is present and no not-applied one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx

from naraft.client import (
    STATE_PATH,
    WriteOutcome,
    body_of,
    classify_failure,
    classify_write,
    kv_path,
)
from naraft.cluster import (
    ClusterError,
    NodeProcess,
    NodeSpec,
    ProcessCluster,
    free_ports,
    server_command,
    server_env,
)
from naraft.cluster import wait_for as cluster_wait_for

__all__ = ["NodeProcess", "NodeSpec", "WriteOutcome", "free_ports"]

T = TypeVar("T")

FAST_TIMERS: tuple[str, ...] = ("--tick-ms", "50", "--election-ticks", "10")
DEFAULT_ARGS: tuple[str, ...] = (*FAST_TIMERS, "--no-access-log")
"""What a test cluster runs with unless told otherwise: fast timers, and no access log, so
that a failure's log tail shows the node's own lines (tests/e2e/test_operations.py runs
with the default, access log on)."""
SECRET: Final = "e2e-test-cluster-secret"


class WaitTimeoutError(ClusterError, AssertionError):
    pass


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
) -> T:
    """`naraft.cluster.wait_for`, with httpx's errors as "not yet" and a timeout that is
    also a test failure (`WaitTimeoutError`)."""
    return cluster_wait_for(
        condition,
        timeout_seconds=timeout_seconds,
        what=what,
        interval_seconds=interval_seconds,
        errors=(httpx.HTTPError,),
        timeout_error=WaitTimeoutError,
    )


async def wait_for_async(
    condition: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    interval_seconds: float = 0.05,
) -> T:
    """`wait_for` from a coroutine: the (blocking) condition runs in a thread, so that the
    event loop keeps serving what the test runs on it (a gRPC client answering pushes)."""
    return await asyncio.to_thread(
        wait_for,
        condition,
        timeout_seconds=timeout_seconds,
        what=what,
        interval_seconds=interval_seconds,
    )


class LocalCluster(ProcessCluster):
    """`naraft.cluster.ProcessCluster` with the test conveniences: fast timers by default,
    httpx reads and writes, and waits that put every node's log tail in their failure."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        extra_args: Sequence[str] = DEFAULT_ARGS,
        **options: Any,
    ) -> None:
        super().__init__(root, size, extra_args=extra_args, secret=SECRET, **options)
        self.extra_args = tuple(extra_args)
        # with `tls=True`: https, the nodes verified against the cluster's throwaway CA
        verify = True if self.ssl_context is None else self.ssl_context
        self.client = httpx.Client(timeout=5.0, verify=verify)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def stop(self) -> None:
        super().stop()
        self.client.close()

    def leader(
        self,
        *,
        timeout_seconds: float = 15.0,
        exclude: str | None = None,
        among: Sequence[NodeProcess] | None = None,
        settled: bool = True,
    ) -> NodeProcess:
        """The launcher's leader, settled by default: every serving node asked reports it,
        so that a test goes on once a restarted node has seen the election too."""
        return super().leader(
            timeout_seconds=timeout_seconds, exclude=exclude, among=among, settled=settled
        )

    def state(self, node: NodeProcess) -> dict[str, Any]:
        answer = self.client.get(f"{node.url}{STATE_PATH}", timeout=1.0)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

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
            f"{node.url}{kv_path(key)}", json={"value": value, **extra}, timeout=10.0
        )

    def get(self, node: NodeProcess, key: str, consistency: str = "local") -> httpx.Response:
        return self.client.get(
            f"{node.url}{kv_path(key)}", params={"consistency": consistency}, timeout=10.0
        )

    def wait_applied(self, node: NodeProcess, index: int, timeout_seconds: float = 15.0) -> None:
        wait_for(
            lambda: self.state(node)["appliedIndex"] >= index,
            timeout_seconds=timeout_seconds,
            what=f"{node.address} to apply {index}",
        )

    def running_nodes(self) -> list[NodeProcess]:
        """The nodes whose process is alive and not paused."""
        return self.serving_nodes()

    def restart(self, node: NodeProcess) -> None:
        """Start `node` again with the same arguments and data directory."""
        node.restart()

    def wait_caught_up(
        self,
        node: NodeProcess,
        timeout_seconds: float = 30.0,
        among: Sequence[NodeProcess] | None = None,
    ) -> int:
        """Wait until `node` has applied the commit index of the leader (asking `among`,
        default all); return that index."""
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
    root: Path, size: int = 3, extra_args: Sequence[str] = DEFAULT_ARGS, **options: Any
) -> Iterator[LocalCluster]:
    """A started `LocalCluster`; `options` go to it (`tls=True`, `auth="on"`, ...)."""
    cluster = LocalCluster(root=root, size=size, extra_args=extra_args, **options)
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


def run_server(
    spec: NodeSpec, *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `naraft server` for `spec` to its exit (a node expected to refuse to start),
    capturing its output; `env` replaces the environment when given."""
    return subprocess.run(
        server_command(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else server_env(spec),
        check=False,
    )


# ---------------------------------------------------------------------- write ledgers

WRITE_TIMEOUT_SECONDS: Final = 15.0  # > the proposal timeout (5 s) plus a forward's slack


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    key: str
    value: str
    through: str  # the node the client sent it to
    outcome: WriteOutcome
    status: int | None  # None when no HTTP answer arrived
    detail: str


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
            f"{node.url}{kv_path(key)}", json={"value": value}, timeout=timeout_seconds
        )
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        # No connection was made, so nothing was sent.
        return WriteRecord(
            key=key,
            value=value,
            through=node.address,
            outcome=classify_failure(sent=False),
            status=None,
            detail=repr(error),
        )
    except httpx.HTTPError as error:  # sent, then the answer was lost: unknown
        return WriteRecord(
            key=key,
            value=value,
            through=node.address,
            outcome=classify_failure(sent=True),
            status=None,
            detail=repr(error),
        )
    return WriteRecord(
        key=key,
        value=value,
        through=node.address,
        outcome=classify_write(answer.status_code, body_of(answer.content)),
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
        return self.with_outcome(WriteOutcome.APPLIED)

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


# ---------------------------------------------------------------------- npm nacos

JS_DIR: Final = Path(__file__).parent / "js"
"""The npm client's package.json, lock and driver script (installed by conftest's `npm_client`)."""


def js_process(
    script: Path, servers: str, namespace: str, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the npm client's driver script to its exit (`env`: NACOS_USERNAME and
    NACOS_PASSWORD make it log in as Nacos's npm client does, on every request)."""
    return subprocess.run(
        ["node", str(script), servers, namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def run_js(
    script: Path, servers: str, namespace: str, *args: str, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`js_process`, which must succeed; its last output line, decoded."""
    done = js_process(script, servers, namespace, *args, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------- nacos-sdk-python 3.x

SDK3_DIR: Final = Path(__file__).parent / "sdk3"
"""The 3.x client's pinned requirements and its driver (installed by conftest's `sdk3`)."""
SDK3_CALL_SECONDS: Final = 30.0


class Sdk3Client:
    """One nacos-sdk-python 3.x process (naming and config services) driven over its
    stdin/stdout by `sdk3/driver.py`; see that script for the commands and events."""

    def __init__(self, python: Path, servers: str, namespace: str = "", **login: str) -> None:
        # the SDK's log and cache directories, removed when the process is reaped
        self._workdir = tempfile.TemporaryDirectory(prefix="sdk3-")
        self._process = subprocess.Popen(
            [str(python), str(SDK3_DIR / "driver.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._ids = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.call(
                "start", servers=servers, namespace=namespace, workdir=self._workdir.name, **login
            )
        except BaseException:
            self.kill()
            raise

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # the SDK's own prints
            with self._changed:
                if "event" in message:
                    self.events.append(message)
                elif "id" in message:
                    self._answers[message["id"]] = message
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self._process.pid

    def call(self, op: str, **args: Any) -> Any:
        """Run one SDK operation; its result, or AssertionError with the SDK's error."""
        answer = self.try_call(op, **args)
        assert answer["ok"], f"sdk3 {op} {args} failed: {answer['error']}"
        return answer["result"]

    def try_call(self, op: str, **args: Any) -> dict[str, Any]:
        """Run one SDK operation; its answer (`ok`, and `result` or `error`)."""
        self._ids += 1
        number = self._ids
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"id": number, "op": op, "args": args}) + "\n")
        self._process.stdin.flush()
        with self._changed:
            got = self._changed.wait_for(
                lambda: number in self._answers or self._process.poll() is not None,
                timeout=SDK3_CALL_SECONDS,
            )
            if number not in self._answers:
                raise AssertionError(
                    f"sdk3 {op} gave no answer ({'timed out' if not got else 'exited'}); "
                    f"stderr: {self._stderr_tail()}"
                )
            return self._answers.pop(number)

    def wait_event(
        self, match: Callable[[dict[str, Any]], bool], timeout_seconds: float = 30.0
    ) -> dict[str, Any]:
        """The first event (seen so far or to come) that `match` accepts."""
        with self._changed:
            found: list[dict[str, Any]] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if match(e)]
                return bool(found)

            if not self._changed.wait_for(seen, timeout=timeout_seconds):
                raise AssertionError(f"no matching sdk3 event in {timeout_seconds}s: {self.events}")
            return found[0]

    def _stderr_tail(self) -> str:
        if self._process.poll() is None or self._process.stderr is None:
            return "(still running)"
        return self._process.stderr.read()[-2000:]

    def close(self) -> None:
        """Shut the SDK down cleanly (its connections close), then reap the process."""
        if self._process.poll() is None:
            with contextlib.suppress(AssertionError, BrokenPipeError, OSError):
                self.try_call("close")
        self.kill()

    def kill(self) -> None:
        """Kill the process at once (its connections break without a goodbye)."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._workdir.cleanup()
