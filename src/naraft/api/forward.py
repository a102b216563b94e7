"""Followers forward what only the leader can do: a request that raised NotLeaderError
with a known leader is replayed, as it came, against the leader's client API.

Nacos 1.x does the same (a non-leader forwards `signalPublish` to the leader). A request
already forwarded once is never forwarded again: it gets 503 with the leader hint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api.errors import Handler
from naraft.errors import OutcomeUnknownError
from naraft.raft.errors import NotLeaderError
from naraft.raft.types import NodeId

logger = logging.getLogger(__name__)

FORWARDED_HEADER: Final = "X-Naraft-Forwarded-By"
LEADER_HEADER: Final = "X-Naraft-Leader"
FORWARD_SESSION: Final = web.AppKey("forward_session", aiohttp.ClientSession)
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
)


def forward_middleware(
    self_id: str, timeout_seconds: float, on_forward: Callable[[], None] = lambda: None
) -> Middleware:
    """Middleware forwarding NotLeaderError requests to the leader (place it innermost)."""

    @web.middleware
    async def forward_to_leader(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotLeaderError as error:
            leader = error.leader_hint
            if leader is None or leader == self_id or FORWARDED_HEADER in request.headers:
                raise
            on_forward()
            return await _forward(request, leader, self_id, timeout_seconds)

    return forward_to_leader


async def _forward(
    request: web.Request, leader: str, self_id: str, timeout_seconds: float
) -> web.StreamResponse:
    session = request.app[FORWARD_SESSION]
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
    headers[FORWARDED_HEADER] = self_id
    url = f"http://{leader}{request.rel_url}"
    try:
        async with session.request(
            request.method,
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as answer:
            payload = await answer.read()
            response = web.Response(status=answer.status, body=payload)
            for name in ("Content-Type",):
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            response.headers[LEADER_HEADER] = leader
            return response
    except aiohttp.ClientConnectorError as error:
        # The connection was never made: the leader did not see the request.
        logger.warning("forwarding %s %s to %s failed: %s", request.method, url, leader, error)
        raise NotLeaderError(NodeId(leader)) from error
    except (aiohttp.ClientError, TimeoutError) as error:
        # The leader may have received (and applied) it before the connection broke.
        logger.warning("forwarding %s %s to %s broke: %s", request.method, url, leader, error)
        raise OutcomeUnknownError(
            f"forwarding to the leader {leader} broke mid-request; "
            "the write may or may not be applied"
        ) from error
