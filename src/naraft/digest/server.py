"""The serving side of digest sync: the leader freezes its applied state and serves it.

`POST digest` copies the leader's key -> datum map and key -> hash map in one go (the event
loop is single-threaded and the replica's apply never awaits, so the copy is the state at
exactly the applied index). Datums are immutable, so the copy costs one dict per map, not
the values. The session then answers digest chunks and datum batches from that copy while
writes keep flowing. Sessions expire after `SESSION_IDLE_SECONDS` without a request; at most
`MAX_SESSIONS` live at once (the oldest goes first). A session at the current applied index
is shared by every follower that asks.

`POST checksum` is the receiving end of the leader's periodic checksum report; it hands
the report to `on_checksum` (the follower's verifier).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final, Protocol

import orjson
from aiohttp import web

from naraft.digest.checksum import StateChecksum
from naraft.digest.protocol import (
    CHECKSUM_PATH,
    DATUMS_PATH,
    DEFAULT_CHUNK_KEYS,
    DIGEST_PATH,
    MAX_BATCH_KEYS,
    SENDER_HEADER,
    encode_datums,
    encode_digest_chunk,
    verify_request,
)
from naraft.raft import NodeId, SnapshotMeta
from naraft.state.datums import Datum, DatumTable

logger = logging.getLogger(__name__)

SESSION_IDLE_SECONDS: Final = 60.0
MAX_SESSIONS: Final = 4
MAX_REQUEST_BYTES: Final = 4 << 20


class LeaderView(Protocol):
    """What the digest server needs of the replica."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def leader(self) -> NodeId | None: ...

    @property
    def applied(self) -> SnapshotMeta: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecksumReport:
    """The leader's state checksum at its applied `index`."""

    leader: NodeId
    term: int
    index: int
    checksum: int


@dataclass(slots=True)
class _Session:
    id: str
    point: SnapshotMeta
    datums: dict[str, Datum]
    hashes: dict[str, int]
    keys: list[str]
    checksum: int
    last_used: float


class DigestServer:
    """Sessions of frozen applied state, and the routes that serve them."""

    def __init__(
        self,
        *,
        replica: LeaderView,
        datums: DatumTable,
        checksum: StateChecksum,
        secret: bytes | None,
        members: Collection[str],
        on_checksum: Callable[[ChecksumReport], None],
        chunk_keys: int = DEFAULT_CHUNK_KEYS,
    ) -> None:
        self._replica = replica
        self._datums = datums
        self._checksum = checksum
        self._secret = secret
        self._members = frozenset(members)
        self._on_checksum = on_checksum
        self._chunk_keys = chunk_keys
        self._sessions: dict[str, _Session] = {}
        self.sessions_created = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(DIGEST_PATH, self.on_create),
            web.get(f"{DIGEST_PATH}/{{session}}/{{chunk:\\d+}}", self.on_chunk),
            web.post(DATUMS_PATH, self.on_datums),
            web.post(CHECKSUM_PATH, self.on_checksum),
        ]

    # ------------------------------------------------------------------ handlers

    async def on_create(self, request: web.Request) -> web.Response:
        refused = await self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        if not self._replica.is_leader:
            return _json({"error": "not the leader", "leader": self._replica.leader}, 409)
        session = self._session_now()
        return _json(
            {
                "session": session.id,
                "index": session.point.index,
                "term": session.point.term,
                "keys": len(session.keys),
                "chunks": max(1, -(-len(session.keys) // self._chunk_keys)),
                "chunkKeys": self._chunk_keys,
                "checksum": session.checksum,
            }
        )

    async def on_chunk(self, request: web.Request) -> web.Response:
        refused = await self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        session = self._session(request.match_info["session"])
        if session is None:
            return _json({"error": "unknown or expired digest session"}, 410)
        chunk = int(request.match_info["chunk"])
        keys = session.keys[chunk * self._chunk_keys : (chunk + 1) * self._chunk_keys]
        rows = [(key, session.datums[key].version, session.hashes[key]) for key in keys]
        body = await asyncio.to_thread(encode_digest_chunk, rows)
        return web.Response(body=body, content_type="application/octet-stream")

    async def on_datums(self, request: web.Request) -> web.Response:
        refused = await self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        try:
            data = orjson.loads(refused)
            session_id = data["session"]
            keys = data["keys"]
            if not isinstance(session_id, str) or not isinstance(keys, list):
                raise TypeError("session must be a string and keys a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            return _json({"error": f"body: {error}"}, 400)
        if len(keys) > MAX_BATCH_KEYS:
            return _json({"error": f"keys: at most {MAX_BATCH_KEYS} per request"}, 400)
        session = self._session(session_id)
        if session is None:
            return _json({"error": "unknown or expired digest session"}, 410)
        rows = [(key, session.datums[key]) for key in keys if key in session.datums]
        return web.Response(body=encode_datums(rows), content_type="application/octet-stream")

    async def on_checksum(self, request: web.Request) -> web.Response:
        refused = await self._refusal(request)
        if isinstance(refused, web.Response):
            return refused
        try:
            data = orjson.loads(refused)
            report = ChecksumReport(
                leader=NodeId(str(data["leader"])),
                term=int(data["term"]),
                index=int(data["index"]),
                checksum=int(data["checksum"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            return _json({"error": f"body: {error}"}, 400)
        self._on_checksum(report)
        return web.Response(status=204)

    # ------------------------------------------------------------------ sessions

    def _session_now(self) -> _Session:
        """A session at the current applied index (a new one unless one is already there)."""
        now = asyncio.get_running_loop().time()
        self._expire(now)
        point = self._replica.applied
        for session in self._sessions.values():
            if session.point == point:
                session.last_used = now
                return session
        datums = dict(self._datums.items())  # one go: no await, so exactly the state at `point`
        hashes = dict(self._checksum.hashes)
        session = _Session(
            id=secrets.token_hex(8),
            point=point,
            datums=datums,
            hashes=hashes,
            keys=list(datums),
            checksum=self._checksum.value,
            last_used=now,
        )
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.last_used)
            del self._sessions[oldest.id]
        self._sessions[session.id] = session
        self.sessions_created += 1
        logger.info(
            "digest session %s at %d/%d: %d keys", session.id, point.index, point.term, len(datums)
        )
        return session

    def _session(self, session_id: str) -> _Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.last_used = asyncio.get_running_loop().time()
        return session

    def _expire(self, now: float) -> None:
        for session_id in [
            s.id for s in self._sessions.values() if now - s.last_used > SESSION_IDLE_SECONDS
        ]:
            del self._sessions[session_id]

    async def _refusal(self, request: web.Request) -> web.Response | bytes:
        """The request's body if it is signed by a member, else the answer refusing it."""
        sender = request.headers.get(SENDER_HEADER)
        if self._secret is not None and sender not in self._members:
            return _json({"error": "unknown sender"}, 403)
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            return _json({"error": "body too large"}, 413)
        signature = request.headers.get("X-Naraft-Signature")
        if not verify_request(self._secret, request.method, request.path_qs, body, signature):
            return _json({"error": "bad or missing signature"}, 403)
        return body


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
