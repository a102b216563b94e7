"""The campaign's TCP proxy: real sockets, a real HTTP server behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from naraft.chaos.proxy import CLIENT, LinkTable, NodeProxy, source_of
from naraft.cluster import free_ports

NODE = "127.0.0.1:1"


@pytest.fixture
async def proxy_url() -> AsyncIterator[tuple[str, LinkTable]]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    upstream, listen = free_ports(2)
    site = web.TCPSite(runner, "127.0.0.1", upstream)
    await site.start()
    links = LinkTable()
    proxy = NodeProxy(NODE, listen_port=listen, upstream_port=upstream, links=links)
    await proxy.start()
    try:
        yield f"http://127.0.0.1:{listen}/", links
    finally:
        await proxy.close()
        await runner.cleanup()


async def get(url: str, sender: str | None, timeout_seconds: float = 5.0) -> str:
    headers = {"X-Naraft-Sender": sender} if sender else {}
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, headers=headers) as answer,
    ):
        return await answer.text()


async def test_a_request_passes_an_uncut_link(proxy_url: tuple[str, LinkTable]) -> None:
    url, _ = proxy_url
    assert await get(url, "127.0.0.1:2") == "ok"


async def test_a_cut_link_is_a_blackhole_until_the_sender_gives_up(
    proxy_url: tuple[str, LinkTable],
) -> None:
    url, links = proxy_url
    links.cut_links([("127.0.0.1:2", NODE)])
    with pytest.raises(TimeoutError):
        await get(url, "127.0.0.1:2", timeout_seconds=0.5)
    assert await get(url, "127.0.0.1:3") == "ok"  # another sender's link is not cut
    links.heal()
    assert await get(url, "127.0.0.1:2") == "ok"


async def test_clients_are_never_cut(proxy_url: tuple[str, LinkTable]) -> None:
    url, links = proxy_url
    links.isolate(NODE, ["127.0.0.1:2", "127.0.0.1:3"])
    assert await get(url, None) == "ok"


def test_a_partition_cuts_both_directions_between_sides_only() -> None:
    links = LinkTable()
    links.partition(["a"], ["b", "c"])
    assert links.cut == {("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")}
    assert not links.is_cut("b", "c")


@pytest.mark.parametrize(
    ("head", "source"),
    [
        pytest.param(b"POST /x HTTP/1.1\r\nX-Naraft-Sender: n1:1\r\n\r\n", "n1:1", id="peer"),
        pytest.param(
            b"PUT /kv HTTP/1.1\r\nx-naraft-forwarded-by: n2:2\r\n\r\n", "n2:2", id="forwarded"
        ),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", CLIENT, id="client"),
        pytest.param(b"X-Naraft-Sender: n1:1\r\n\r\n", CLIENT, id="not-in-the-request-line"),
    ],
)
def test_the_source_is_read_from_the_request_head(head: bytes, source: str) -> None:
    assert source_of(head) == source
