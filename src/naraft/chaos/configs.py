"""The config part of the chaos workload: publishes, linearizable gets, compare-and-set
publishes (`casMd5`), deletes, write-once configs, and long-poll listeners on every node.

Config operations are recorded in the same history as the kv registers, on keys
`cfg/<dataId>`: a publish is a write, a get a read (404: absent), a `casMd5` publish a
compare-and-set on the value last seen (only issued when one was seen: naraft's casMd5
never creates), a delete a delete. Write-once configs (`cfgset-…`) are never changed again,
so every acknowledged one must be on every node after healing; a clone copies one by id to
a fresh write-once dataId, a write of its known content (docs/fault-campaigns.md, "Clones").

Listeners: one per node, long-polling `WATCHED` with the MD5s it knows and fetching a
config again when its poll names it. After healing, each must reach the final MD5 of every
watched config (`no_lost_notification`): a change it never heard of would leave it behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_plus

import aiohttp

from naraft.chaos.cluster import ChaosCluster, ChaosNode
from naraft.client import CONFIG_LISTENER_PATH, CONFIGS_PATH

GROUP: Final = "DEFAULT_GROUP"
CONFIG_KEY_PREFIX: Final = "cfg/"
CONFIG_SET_PREFIX: Final = "cfgset-"
WATCHED: Final = ("cfg-w-0", "cfg-w-1", "cfg-w-2")
POLL_TIMEOUT_MS: Final = 10_000


def md5_of(content: str | None) -> str:
    return "" if content is None else hashlib.md5(content.encode()).hexdigest()


def probe(md5s: dict[str, str]) -> str:
    return "".join(f"{data_id}\x02{GROUP}\x02{md5}\x01" for data_id, md5 in md5s.items())


async def get_config(
    session: aiohttp.ClientSession, node: ChaosNode, data_id: str
) -> tuple[int, str | None]:
    """(status, content): 200 with the content, 404 with None, else the status."""
    async with session.get(
        f"{node.url}{CONFIGS_PATH}", params={"dataId": data_id, "group": GROUP}
    ) as answer:
        text = await answer.text()
        return answer.status, text if answer.status == 200 else None


async def local_md5s(
    session: aiohttp.ClientSession, node: ChaosNode, expected: dict[str, str]
) -> list[str] | None:
    """The configs among `expected` whose MD5 differs on `node`'s own applied state (a
    no-hangup poll answers at once from it), or None when the node did not answer."""
    try:
        async with session.post(
            f"{node.url}{CONFIG_LISTENER_PATH}",
            data={"Listening-Configs": probe(expected)},
            headers={"Long-Pulling-Timeout": "30000", "Long-Pulling-Timeout-No-Hangup": "true"},
        ) as answer:
            if answer.status != 200:
                return None
            text = unquote_plus(await answer.text())
    except (aiohttp.ClientError, TimeoutError):
        return None
    return [line.split("\x02")[0] for line in text.split("\x01") if line.strip()]


@dataclass(slots=True)
class Listener:
    """One node's long-poll listener and the MD5s it has heard of."""

    node: ChaosNode
    updated: asyncio.Condition
    md5s: dict[str, str] = field(default_factory=lambda: dict.fromkeys(WATCHED, ""))
    polls: int = 0
    notifications: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT_MS / 1000 + 10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                try:
                    changed = await self._poll(session)
                    for data_id in changed:
                        status, content = await get_config(session, self.node, data_id)
                        if status in (200, 404):
                            self.md5s[data_id] = md5_of(content)
                            self.notifications += 1
                            async with self.updated:
                                self.updated.notify_all()
                except (aiohttp.ClientError, TimeoutError):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            await stop.wait()

    async def _poll(self, session: aiohttp.ClientSession) -> list[str]:
        self.polls += 1
        async with session.post(
            f"{self.node.url}{CONFIG_LISTENER_PATH}",
            data={"Listening-Configs": probe(self.md5s)},
            headers={"Long-Pulling-Timeout": str(POLL_TIMEOUT_MS)},
        ) as answer:
            if answer.status != 200:
                raise aiohttp.ClientError(f"poll answered {answer.status}")
            text = unquote_plus(await answer.text())
        return [line.split("\x02")[0] for line in text.split("\x01") if line.strip()]


class ListenerSet:
    """A listener on every node, run beside the workload until the final check is done."""

    def __init__(self, cluster: ChaosCluster) -> None:
        self._cluster = cluster
        self._updated = asyncio.Condition()
        self.listeners = [Listener(node, self._updated) for node in cluster.nodes]
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def wait_until(self, final: dict[str, str], timeout_seconds: float) -> list[str]:
        """Wait until every listener holds the `final` MD5s; what each still lacks after
        `timeout_seconds` (empty: none lost a notification)."""

        def behind() -> list[str]:
            return [
                f"{listener.node.id} missed {data_id}"
                for listener in self.listeners
                if listener.node in self._cluster.nodes  # not a removed member's
                for data_id, md5 in final.items()
                if listener.md5s.get(data_id) != md5
            ]

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_seconds), self._updated:
                await self._updated.wait_for(lambda: not behind())
        return behind()

    def start(self) -> None:
        async def run_all() -> None:
            async with asyncio.TaskGroup() as tasks:
                for listener in self.listeners:
                    tasks.create_task(listener.run(self._stop))

        self._task = asyncio.create_task(run_all(), name="chaos-config-listeners")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def pick_config_key(rng: random.Random) -> str:
    """A register config: mostly the watched ones, so listeners see many changes."""
    return rng.choice((*WATCHED, "cfg-r-0", "cfg-r-1"))
