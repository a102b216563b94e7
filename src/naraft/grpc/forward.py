"""`POST /naraft/v1/grpc`: a 2.x write a follower forwards to the leader.

A naraft peer route (not Nacos's), signed like the Raft messages and the beat batches
(`naraft.transport.signing`): only a member may send it, a replay is refused, and the body
is bounded by the peer limit, not the client API's. The body is JSON: the request type,
its decoded body, the username the follower verified (the token is not sent on), and the
connection it came on (`id`, `owner`, `clientIp`, `app`). The leader runs the route's write
step (`GrpcServer.run_forwarded`) and answers 200 with the answer body; a node that is not
the leader answers it as a refusal inside that body, so that the follower always has
something to tell its client. `HttpLeaderLink` is the follower's side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from naraft.api.peer import SignedPoster, signed_route
from naraft.errors import OutcomeUnknownError, UnavailableError
from naraft.grpc.server import LeaderRefusedError
from naraft.tls import PLAINTEXT, PeerTls

logger = logging.getLogger(__name__)

GRPC_FORWARD_PATH: Final = "/naraft/v1/grpc"
MAX_FORWARD_BODY_BYTES: Final = 32 * 1024 * 1024  # a peer limit: above the largest config

Runner = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def grpc_forward_routes(
    run: Runner,
    secret: bytes | None,
    *,
    self_id: str,
    members: Collection[str],
    cluster_id: str | None = None,
) -> list[web.RouteDef]:
    """The leader's end; none without a cluster secret (a standalone node has no peers)."""

    async def receive(body: bytes) -> web.Response:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="grpc forward: the body is not JSON")
        if not isinstance(message, dict):
            return web.Response(status=400, text="grpc forward: the body is not an object")
        answer = await run(message)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    return signed_route(
        GRPC_FORWARD_PATH,
        receive,
        secret,
        self_id=self_id,
        members=members,
        max_body_bytes=MAX_FORWARD_BODY_BYTES,
        what="grpc forward",
        cluster_id=cluster_id,
    )


class HttpLeaderLink:
    """Posts a forwarded write to `http(s)://<leader>/naraft/v1/grpc` (a LeaderLink)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secret: bytes | None,
        *,
        self_id: str,
        timeout_seconds: float,
        cluster_id: str | None = None,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        self._poster = SignedPoster(
            session,
            secret,
            path=GRPC_FORWARD_PATH,
            self_id=self_id,
            what="a forwarded write",
            cluster_id=cluster_id,
            tls=tls,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    async def forward(self, leader: str, message: Mapping[str, Any]) -> dict[str, Any]:
        try:
            async with self._poster.post(leader, orjson.dumps(message)) as answer:
                if answer.status != 200:
                    text = (await answer.text())[:200]
                    raise UnavailableError(f"leader {leader} answered {answer.status}: {text}")
                loaded = orjson.loads(await answer.read())
        except aiohttp.ClientConnectorError as error:
            logger.warning("forwarding %s to %s failed: %s", message.get("type"), leader, error)
            raise LeaderRefusedError(f"leader {leader} unreachable: {error}") from error
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            raise OutcomeUnknownError(
                f"forwarding to the leader {leader} broke mid-request; "
                "the write may or may not be applied"
            ) from error
        if not isinstance(loaded, dict):
            raise OutcomeUnknownError(f"leader {leader} answered a forwarded write oddly")
        return loaded
