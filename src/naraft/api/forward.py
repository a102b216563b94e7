"""Followers forward what only the leader can do: a request that raised NotLeaderError
with a known leader is replayed, as it came, against the leader's client API.

Nacos 1.x does the same (a non-leader forwards `signalPublish` to the leader). A request
already forwarded once is never forwarded again: it gets 503 with the leader hint.

When the leader refuses the connection (its process is gone, so it never saw the request),
the follower waits a little for the cluster to elect a new leader and tries once more,
there or (if this node won) locally. A client then sees one slow answer instead of an
error for every leader crash. A forward that broke after the connection was made is never
retried: the leader may have applied it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from naraft.api.access import identity_headers
from naraft.api.errors import Handler
from naraft.errors import OutcomeUnknownError
from naraft.raft.errors import HandedOverError, NotLeaderError
from naraft.raft.types import NodeId
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.signing import SIGNED_HEADERS, PeerSigner

logger = logging.getLogger(__name__)

FORWARDED_HEADER: Final = "X-Naraft-Forwarded-By"
LEADER_HEADER: Final = "X-Naraft-Leader"
FORWARD_SESSION: Final = web.AppKey("forward_session", aiohttp.ClientSession)
FORWARD_TLS: Final = web.AppKey("forward_tls", PeerTls)
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}
)


_SIGNED: Final = frozenset(name.lower() for name in SIGNED_HEADERS)
_ANSWER_HEADERS: Final = (
    "Content-Type",
    # a config read's (naraft.api.v1.configs): clients compare the MD5 and type
    "Content-MD5",
    "Config-Type",
    "Last-Modified",
    # a config export's zip (naraft.api.v1.configs): browsers save it under this name
    "Content-Disposition",
    "Cache-Control",
    "Pragma",
    "Expires",
    # the console's answer to a form (naraft.api.console): 303 to the page that shows it
    "Location",
)
"""The leader's answer headers a forwarded request passes on to its client."""


NewLeaderWait = Callable[[str, float], Awaitable[str | None]]
"""`wait(old, seconds)`: the first leader other than `old` known within `seconds`, or None."""


class _LeaderRefusedError(Exception):
    """The connection to the leader was refused: it never saw the request."""

    def __init__(self, leader: str) -> None:
        super().__init__(leader)
        self.leader = leader


def forward_middleware(
    self_id: str,
    timeout_seconds: float,
    on_forward: Callable[[], None] = lambda: None,
    *,
    wait_new_leader: NewLeaderWait | None = None,
    new_leader_seconds: float = 3.0,
    signer: PeerSigner | None = None,
) -> Middleware:
    """Middleware forwarding NotLeaderError requests to the leader (place it innermost).

    With `wait_new_leader`, a request whose leader refused the connection is tried once more
    with the next leader (waiting up to `new_leader_seconds` for one). With `signer`, a
    request the access middleware identified carries that identity to the leader, signed
    (`naraft.api.access.identity_headers`)."""

    @web.middleware
    async def forward_to_leader(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except NotLeaderError as error:
            leader = error.leader_hint
            if leader is None or leader == self_id or not _may_forward(request, error):
                raise
            on_forward()
            try:
                return await _forward(request, leader, self_id, timeout_seconds, signer)
            except _LeaderRefusedError as refused:
                if wait_new_leader is None:
                    raise NotLeaderError(NodeId(leader)) from refused
                new_leader = await wait_new_leader(leader, new_leader_seconds)
                if new_leader is None:
                    raise NotLeaderError(NodeId(leader)) from refused
            logger.info(
                "retrying %s %s with the new leader %s", request.method, request.path, new_leader
            )
            if new_leader == self_id:
                return await handler(request)  # NotLeaderError again: the error middleware's 503
            try:
                return await _forward(request, new_leader, self_id, timeout_seconds, signer)
            except _LeaderRefusedError as refused:
                raise NotLeaderError(NodeId(new_leader)) from refused

    return forward_to_leader


def _may_forward(request: web.Request, error: NotLeaderError) -> bool:
    """A request is forwarded once; a second time only when the leader it reached handed
    over while it waited (it appended nothing, and the new leader is known)."""
    forwarded_by = request.headers.get(FORWARDED_HEADER)
    if forwarded_by is None:
        return True
    return isinstance(error, HandedOverError) and "," not in forwarded_by


async def _forward(
    request: web.Request,
    leader: str,
    self_id: str,
    timeout_seconds: float,
    signer: PeerSigner | None,
) -> web.StreamResponse:
    session = request.app[FORWARD_SESSION]
    body = await request.read()
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() not in _HOP_BY_HOP and k.lower() not in _SIGNED
    }
    earlier = request.headers.get(FORWARDED_HEADER)
    headers[FORWARDED_HEADER] = self_id if earlier is None else f"{earlier},{self_id}"
    headers.update(identity_headers(request, signer, leader, body))
    tls = request.app.get(FORWARD_TLS, PLAINTEXT)
    # the path exactly as it came: the signature covers it, byte for byte
    url = URL(f"{tls.url(leader)}{request.raw_path}", encoded=True)
    try:
        async with session.request(
            request.method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,  # the client follows the leader's redirect, not us
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            ssl=tls.ssl,
            server_hostname=tls.server_hostname,
        ) as answer:
            payload = await answer.read()
            response = web.Response(status=answer.status, body=payload)
            for name in _ANSWER_HEADERS:
                if name in answer.headers:
                    response.headers[name] = answer.headers[name]
            response.headers[LEADER_HEADER] = leader
            return response
    except aiohttp.ClientConnectorError as error:
        # The connection was never made: the leader did not see the request.
        logger.warning("forwarding %s %s to %s failed: %s", request.method, url, leader, error)
        raise _LeaderRefusedError(leader) from error
    except (aiohttp.ClientError, TimeoutError) as error:
        # The leader may have received (and applied) it before the connection broke.
        logger.warning("forwarding %s %s to %s broke: %s", request.method, url, leader, error)
        raise OutcomeUnknownError(
            f"forwarding to the leader {leader} broke mid-request; "
            "the write may or may not be applied"
        ) from error
