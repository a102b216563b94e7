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
from naraft.api.peer import SignedPoster, signed_route
from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.naming.beats import decode_beats, encode_beats
from naraft.naming.keys import InstanceKey
from naraft.tls import PLAINTEXT, PeerTls

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

    async def receive(body: bytes) -> web.Response:
        try:
            keys = decode_beats(body)
        except InvalidArgumentError as error:
            return plain_error(error, str(error))
        if not receiver.receive_beats(keys):
            return web.Response(status=NOT_LEADER_STATUS, text="not the leader")
        return web.Response(status=204)

    return signed_route(
        BEATS_PATH,
        receive,
        secret,
        self_id=self_id,
        members=members,
        max_body_bytes=MAX_BEATS_BODY_BYTES,
        what="beats",
        cluster_id=cluster_id,
    )


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
        self._poster = SignedPoster(
            session,
            secret,
            path=BEATS_PATH,
            self_id=self_id,
            what="beats",
            cluster_id=cluster_id,
            tls=tls,
        )

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        try:
            async with self._poster.post(leader, encode_beats(keys)) as answer:
                if answer.status != 204:
                    raise UnavailableError(f"leader {leader} answered {answer.status}")
        except aiohttp.ClientError as error:
            raise UnavailableError(f"leader {leader} unreachable: {error}") from error
