"""Config long polls held out of aiohttp (`naraft.api.edge.HeldConnection`), in process:
the config API over `GuardedSite` on a loopback socket, as `naraft server` serves it, and
clients speaking raw HTTP/1.x so that every byte of the answer is seen. Every test runs on
asyncio's loop and on uvloop's (the server's), in plaintext and over TLS: the hand-over
swaps the protocol under each of their transports."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
import uvloop
from aiohttp import web
from tests.api.conftest import guarded_site
from tests.api.test_configs import LISTENER, Env, listening

from naraft.api import make_app
from naraft.api.app import is_peer_request
from naraft.api.edge import MAX_HEADER_BYTES, EdgeLimits, GuardedSite
from naraft.api.observe import AccessLog, observe_middleware
from naraft.certs import issue, new_ca, write_private
from naraft.configs import validate
from naraft.tls import TlsSettings, server_context

BOUND = 5.0  # seconds any awaited condition may take


@dataclass
class Node:
    env: Env
    site: GuardedSite
    runner: web.AppRunner
    port: int
    log: io.StringIO
    access: AccessLog
    tls: Tls | None
    clients: list[Client] = field(default_factory=list)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=None if self.tls is None else self.tls.client
        )
        client = Client(reader, writer)
        self.clients.append(client)
        return client

    def logged(self) -> str:
        self.access.flush()
        return self.log.getvalue()


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = new_ca()
    leaf = issue(ca, ("127.0.0.1",))
    files = {"ca": root / "ca.pem", "cert": root / "node.pem", "key": root / "node.key"}
    for name, data in (("ca", ca.cert_pem), ("cert", leaf.cert_pem), ("key", leaf.key_pem)):
        write_private(files[name], data)
    return files


@pytest.fixture(params=["plain", "tls"])
def tls(request: pytest.FixtureRequest, tls_files: dict[str, Path]) -> Tls | None:
    if request.param == "plain":
        return None
    server = server_context(TlsSettings(cert_file=tls_files["cert"], key_file=tls_files["key"]))
    assert server is not None
    return Tls(server, ssl.create_default_context(cafile=tls_files["ca"]))


@pytest.fixture
async def node(tls: Tls | None) -> AsyncIterator[Node]:
    env = Env()
    log = io.StringIO()
    access = AccessLog(log, json_lines=False)
    observe = observe_middleware(None, access_log=access, is_peer=is_peer_request)
    limits = EdgeLimits(
        header_timeout_seconds=5, body_timeout_seconds=5, max_clients=16, max_peers=4
    )
    app = make_app(env.naming, configs=env.api, observe=observe)
    async with guarded_site(
        app, limits, idle_timeout_seconds=30, ssl_context=None if tls is None else tls.server
    ) as guarded:
        served = Node(env, guarded.site, guarded.runner, guarded.port, log, access, tls)
        try:
            yield served
        finally:
            for client in served.clients:
                client.close()


async def until(condition: Callable[[], bool]) -> None:
    """Until `condition` holds (the server runs on this loop), at most `BOUND` seconds."""
    async with asyncio.timeout(BOUND):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class Client:
    """One raw HTTP/1.x connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(
        self,
        method: str,
        target: str,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        version: str = "1.1",
    ) -> None:
        body = urlencode(form or {}).encode()
        lines = [f"{method} {target} HTTP/{version}", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if form is not None:
            lines.append("Content-Type: application/x-www-form-urlencoded")
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def poll(
        self,
        probe: str,
        timeout_ms: int = 30_000,
        version: str = "1.1",
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = {"Long-Pulling-Timeout": str(timeout_ms), **(headers or {})}
        self.send("POST", LISTENER, {"Listening-Configs": probe}, headers, version)

    async def answer(self) -> tuple[str, dict[str, str], bytes]:
        """Status line, headers (lower-cased names), body (by Content-Length)."""
        async with asyncio.timeout(BOUND):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status, *lines = head.decode("latin-1").strip().split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def closed_by_server(self) -> bool:
        async with asyncio.timeout(BOUND):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


def unchanged_probe(node: Node) -> str:
    """A poll on `watched` that the node holds: the MD5 it has ("" when absent)."""
    key = validate.config_key("watched", "DEFAULT_GROUP", "")
    return listening(("watched", "DEFAULT_GROUP", node.env.state.md5_of(key)))


async def published(node: Node, content: str) -> None:
    client = await node.connect()
    form = {"dataId": "watched", "group": "DEFAULT_GROUP", "content": content}
    client.send("POST", "/nacos/v1/cs/configs", form)
    status, _, body = await client.answer()
    assert (status, body) == ("HTTP/1.1 200 OK", b"true")
    client.close()


async def test_a_waiting_poll_leaves_aiohttp_and_its_connection_serves_on(node: Node) -> None:
    await published(node, "v1")
    client = await node.connect()
    sent = time.perf_counter()
    client.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 1)
    assert len(node.site.gate.held()) == 1
    server = node.runner.server
    assert server is not None
    await until(lambda: not server.connections)  # aiohttp forgot it
    await asyncio.sleep(0.2)  # a hold long enough to tell apart in the access log
    await published(node, "v2")
    status, headers, body = await client.answer()
    answered_ms = (time.perf_counter() - sent) * 1000
    assert status == "HTTP/1.1 200 OK"
    assert body == b"watched%02DEFAULT_GROUP%01\n"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache,no-store"
    assert "connection" not in headers  # HTTP/1.1: kept alive
    assert node.env.hub.held == 0
    assert not node.site.gate.held()
    # the same connection, given back to aiohttp, serves the next request
    client.send("GET", "/nacos/v1/cs/configs?dataId=watched&group=DEFAULT_GROUP")
    assert (await client.answer())[::2] == ("HTTP/1.1 200 OK", b"v2")
    client.close()
    lines = [line for line in node.logged().splitlines() if "/listener" in line]
    assert len(lines) == 1  # logged once, when answered, with the time it was held
    status_size_ms = lines[0].split('" ', 1)[1].split()[:3]
    assert status_size_ms[:2] == ["200", str(len(body))]
    assert 200 <= float(status_size_ms[2].removesuffix("ms")) <= answered_ms


async def test_a_client_that_leaves_frees_its_poll_and_its_slot(node: Node) -> None:
    client = await node.connect()
    client.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 1)
    client.close()
    await until(lambda: node.env.hub.held == 0 and not node.site.gate.held())
    await until(lambda: " 499 " in node.logged())


async def test_http10_polls_are_answered_then_closed(node: Node) -> None:
    client = await node.connect()
    client.poll(unchanged_probe(node), timeout_ms=100, version="1.0")  # held 0.2 s (Env)
    await until(lambda: node.env.hub.held == 1)
    status, headers, body = await client.answer()
    assert (status, body) == ("HTTP/1.0 200 OK", b"")
    assert headers["connection"] == "close"
    assert await client.closed_by_server()
    await until(lambda: not node.site.gate.held())


async def test_a_keep_alive_http10_poll_is_kept_alive(node: Node) -> None:
    client = await node.connect()
    client.poll(
        unchanged_probe(node), timeout_ms=100, version="1.0", headers={"Connection": "keep-alive"}
    )
    status, headers, _ = await client.answer()
    assert status == "HTTP/1.0 200 OK"
    assert headers["connection"] == "keep-alive"
    client.send("GET", "/nacos/v1/cs/configs?dataId=absent&group=G", version="1.0")
    assert (await client.answer())[0] == "HTTP/1.0 404 Not Found"
    client.close()


async def test_stopping_answers_held_polls_empty_then_closes_what_is_left(node: Node) -> None:
    first, second = await node.connect(), await node.connect()
    first.poll(unchanged_probe(node))
    second.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 2)
    node.env.hub.close()  # what a stopping node does first
    for client in (first, second):
        status, _, body = await client.answer()
        assert (status, body) == ("HTTP/1.1 200 OK", b"")
    assert node.env.hub.held == 0
    third = await node.connect()
    third.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 1)
    await node.site.stop()
    assert await third.closed_by_server()
    await until(lambda: node.env.hub.held == 0)


async def test_a_poll_over_the_limit_stays_in_aiohttp_and_is_refused(node: Node) -> None:
    held = [await node.connect() for _ in range(2)]  # the Env's limit
    for client in held:
        client.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 2)
    refused = await node.connect()
    refused.poll(unchanged_probe(node))
    status, _, body = await refused.answer()  # after the 2 s penalty
    assert status == "HTTP/1.1 503 Service Unavailable"
    assert b"config-max-polls" in body
    assert len(node.site.gate.held()) == 2


async def test_a_client_that_floods_its_held_poll_is_closed(node: Node) -> None:
    client = await node.connect()
    client.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 1)
    client.writer.write(b"x" * (MAX_HEADER_BYTES // 2))
    await client.writer.drain()
    await until(lambda: len(node.site.gate.held()) == 1)  # kept: under the header limit
    client.writer.write(b"x" * (MAX_HEADER_BYTES // 2 + 1))
    assert await client.closed_by_server()
    await until(lambda: node.env.hub.held == 0 and not node.site.gate.held())


async def test_a_request_sent_while_the_poll_waits_is_served_after_its_answer(
    node: Node,
) -> None:
    client = await node.connect()
    client.poll(unchanged_probe(node))
    await until(lambda: node.env.hub.held == 1)
    client.send("GET", "/nacos/v1/cs/configs?dataId=watched&group=DEFAULT_GROUP")  # pipelined
    await published(node, "v1")
    status, _, body = await client.answer()
    assert (status, body) == ("HTTP/1.1 200 OK", b"watched%02DEFAULT_GROUP%01\n")
    assert (await client.answer())[::2] == ("HTTP/1.1 200 OK", b"v1")
