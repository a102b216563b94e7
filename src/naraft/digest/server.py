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

Every request must pass the node's `PeerVerifier` (signed by a member, for this node, in this
cluster, fresh, once: see `naraft.transport.signing`) before its body is looked at; refusals
are answered 403 and logged once per (remote, reason). A node without peers serves none of
these routes: its state is nobody's to copy.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
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
    encode_datums,
    encode_digest_chunk,
)
from naraft.raft import NodeId, SnapshotMeta
from naraft.state.datums import Datum, DatumTable
from naraft.transport.codec import BodyTooLargeError
from naraft.transport.server import read_limited
from naraft.transport.signing import PeerVerifier, Rejection, SignatureError

logger = logging.getLogger(__name__)

SESSION_IDLE_SECONDS: Final = 60.0
MAX_SESSIONS: Final = 4
MAX_REQUEST_BYTES: Final = 4 << 20
_MAX_LOGGED: Final = 1024  # bounds the memory of which refusals were already logged


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


@dataclass(frozen=True, slots=True)
class FrozenState:
    """The applied state at `point`, copied in one go: key -> datum (datums are immutable,
    so the copy costs one dict, not the values), key -> datum hash, and the state checksum.
    Later applies do not change it; it may be read from another thread."""

    point: SnapshotMeta
    datums: dict[str, Datum]
    hashes: dict[str, int]
    checksum: int


def freeze_state(
    point: SnapshotMeta, datums: DatumTable, checksum: StateChecksum, *, hashes: bool = True
) -> FrozenState:
    """The state at `point` (the replica's applied point now). Call it without awaiting
    between reading `point` and this: the copy is then exactly the state at `point`. With
    `hashes` False the per-key hashes are left out (a snapshot file needs only the sum)."""
    return FrozenState(
        point=point,
        datums=dict(datums.items()),
        hashes=dict(checksum.hashes) if hashes else {},
        checksum=checksum.value,
    )


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
        verifier: PeerVerifier,
        has_peers: bool,
        on_checksum: Callable[[ChecksumReport], None],
        chunk_keys: int = DEFAULT_CHUNK_KEYS,
    ) -> None:
        """`verifier` checks every request; `has_peers` False (standalone) closes the routes."""
        self._replica = replica
        self._datums = datums
        self._checksum = checksum
        self._verifier = verifier
        self._has_peers = has_peers
        self._logged: set[tuple[str, Rejection]] = set()
        self._on_checksum = on_checksum
        self._chunk_keys = chunk_keys
        self._sessions: dict[str, _Session] = {}
        self.sessions_created = 0

    def routes(self) -> list[web.RouteDef]:
        if not self._has_peers:
            return []
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
        frozen = freeze_state(point, self._datums, self._checksum)  # no await since `point`
        datums = frozen.datums
        session = _Session(
            id=secrets.token_hex(8),
            point=point,
            datums=datums,
            hashes=frozen.hashes,
            keys=list(datums),
            checksum=frozen.checksum,
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
        """The request's body if a member signed it for us, now, once; else the refusal."""
        try:
            claim = self._verifier.claim(request.method, request.raw_path, request.headers)
            body = await read_limited(request, MAX_REQUEST_BYTES)
            self._verifier.admit(claim, body)
        except BodyTooLargeError as error:
            return _json({"error": str(error)}, 413)
        except SignatureError as error:
            self._log_refusal(request.remote or "unknown", request.path, error)
            return _json({"error": f"{error.reason}: {error.detail}"}, 403)
        return body

    def _log_refusal(self, remote: str, path: str, error: SignatureError) -> None:
        """WARNING the first time for (remote, reason), DEBUG after."""
        key = (remote, error.reason)
        level = logging.DEBUG if key in self._logged else logging.WARNING
        if level == logging.WARNING:
            if len(self._logged) >= _MAX_LOGGED:
                self._logged.clear()
            self._logged.add(key)
        logger.log(
            level,
            "refused digest request reason=%s remote=%s path=%s detail=%s",
            error.reason,
            remote,
            path,
            error.detail,
        )


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
