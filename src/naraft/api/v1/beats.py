"""`POST /naraft/v1/beats`: a follower's batch of client beats, taken by the leader.

A naraft peer route (not Nacos's): the body is `naraft.naming.beats.encode_beats`, signed
like the Raft messages (`naraft.transport.signing`: method, path, cluster id, sender,
recipient, time, nonce, body; a replay is refused). The leader records every key in its
last-beat table and answers 204; a node that is not the leader answers 503 and the follower
drops the batch (its clients beat again). `HttpBeatSender` is the follower's side of the same
route. The body is bounded by the peer limit `MAX_BEATS_BODY_BYTES`, not the client API's.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final, Protocol

import aiohttp
from aiohttp import web

from naraft.api.errors import NOT_LEADER_STATUS, plain_error
from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.naming.beats import decode_beats, encode_beats
from naraft.naming.keys import InstanceKey
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.codec import BodyTooLargeError
from naraft.transport.server import read_limited
from naraft.transport.signing import PeerSigner, PeerVerifier, SignatureError, default_cluster_id

BEATS_PATH: Final = "/naraft/v1/beats"
MAX_BEATS_BODY_BYTES: Final = 16 * 1024 * 1024  # a peer limit: 4096 keys of the longest names


class BeatReceiver(Protocol):
    def receive_beats(self, keys: Sequence[InstanceKey]) -> bool:
        """Record beats of `keys` now; False if this node is not the leader."""
        ...


def beat_routes(
    receiver: BeatReceiver,
    secret: bytes | None,
    *,
    self_id: str,
    members: Collection[str],
    cluster_id: str | None = None,
) -> list[web.RouteDef]:
    """The leader's end of beat forwarding; none without a cluster secret (standalone).

    `members` may sign batches (for `self_id`, in `cluster_id`: default from the secret)."""
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
            body = await read_limited(request, MAX_BEATS_BODY_BYTES)
            verifier.admit(claim, body)
        except SignatureError as error:
            return plain_error(error, f"cluster signature: {error}")
        except BodyTooLargeError as error:
            return plain_error(error, f"beats: {error}")
        try:
            keys = decode_beats(body)
        except InvalidArgumentError as error:
            return plain_error(error, str(error))
        if not receiver.receive_beats(keys):
            return web.Response(status=NOT_LEADER_STATUS, text="not the leader")
        return web.Response(status=204)

    return [web.post(BEATS_PATH, receive)]


class HttpBeatSender:
    """Posts a batch to `http(s)://<leader>/naraft/v1/beats` (satisfies naming's BeatSender)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        secret: bytes | None,
        *,
        self_id: str,
        cluster_id: str | None = None,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        self._session = session
        self._secret = secret
        self._tls = tls
        self._signer = PeerSigner(
            secret,
            cluster_id=cluster_id if cluster_id is not None else default_cluster_id(secret),
            self_id=self_id,
        )

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        if self._secret is None:
            raise UnavailableError("no cluster secret to sign beats with")
        body = encode_beats(keys)
        headers = {
            **self._signer.headers("POST", BEATS_PATH, leader, body),
            "Content-Type": "application/json",
        }
        try:
            async with self._session.post(
                f"{self._tls.url(leader)}{BEATS_PATH}",
                data=body,
                headers=headers,
                ssl=self._tls.ssl,
                server_hostname=self._tls.server_hostname,
            ) as answer:
                if answer.status != 204:
                    raise UnavailableError(f"leader {leader} answered {answer.status}")
        except aiohttp.ClientError as error:
            raise UnavailableError(f"leader {leader} unreachable: {error}") from error
