"""Real `naraft server` processes on 127.0.0.1, each behind its own `NodeProxy`.

The processes are a `naraft.cluster.ProcessCluster` with separate listen ports: node i's id
(and peer address) is its proxy's port; it listens on another port, which the campaign's
clients use directly. `ChaosCluster` adds the proxies, the tmpfs data directories and the
transport failpoints (set through each node's debug route) to the launcher's start, kill
(SIGKILL), pause (SIGSTOP), resume, restart and stop, and always stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from naraft.chaos.proxy import LinkTable, NodeProxy
from naraft.client import FAILPOINTS_PATH, change_member, fetch_status, list_members
from naraft.cluster import FAILPOINTS_ENV_VAR, NodeProcess, ProcessCluster
from naraft.grpc.client import grpc_address

logger = logging.getLogger(__name__)

DB_FILE: Final = "naraft.db"
AUDIT_FILE: Final = "election-audit.jsonl"
SECRET: Final = "naraft-chaos-cluster-secret"
STOP_TIMEOUT_SECONDS: Final = 10.0
MEMBERS_TIMEOUT_SECONDS: Final = 5.0


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


class ChaosNode:
    """One node process (a `naraft.cluster.NodeProcess`). `id` is its proxied address;
    `url` reaches it directly. Kills and stops are awaited (they wait in a thread)."""

    def __init__(self, process: NodeProcess, listen_port: int) -> None:
        self._process = process
        self.listen_port = listen_port

    @property
    def id(self) -> str:
        return self._process.id

    @property
    def url(self) -> str:
        return self._process.url

    @property
    def grpc_address(self) -> str:
        """`host:port` of its Nacos 2.x gRPC endpoint (the client port plus the offset)."""
        return grpc_address(self.url.split("://", 1)[-1])

    @property
    def data_dir(self) -> Path:
        return self._process.data_dir

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def paused(self) -> bool:
        return self._process.paused

    @property
    def killed(self) -> bool:
        """Killed by the harness since the last start."""
        return self._process.killed

    @property
    def starts(self) -> int:
        return self._process.starts

    @property
    def running(self) -> bool:
        return self._process.running

    @property
    def serving(self) -> bool:
        """Running and not paused: it may answer."""
        return self._process.serving

    @property
    def exit_code(self) -> int | None:
        return self._process.exit_code

    def start(self, failpoints: str) -> None:
        self._process.start(env={FAILPOINTS_ENV_VAR: failpoints})

    def rejoin_through(self, url: str) -> None:
        """Start from now on with `--join url` instead of the original `--peers`: a data
        directory that holds members runs with them, one that holds none asks `url`."""
        spec = self._process.spec
        self._process.spec = dataclasses.replace(spec, peers=(), join=url)

    async def kill(self) -> None:
        """SIGKILL (kill -9): no cleanup, no flush; waits for the process to be gone."""
        await self._process.akill()

    def pause(self) -> None:
        self._process.pause()

    def resume(self) -> None:
        self._process.resume()

    async def stop(self) -> None:
        """SIGCONT + SIGTERM, then SIGKILL after the launcher's stop timeout."""
        await self._process.aterminate()

    def tracebacks(self) -> list[str]:
        return self._process.tracebacks()


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
        self._processes = ProcessCluster(
            root,
            size,
            separate_listen=True,
            extra_args=extra_args,
            secret=SECRET,
            log_dir=root if tmpfs_size else None,
        )
        self.nodes: list[ChaosNode] = []  # the members now: what clients and checks use
        self.joining: list[ChaosNode] = []  # started with --join, not listed as members yet
        self.retired: list[ChaosNode] = []  # removed from the members (and stopped)
        self.members_changed = False  # once true, (re)starts use --join (`start_node`)
        self.proxies: list[NodeProxy] = []
        for process in self._processes.nodes:
            proxy_port = int(process.id.rsplit(":", 1)[1])
            listen_port = int(process.url.rsplit(":", 1)[1])
            self.nodes.append(ChaosNode(process, listen_port))
            self.proxies.append(
                NodeProxy(
                    process.id, listen_port=proxy_port, upstream_port=listen_port, links=self.links
                )
            )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))

    @property
    def ids(self) -> list[str]:
        return [node.id for node in self.nodes]

    @property
    def every_node(self) -> list[ChaosNode]:
        """Members, joining and retired nodes: every process this cluster ever ran."""
        return [*self.nodes, *self.joining, *self.retired]

    def node(self, node_id: str) -> ChaosNode:
        return next(node for node in self.nodes if node.id == node_id)

    async def add_joining_node(self) -> ChaosNode:
        """A new node (not started) behind a proxy of its own, to run `naraft server --join`
        through the first member; in `joining` (not a member) until `adopt`."""
        self.members_changed = True
        process = self._processes.add_joining_node(self.nodes[0].url, separate_listen=True)
        self._processes.forget_member(process.id)  # the leader rule counts it once adopted
        node = ChaosNode(process, int(process.url.rsplit(":", 1)[1]))
        proxy = NodeProxy(
            process.id,
            listen_port=int(process.id.rsplit(":", 1)[1]),
            upstream_port=node.listen_port,
            links=self.links,
        )
        await proxy.start()
        self.proxies.append(proxy)
        self.joining.append(node)
        return node

    def start_node(self, node: ChaosNode) -> None:
        """Start (again) a node. Once the members changed, its original `--peers` may
        disagree with the members its data directory holds (the node refuses to start): it
        runs with `--join` through a running member instead, which takes the persisted
        members, or asks that member when it holds none yet."""
        if self.members_changed:
            through = next((o for o in self.nodes if o is not node and o.serving), None)
            if through is not None:
                node.rejoin_through(through.url)
        node.start(self.failpoints)

    def adopt(self, node: ChaosNode) -> None:
        """A joining node is listed as a member: clients and checks use it from now on."""
        self.joining.remove(node)
        self.nodes.append(node)
        self._processes.members.append(node.id)

    def retire(self, node: ChaosNode) -> None:
        """A member was removed: clients and checks leave it alone from now on."""
        self.nodes.remove(node)
        self.retired.append(node)
        self._processes.forget_member(node.id)

    async def members(self) -> Any:
        """`GET /naraft/v1/members` as the leader answers it (asked of each serving node in
        turn until one answers with a leader known); None if none did."""
        for node in [*self.nodes, *self.joining]:
            if not node.serving:
                continue
            try:
                answer = await asyncio.to_thread(
                    list_members, node.url, timeout_seconds=MEMBERS_TIMEOUT_SECONDS
                )
            except (OSError, ValueError):  # urllib's errors are OSErrors
                continue
            if isinstance(answer, dict) and answer.get("leader"):
                return answer
        return None

    async def change_member(self, member: str, action: str, via: ChaosNode) -> bool:
        """`POST /naraft/v1/members` through `via` (forwarded to the leader); whether it
        answered 200 (the change applied). A failed call may still have applied it."""
        try:
            await asyncio.to_thread(
                change_member, via.url, member, action, timeout_seconds=MEMBERS_TIMEOUT_SECONDS
            )
        except (OSError, ValueError):
            return False
        return True

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
        for node in self.every_node:
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
        status = await fetch_status(self.session, node.url)
        return None if status is None else dict(status.raw)

    async def leader(self) -> ChaosNode | None:
        """The leader now by `naraft.cluster.agreed_leader`; None if there is none."""
        found = await self._processes.afind_leader(self.session)
        return None if found is None else self.node(found.id)

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
        self.start_node(node)

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
