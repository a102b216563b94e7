"""`POST /naraft/v1/beats`: a follower's batch of client beats, taken by the leader.

A naraft peer route (not Nacos's): the body is `naraft.naming.beats.encode_beats`, signed
with the cluster secret like the Raft messages (`X-Naraft-Signature`). The leader records
every key in its last-beat table and answers 204; a node that is not the leader answers
503 and the follower drops the batch (its clients beat again). `HttpBeatSender` is the
follower's side of the same route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

import aiohttp
from aiohttp import web

from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.naming.beats import decode_beats, encode_beats
from naraft.naming.keys import InstanceKey
from naraft.transport import auth

BEATS_PATH: Final = "/naraft/v1/beats"


class BeatReceiver(Protocol):
    def receive_beats(self, keys: Sequence[InstanceKey]) -> bool:
        """Record beats of `keys` now; False if this node is not the leader."""
        ...


def beat_routes(receiver: BeatReceiver, secret: bytes | None) -> list[web.RouteDef]:
    """The leader's end of beat forwarding; none without a cluster secret (standalone)."""
    if secret is None:
        return []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not auth.verify(secret, body, request.headers.get(auth.SIGNATURE_HEADER)):
            return web.Response(status=403, text="bad cluster signature")
        try:
            keys = decode_beats(body)
        except InvalidArgumentError as error:
            return web.Response(status=400, text=str(error))
        if not receiver.receive_beats(keys):
            return web.Response(status=503, text="not the leader")
        return web.Response(status=204)

    return [web.post(BEATS_PATH, receive)]


class HttpBeatSender:
    """Posts a batch to `http://<leader>/naraft/v1/beats` (satisfies naming's BeatSender)."""

    def __init__(self, session: aiohttp.ClientSession, secret: bytes | None) -> None:
        self._session = session
        self._secret = secret

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        if self._secret is None:
            raise UnavailableError("no cluster secret to sign beats with")
        body = encode_beats(keys)
        headers = {
            auth.SIGNATURE_HEADER: auth.sign(self._secret, body),
            "Content-Type": "application/json",
        }
        try:
            async with self._session.post(
                f"http://{leader}{BEATS_PATH}", data=body, headers=headers
            ) as answer:
                if answer.status != 204:
                    raise UnavailableError(f"leader {leader} answered {answer.status}")
        except aiohttp.ClientError as error:
            raise UnavailableError(f"leader {leader} unreachable: {error}") from error
