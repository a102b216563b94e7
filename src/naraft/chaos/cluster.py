"""Real `naraft server` processes on 127.0.0.1, each behind its own `NodeProxy`.

Node i's id (and peer address) is its proxy's port; it listens on another port, which the
campaign's clients use directly. `ChaosCluster` starts, kills (SIGKILL), pauses
(SIGSTOP), resumes, restarts and stops the processes, sets the transport failpoints
through each node's debug route, and always stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from naraft.chaos.proxy import LinkTable, NodeProxy

logger = logging.getLogger(__name__)

DB_FILE: Final = "naraft.db"
AUDIT_FILE: Final = "election-audit.jsonl"
LOG_FILE: Final = "node.log"
FAILPOINTS_ENV_VAR: Final = "NARAFT_FAILPOINTS"
FAILPOINTS_PATH: Final = "/naraft/v1/debug/failpoints"
STATE_PATH: Final = "/nacos/v1/ns/raft/state"
SECRET: Final = "naraft-chaos-cluster-secret"
STOP_TIMEOUT_SECONDS: Final = 10.0


FILLER_FILE: Final = "disk-filler"  # the disk-full fault's file (schedules.fill_disk)


class ChaosSetupError(RuntimeError):
    """The campaign cannot set up what a schedule needs (e.g. a tmpfs without root)."""


def mount_tmpfs(path: Path, size: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ChaosSetupError(
            f"cannot mount a tmpfs on {path} (the disk-full schedule needs root): "
            f"{done.stderr.strip() or done.returncode}"
        )


def can_mount_tmpfs(scratch: Path) -> bool:
    """Whether this process may mount a tmpfs (tried on `scratch`, an empty directory)."""
    try:
        mount_tmpfs(scratch, "1m")
    except ChaosSetupError:
        return False
    subprocess.run(["umount", "-l", str(scratch)], capture_output=True, check=False)
    return True


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


class ChaosNode:
    """One node process. `id` is its proxied address; `url` reaches it directly."""

    def __init__(
        self,
        node_id: str,
        listen_port: int,
        data_dir: Path,
        args: list[str],
        *,
        log_path: Path | None = None,
    ) -> None:
        self.id = node_id
        self.listen_port = listen_port
        self.data_dir = data_dir
        self.log_path = log_path or data_dir / LOG_FILE
        self._args = args
        self._process: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.killed = False  # by the harness, since the last start
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def serving(self) -> bool:
        """Running and not paused: it may answer."""
        return self.running and not self.paused

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def start(self, failpoints: str) -> None:
        if self.running:
            return
        env = {**os.environ, FAILPOINTS_ENV_VAR: failpoints}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.paused = False
        self.killed = False
        self.starts += 1

    async def kill(self) -> None:
        """SIGKILL (kill -9): no cleanup, no flush; waits for the process to be gone."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self.killed = True
        process.kill()
        await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        self.paused = False

    def pause(self) -> None:
        if self.running and not self.paused:
            assert self._process is not None
            self._process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            assert self._process is not None
            self._process.send_signal(signal.SIGCONT)
        self.paused = False

    async def stop(self) -> None:
        """SIGCONT + SIGTERM, then SIGKILL after `STOP_TIMEOUT_SECONDS`."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_SECONDS)
        self.paused = False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class ChaosCluster:
    """N nodes behind proxies, in `root`. Use `async with`; `stop` ends every process."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        failpoints: str,
        extra_args: Sequence[str] = (),
        tmpfs_size: str | None = None,
    ) -> None:
        """`tmpfs_size` (e.g. "256m") puts each node's data directory on a tmpfs of its own
        (root only), so that a disk can be filled without touching anything else; the node
        logs then live beside the data directories."""
        self.root = root
        self._tmpfs_size = tmpfs_size
        self._mounted: list[Path] = []
        self.links = LinkTable()
        self.failpoints = failpoints
        ports = free_ports(2 * size)
        proxy_ports, listen_ports = ports[:size], ports[size:]
        ids = [f"127.0.0.1:{port}" for port in proxy_ports]
        root.mkdir(parents=True, exist_ok=True)
        secret_file = root / "cluster.secret"
        secret_file.write_text(SECRET)
        secret_file.chmod(0o600)
        self.nodes: list[ChaosNode] = []
        self.proxies: list[NodeProxy] = []
        for node_id, proxy_port, listen_port in zip(ids, proxy_ports, listen_ports, strict=True):
            data_dir = root / node_id.replace(":", "_")
            data_dir.mkdir(parents=True, exist_ok=True)
            args = [
                sys.executable, "-m", "naraft", "server",
                "--id", node_id, "--listen", f"127.0.0.1:{listen_port}",
                "--peers", ",".join(ids), "--cluster-secret-file", str(secret_file),
                "--data-dir", str(data_dir), *extra_args,
            ]  # fmt: skip
            log_path = data_dir.with_name(f"{data_dir.name}.log") if tmpfs_size else None
            self.nodes.append(ChaosNode(node_id, listen_port, data_dir, args, log_path=log_path))
            self.proxies.append(
                NodeProxy(
                    node_id, listen_port=proxy_port, upstream_port=listen_port, links=self.links
                )
            )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))

    @property
    def ids(self) -> list[str]:
        return [node.id for node in self.nodes]

    def node(self, node_id: str) -> ChaosNode:
        return next(node for node in self.nodes if node.id == node_id)

    async def __aenter__(self) -> ChaosCluster:
        if self._tmpfs_size is not None:
            for node in self.nodes:
                mount_tmpfs(node.data_dir, self._tmpfs_size)
                self._mounted.append(node.data_dir)
        for proxy in self.proxies:
            await proxy.start()
        for node in self.nodes:
            node.start(self.failpoints)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()
        for proxy in self.proxies:
            await proxy.close()
        await self.session.close()

    def release(self) -> None:
        """Move what the tmpfs data directories hold (audit logs, databases) onto the disk and
        unmount them. Call once the nodes are stopped and checked; a no-op without tmpfs."""
        for data_dir in self._mounted:
            kept = data_dir.with_name(f"{data_dir.name}.kept")
            shutil.copytree(data_dir, kept, ignore=shutil.ignore_patterns(FILLER_FILE))
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True, check=False)
            data_dir.rmdir()
            kept.rename(data_dir)
        self._mounted.clear()

    async def state(self, node: ChaosNode) -> dict[str, Any] | None:
        """The node's /raft/state, or None if it does not answer in time."""
        if not node.serving:
            return None
        try:
            async with self.session.get(f"{node.url}{STATE_PATH}") as answer:
                if answer.status != 200:
                    return None
                data: dict[str, Any] = await answer.json()
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def leader(self) -> ChaosNode | None:
        """The serving node that says it leads, with the highest term; None if none does."""
        best: tuple[int, ChaosNode] | None = None
        for node in self.nodes:
            state = await self.state(node)
            if state is not None and state.get("role") == "leader":
                term = int(state["term"])
                if best is None or term > best[0]:
                    best = (term, node)
        return None if best is None else best[1]

    async def set_transport_faults(self, spec: str) -> int:
        """Replace every serving node's transport failpoints; returns how many took it."""
        done = 0
        for node in self.nodes:
            if not node.serving:
                continue
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.put(f"{node.url}{FAILPOINTS_PATH}", data=spec) as answer:
                    done += answer.status == 200
        return done

    async def restart(self, node: ChaosNode) -> None:
        await node.kill()
        node.start(self.failpoints)

    async def wait_serving(self, timeout_seconds: float) -> bool:
        """Wait until every running node answers /raft/state; False on timeout."""
        try:
            async with asyncio.timeout(timeout_seconds):
                while True:
                    states = [await self.state(node) for node in self.nodes if node.running]
                    if all(state is not None for state in states):
                        return True
                    await asyncio.sleep(0.2)
        except TimeoutError:
            return False
