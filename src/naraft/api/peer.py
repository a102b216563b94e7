"""Signed peer routes other than the Raft messages: one receiving side, one sending side.

A naraft peer route (`/naraft/v1/beats`, `/naraft/v1/grpc`) is signed like the Raft
messages (`naraft.transport.signing`: method, path, cluster id, sender, recipient, time,
nonce, body; a replay is refused). Only a member may send it, and its body is bounded by the
route's own peer limit, read by the route itself, never by the client API's `client_max_size`.

- `signed_route` checks the signature and the size and hands the body to the route's
  handler; a bad signature or an oversized body is answered here, the same way for every
  route.
- `SignedPoster` signs a body for one route and posts it to the leader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from naraft.api.errors import plain_error
from naraft.errors import UnavailableError
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.codec import BodyTooLargeError
from naraft.transport.server import read_limited
from naraft.transport.signing import PeerSigner, PeerVerifier, SignatureError, default_cluster_id

BodyHandler = Callable[[bytes], Awaitable[web.Response]]


def signed_route(
    path: str,
    handle: BodyHandler,
    secret: bytes | None,
    *,
    self_id: str,
    members: Collection[str],
    max_body_bytes: int,
    what: str,
    cluster_id: str | None = None,
) -> list[web.RouteDef]:
    """`POST path`, served by `handle(body)` once the body is signed by one of `members` for
    `self_id` in `cluster_id` (default: derived from the secret) and at most `max_body_bytes`.

    None without a cluster secret: a standalone node has no peers. `what` names the route in
    the refusals ("beats: ...")."""
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
            body = await read_limited(request, max_body_bytes)
            verifier.admit(claim, body)
        except SignatureError as error:
            return plain_error(error, f"cluster signature: {error}")
        except BodyTooLargeError as error:
            return plain_error(error, f"{what}: {error}")
        return await handle(body)

    return [web.post(path, receive)]


class SignedPoster:
    """Signs bodies for `path` as `self_id` and posts them to a leader's peer address
    (within `timeout`, default: the session's)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secret: bytes | None,
        *,
        path: str,
        self_id: str,
        what: str,
        cluster_id: str | None = None,
        tls: PeerTls = PLAINTEXT,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self._session = session
        self._timeout = timeout if timeout is not None else session.timeout
        self._secret = secret
        self._path = path
        self._what = what
        self._tls = tls
        self._signer = PeerSigner(
            secret,
            cluster_id=cluster_id if cluster_id is not None else default_cluster_id(secret),
            self_id=self_id,
        )

    @asynccontextmanager
    async def post(self, leader: str, body: bytes) -> AsyncIterator[aiohttp.ClientResponse]:
        """The leader's answer to the signed `body`. Raises `UnavailableError` when there is
        no secret to sign with; aiohttp's errors pass through for the caller to judge."""
        if self._secret is None:
            raise UnavailableError(f"no cluster secret to sign {self._what} with")
        headers = {
            **self._signer.headers("POST", self._path, leader, body),
            "Content-Type": "application/json",
        }
        async with self._session.post(
            f"{self._tls.url(leader)}{self._path}",
            data=body,
            headers=headers,
            timeout=self._timeout,
            ssl=self._tls.ssl,
            server_hostname=self._tls.server_hostname,
        ) as answer:
            yield answer
