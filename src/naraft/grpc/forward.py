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

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from naraft.api.errors import plain_error
from naraft.errors import OutcomeUnknownError, UnavailableError
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.codec import BodyTooLargeError
from naraft.transport.server import read_limited
from naraft.transport.signing import PeerSigner, PeerVerifier, SignatureError, default_cluster_id

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
    if secret is None:
        return []
    verifier = PeerVerifier(
        secret,
        cluster_id=cluster_id if cluster_id is not None else default_cluster_id(secret),
        self_id=self_id,
        members=members,
    )

    async def receive(request: web.Request) -> web.Response:
        try:
            claim = verifier.claim(request.method, request.raw_path, request.headers)
            body = await read_limited(request, MAX_FORWARD_BODY_BYTES)
            verifier.admit(claim, body)
        except SignatureError as error:
            return plain_error(error, f"cluster signature: {error}")
        except BodyTooLargeError as error:
            return plain_error(error, f"grpc forward: {error}")
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="grpc forward: the body is not JSON")
        if not isinstance(message, dict):
            return web.Response(status=400, text="grpc forward: the body is not an object")
        answer = await run(message)
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    return [web.post(GRPC_FORWARD_PATH, receive)]


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
        self._session = session
        self._secret = secret
        self._tls = tls
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._signer = PeerSigner(
            secret,
            cluster_id=cluster_id if cluster_id is not None else default_cluster_id(secret),
            self_id=self_id,
        )

    async def forward(self, leader: str, message: Mapping[str, Any]) -> dict[str, Any]:
        if self._secret is None:
            raise UnavailableError("no cluster secret to sign a forwarded write with")
        body = orjson.dumps(message)
        headers = {
            **self._signer.headers("POST", GRPC_FORWARD_PATH, leader, body),
            "Content-Type": "application/json",
        }
        try:
            async with self._session.post(
                f"{self._tls.url(leader)}{GRPC_FORWARD_PATH}",
                data=body,
                headers=headers,
                timeout=self._timeout,
                ssl=self._tls.ssl,
                server_hostname=self._tls.server_hostname,
            ) as answer:
                if answer.status != 200:
                    text = (await answer.text())[:200]
                    raise UnavailableError(f"leader {leader} answered {answer.status}: {text}")
                loaded = orjson.loads(await answer.read())
        except aiohttp.ClientConnectorError as error:
            raise UnavailableError(f"leader {leader} unreachable: {error}") from error
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            raise OutcomeUnknownError(
                f"forwarding to the leader {leader} broke mid-request; "
                "the write may or may not be applied"
            ) from error
        if not isinstance(loaded, dict):
            raise OutcomeUnknownError(f"leader {leader} answered a forwarded write oddly")
        return loaded
