"""A fault-injecting TCP proxy in front of every node's peer address.

Each node runs with its proxy's address as its id (`--id 127.0.0.1:P --listen
127.0.0.1:Q`), so every peer message and every forwarded client request to it passes
through its `NodeProxy`. A connection's source is read from the first request's
`X-Naraft-Sender` (peer RPC) or `X-Naraft-Forwarded-By` (a forwarded write) header; other
connections are clients and are never cut. `LinkTable` holds the cut directed links:
a partition, an isolated node, a bridge or a one-way cut is a set of them.

A cut link is a blackhole, the nastiest mode (docs/fault-campaigns.md): the proxy accepts and
reads, forwards nothing and never answers, so the sender waits out its own timeout. A
connection that ever saw its link cut stays dead after the heal, as a real TCP connection
through a long partition does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Collection, Iterable
from typing import Final

logger = logging.getLogger(__name__)

CLIENT: Final = "client"
MAX_HEAD_BYTES: Final = 64 * 1024
HEAD_TIMEOUT_SECONDS: Final = 30.0
CONNECT_TIMEOUT_SECONDS: Final = 2.0
CHUNK_BYTES: Final = 64 * 1024
_SOURCE_HEADERS: Final = (b"x-naraft-sender:", b"x-naraft-forwarded-by:")


class LinkTable:
    """The directed links (source id, destination id) that are cut, shared by all proxies."""

    def __init__(self) -> None:
        self._cut: set[tuple[str, str]] = set()

    @property
    def cut(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._cut)

    def is_cut(self, source: str, destination: str) -> bool:
        return (source, destination) in self._cut

    def cut_links(self, links: Iterable[tuple[str, str]]) -> None:
        self._cut.update(links)

    def partition(self, *sides: Collection[str]) -> None:
        """Cut every link between different sides (both directions)."""
        for a, b in itertools.permutations(range(len(sides)), 2):
            self._cut.update((x, y) for x in sides[a] for y in sides[b])

    def isolate(self, node: str, others: Iterable[str]) -> None:
        self.partition([node], list(others))

    def heal(self) -> None:
        self._cut.clear()


def source_of(head: bytes) -> str:
    """The node id a request head names as its sender, else `CLIENT`."""
    for line in head.split(b"\r\n")[1:]:
        lowered = line.lower()
        for header in _SOURCE_HEADERS:
            if lowered.startswith(header):
                return line[len(header) :].strip().decode("ascii", "replace")
    return CLIENT


class NodeProxy:
    """Listens on `listen_port` (the node's id) and forwards to `upstream_port` (where the
    node listens), dropping the traffic of cut links. Run it with `start`/`close`."""

    def __init__(
        self, node_id: str, *, listen_port: int, upstream_port: int, links: LinkTable
    ) -> None:
        self.node_id = node_id
        self._listen_port = listen_port
        self._upstream_port = upstream_port
        self._links = links
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far, for reports

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, "127.0.0.1", self._listen_port, reuse_address=True
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass  # either side went away: so does the connection
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
            while b"\r\n\r\n" not in head and len(head) < MAX_HEAD_BYTES:
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    return
                head += chunk
        source = source_of(head)
        if self._links.is_cut(source, self.node_id):
            await _swallow(reader)
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self._upstream_port
                )
        except (OSError, TimeoutError):
            return  # the node is down: the caller sees a reset
        cut = False
        try:
            up_writer.write(head)
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(self._pump(reader, up_writer, source))
                pumps.create_task(self._pump(up_reader, writer, source))
        except* _LinkCutError:
            cut = True
        except* (OSError, asyncio.IncompleteReadError):
            pass  # one side closed: the connection ends
        finally:
            up_writer.transport.abort()
        if cut:
            await _swallow(reader)

    async def _pump(
        self, source_reader: asyncio.StreamReader, sink: asyncio.StreamWriter, source: str
    ) -> None:
        while True:
            chunk = await source_reader.read(CHUNK_BYTES)
            if not chunk:
                raise ConnectionResetError("closed")
            if self._links.is_cut(source, self.node_id):
                raise _LinkCutError(source)
            sink.write(chunk)
            await sink.drain()


class _LinkCutError(Exception):
    """The connection's link was cut while it was open."""


async def _swallow(reader: asyncio.StreamReader) -> None:
    """Read and discard until the other side gives up (a blackhole)."""
    while await reader.read(CHUNK_BYTES):
        pass
