"""The signed peer route helper (`naraft.api.peer`) end to end over a real socket: what a
member signs reaches the handler once; an outsider, a replay, a body signed for another
route and a body past the route's peer limit are refused before the handler sees them."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from naraft.api.peer import SignedPoster, signed_route
from naraft.errors import UnavailableError
from naraft.transport.signing import PeerSigner, default_cluster_id

SECRET = b"s" * 32
PATH = "/naraft/v1/test-route"
LIMIT = 1024


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A node serving PATH for members n2 and n3; its address (its id) and the bodies its
    handler saw."""
    seen: list[bytes] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    self_id = f"127.0.0.1:{port}"

    async def handle(body: bytes) -> web.Response:
        seen.append(body)
        return web.Response(status=204)

    app = web.Application()
    app.add_routes(
        signed_route(
            PATH,
            handle,
            SECRET,
            self_id=self_id,
            members=("n2", "n3"),
            max_body_bytes=LIMIT,
            what="test route",
        )
    )
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield self_id, seen
    finally:
        await server.close()


def poster(
    session: aiohttp.ClientSession, sender: str, secret: bytes | None = SECRET, path: str = PATH
) -> SignedPoster:
    return SignedPoster(session, secret, path=path, self_id=sender, what="tests")


def signed_headers(leader: str, path: str, body: bytes) -> dict[str, str]:
    """Member n2's signature headers for `body` sent to `path` on `leader`."""
    signer = PeerSigner(SECRET, cluster_id=default_cluster_id(SECRET), self_id="n2")
    return signer.headers("POST", path, leader, body)


async def raw_post(
    session: aiohttp.ClientSession, leader: str, headers: dict[str, str], body: bytes
) -> int:
    """POST `body` to the test route with these headers as they are; the status."""
    async with session.post(f"http://{leader}{PATH}", data=body, headers=headers) as answer:
        return answer.status


async def status_of(post: SignedPoster, leader: str, body: bytes) -> tuple[int, str]:
    async with post.post(leader, body) as answer:
        return answer.status, await answer.text()


async def test_a_member_reaches_the_handler_and_an_outsider_does_not(
    served: tuple[str, list[bytes]],
) -> None:
    leader, seen = served
    async with aiohttp.ClientSession() as session:
        assert await status_of(poster(session, "n2"), leader, b"{}") == (204, "")
        status, text = await status_of(poster(session, "n9"), leader, b"{}")
        assert status == 403
        assert text.startswith("cluster signature:"), text
        other_secret = poster(session, "n3", secret=b"t" * 32)
        assert (await status_of(other_secret, leader, b"{}"))[0] == 403
    assert seen == [b"{}"]


async def test_an_oversized_body_is_refused_with_the_route_named(
    served: tuple[str, list[bytes]],
) -> None:
    leader, seen = served
    async with aiohttp.ClientSession() as session:
        status, text = await status_of(poster(session, "n2"), leader, b"x" * (LIMIT + 1))
        assert status == 413
        assert text.startswith("test route:"), text
        assert (await status_of(poster(session, "n2"), leader, b"x" * LIMIT))[0] == 204
    assert seen == [b"x" * LIMIT]


async def test_a_replayed_request_is_taken_once(served: tuple[str, list[bytes]]) -> None:
    leader, seen = served
    headers = signed_headers(leader, PATH, b"once")
    async with aiohttp.ClientSession() as session:
        for expected in (204, 403):
            assert await raw_post(session, leader, headers, b"once") == expected
    assert seen == [b"once"]


async def test_a_body_signed_for_another_route_is_refused(
    served: tuple[str, list[bytes]],
) -> None:
    leader, seen = served
    headers = signed_headers(leader, "/naraft/v1/elsewhere", b"{}")
    async with aiohttp.ClientSession() as session:
        assert await raw_post(session, leader, headers, b"{}") == 403
    assert seen == []


async def test_without_a_secret_there_is_no_route_and_nothing_is_sent() -> None:
    async def handle(body: bytes) -> web.Response:
        raise AssertionError("unreachable")

    assert (
        signed_route(
            PATH, handle, None, self_id="n1", members=("n2",), max_body_bytes=LIMIT, what="t"
        )
        == []
    )
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UnavailableError, match="no cluster secret to sign tests with"):
            await status_of(poster(session, "n2", secret=None), "127.0.0.1:1", b"{}")
