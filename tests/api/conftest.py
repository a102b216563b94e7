"""API test scaffolding: a NamingService whose proposer applies commands at once.

`DirectProposer` stands in for the replica: it decodes each proposed command and applies
it to the NamingState with the next index, as a one-node cluster would. The e2e tests use
the real replica instead.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from naraft.api import make_app
from naraft.api.edge import EdgeLimits, GuardedSite
from naraft.api.health import HEALTH
from naraft.api.v1.operator import ServerInfo
from naraft.naming.codec import decode_command
from naraft.naming.commands import Command
from naraft.naming.health import BeatTable
from naraft.naming.keys import InstanceKey
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.state.datums import Datum, DatumTable

T0 = 1_700_000_000_000


@dataclass(frozen=True)
class Guarded:
    """An application served as `naraft server` serves it: `GuardedSite` on loopback."""

    runner: web.AppRunner
    site: GuardedSite
    port: int


@asynccontextmanager
async def guarded_site(
    app: web.Application,
    limits: EdgeLimits,
    *,
    idle_timeout_seconds: float,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = 16,
) -> AsyncIterator[Guarded]:
    """`app` behind `GuardedSite` on a free 127.0.0.1 port, cleaned up on exit (the tests
    and benchmarks that need the node's own connection protocol, not aiohttp's)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        sock.setblocking(False)
        site = GuardedSite(
            runner, sock, limits, idle_timeout_seconds=idle_timeout_seconds,
            ssl_context=ssl_context,
        )  # fmt: skip
        await site.start()
        yield Guarded(runner, site, sock.getsockname()[1])
    finally:
        await runner.cleanup()
        sock.close()


class DirectProposer:
    """Applies every proposal immediately, at index 1, 2, 3, …"""

    def __init__(self, state: NamingState) -> None:
        self._state = state
        self.index = 0
        self.proposed: list[Command] = []
        self.read_barriers = 0
        self.local_reads = 0

    async def propose(self, command: bytes) -> object:
        decoded = decode_command(command)
        self.index += 1
        self.proposed.append(decoded)
        return self._state.apply(decoded, self.index)

    async def read_barrier(self) -> None:
        self.read_barriers += 1

    async def local_read_point(self) -> None:
        self.local_reads += 1


class FakeClock:
    def __init__(self, now_ms: int = T0) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class LocalBeats:
    """The leader's BeatTable, fed directly (a single node is its own leader)."""

    def __init__(self) -> None:
        self.table = BeatTable()
        self.recorded: list[tuple[InstanceKey, int]] = []

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        self.recorded.append((key, beat_at_ms))
        self.table.beat(key, beat_at_ms)


class Env:
    def __init__(self) -> None:
        self.datums = DatumTable()
        self.state = NamingState(self.datums)
        self.proposer = DirectProposer(self.state)
        self.clock = FakeClock()
        self.beats = LocalBeats()
        self.push = PushTargets()
        self.naming = NamingService(
            self.state,
            self.proposer,
            self.clock,
            self.beats,
            self.push,
            new_namespace_id=lambda: "generated-id",
        )
        self.client: TestClient[web.Request, web.Application]

    def snapshot(self) -> dict[str, Datum]:
        return dict(self.datums.items())

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        """A request the way Nacos clients send it: everything in the query string."""
        return await self.client.request(method, path, params=params or {}, headers=headers)

    async def text(
        self, method: str, path: str, params: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        response = await self.call(method, path, params)
        return response.status, await response.text()

    async def json(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> object:
        response = await self.call(method, path, params, headers=headers)
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        return await response.json()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    environment = Env()
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(environment.naming))
    )
    await client.start_server()
    environment.client = client
    try:
        yield environment
    finally:
        await client.close()


class Members:
    """The member directory of `cluster`: three members, the answering one second by
    address; its readiness is settable."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def servers(self) -> list[ServerInfo]:
        return [
            ServerInfo(ip="10.0.0.20", port=8848),
            ServerInfo(ip="10.0.0.3", port=8848, is_self=True),
            ServerInfo(ip="10.0.0.2", port=8848, state="DOWN"),
        ]

    def readiness(self) -> str | None:
        return self.reason


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Members]]:
    members = Members()
    app = make_app(Env().naming, servers=members)
    app[HEALTH] = members
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, members
    finally:
        await client.close()


async def v2_call(env: Env, method: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    """A Nacos 2.x API request; its status and its JSON `Result`."""
    response = await env.call(method, path, params or {})
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


def v2_ok(data: object) -> tuple[int, dict[str, object]]:
    """What `v2_call` returns for a success carrying `data`."""
    return 200, {"code": 0, "message": "success", "data": data}
