"""The follower's side of digest sync: catch up from, or repair against, the leader's state.

One task (`run`) does one sync at a time:

1. `POST digest` on the leader: a session frozen at the leader's applied index X.
2. Read the digest chunks (`parallel` in flight) and compare each (key, hash) with the local
   one; keys that differ or that we lack are to fetch, keys absent from the digest go.
3. Fetch those datums in batches of `batch_keys` (`parallel` in flight), each checked
   against its digest hash.
4. Install on the replica's driver (`Replica.install_state`):
   - catch-up (the core asked: our next entry was compacted on the leader): the state at X
     replaces ours in one durable write with the snapshot boundary at X, and the log
     restarts after it (`restore_snapshot`). Refused unless X is past our commit index.
   - repair (our checksum differed from the leader's): the correct state at X, then our own
     log's entries X+1..applied replayed on it, replaces our applied state; the log is not
     touched (it may hold entries the leader counted as ours).

Nothing is durable before step 4's one write, so a crash or a leader change at any point
leaves the old state; a failed catch-up tells the core (`snapshot_failed`) and the leader
asks again. Progress is `progress()` (the state endpoint) and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from naraft.digest.checksum import StateChecksum, datum_hash
from naraft.digest.protocol import (
    DATUMS_PATH,
    DIGEST_PATH,
    DigestProtocolError,
    decode_datums,
    decode_digest_chunk,
)
from naraft.raft import Index, NodeId, RaftCore, Role, SnapshotMeta, Term
from naraft.replica import Replica, StateMachine
from naraft.state.datums import Datum, DatumTable
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.signing import PeerSigner

logger = logging.getLogger(__name__)


class SyncMode(enum.StrEnum):
    CATCH_UP = "catch-up"
    REPAIR = "repair"


class SyncPhase(enum.StrEnum):
    IDLE = "idle"
    DIGEST = "digest"
    FETCH = "fetch"
    INSTALL = "install"


class SyncAbortedError(Exception):
    """This sync cannot finish (`reason`); it is retried or the core is told."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSettings:
    batch_keys: int = 50  # datums per fetch request (the seed's 50)
    parallel: int = 4  # fetch requests in flight
    timeout_seconds: float = 10.0  # per request
    retry_seconds: float = 0.5  # pause after a failed attempt
    max_repair_attempts: int = 20


@dataclass(frozen=True, slots=True)
class _Request:
    mode: SyncMode
    leader: NodeId
    wanted: SnapshotMeta | None = None  # catch-up: the leader's compaction point
    attempt: int = 1


@dataclass(slots=True)
class _Progress:
    mode: SyncMode | None = None
    leader: str | None = None
    phase: SyncPhase = SyncPhase.IDLE
    index: int = 0
    keys_total: int = 0
    keys_compared: int = 0
    keys_to_fetch: int = 0
    keys_fetched: int = 0
    keys_deleted: int = 0
    started: float = 0.0
    completed: int = 0
    failed: int = 0
    last_error: str | None = None
    last: dict[str, object] = field(default_factory=dict)


class _Metrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.active = Gauge(
            "naraft_digest_sync_active", "1 while a digest sync runs", ["mode"], registry=r
        )
        self.keys_total = Gauge(
            "naraft_digest_sync_keys", "Keys in the digest of the running sync", registry=r
        )
        self.keys_fetched = Gauge(
            "naraft_digest_sync_keys_fetched", "Datums fetched by the running sync", registry=r
        )
        self.keys_to_fetch = Gauge(
            "naraft_digest_sync_keys_to_fetch", "Datums the running sync must fetch", registry=r
        )
        self.syncs = Counter(
            "naraft_digest_syncs_total", "Digest syncs by mode and outcome", ["mode", "outcome"],
            registry=r,
        )  # fmt: skip
        self.seconds = Gauge(
            "naraft_digest_sync_last_seconds", "Duration of the last completed sync", registry=r
        )


class DigestSync:
    """Runs digest syncs for one follower; see the module docstring."""

    def __init__(
        self,
        *,
        replica: Replica,
        datums: DatumTable,
        checksum: StateChecksum,
        signer: PeerSigner,
        self_id: NodeId,
        make_machine: Callable[[DatumTable], StateMachine],
        settings: SyncSettings | None = None,
        registry: CollectorRegistry | None = None,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        self._replica = replica
        self._tls = tls
        self._datums = datums
        self._checksum = checksum
        self._signer = signer  # every request signed afresh: a captured one is worth nothing
        self._self_id = self_id
        self._make_machine = make_machine
        self._settings = settings or SyncSettings()
        self._metrics = _Metrics(registry)
        self._wanted: _Request | None = None
        self._wake = asyncio.Event()
        self._progress = _Progress()
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ requests

    def request_catch_up(self, wanted: SnapshotMeta, leader: NodeId | None) -> None:
        """The core wants the leader's state past `wanted` (the replica's hook)."""
        if leader is None:
            self._replica.snapshot_failed()
            return
        self._want(_Request(SyncMode.CATCH_UP, leader, wanted))

    def request_repair(self, leader: NodeId) -> None:
        """Our applied state differs from the leader's: replace it by digest sync."""
        if self._wanted is not None and self._wanted.mode is SyncMode.CATCH_UP:
            return  # a catch-up replaces the whole state anyway
        self._want(_Request(SyncMode.REPAIR, leader))

    @property
    def running(self) -> bool:
        return self._progress.phase is not SyncPhase.IDLE

    def _want(self, request: _Request) -> None:
        self._wanted = request
        self._wake.set()

    def progress(self) -> dict[str, object]:
        """The sync's progress, for the state endpoint."""
        p = self._progress
        view: dict[str, object] = {
            "phase": p.phase.value,
            "completed": p.completed,
            "failed": p.failed,
            "lastError": p.last_error,
            "last": p.last,
        }
        if p.phase is not SyncPhase.IDLE:
            view.update(
                mode=p.mode.value if p.mode is not None else None,
                leader=p.leader,
                index=p.index,
                keysTotal=p.keys_total,
                keysCompared=p.keys_compared,
                keysToFetch=p.keys_to_fetch,
                keysFetched=p.keys_fetched,
                seconds=round(time.monotonic() - p.started, 3),
            )
        return view

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        connector = aiohttp.TCPConnector(
            limit=max(4, self._settings.parallel * 2), ssl=self._tls.ssl
        )
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, auto_decompress=False
        ) as session:
            self._session = session
            while True:
                await self._wake.wait()
                self._wake.clear()
                request, self._wanted = self._wanted, None
                if request is None:
                    continue
                await self._attempt(request)

    async def _attempt(self, request: _Request) -> None:
        p = self._progress
        p.mode, p.leader, p.started = request.mode, request.leader, time.monotonic()
        p.keys_total = p.keys_compared = p.keys_to_fetch = p.keys_fetched = p.keys_deleted = 0
        self._metrics.active.labels(mode=request.mode.value).set(1)
        outcome = "failed"
        try:
            await self._sync(request)
            outcome = "ok"
        except (SyncAbortedError, DigestProtocolError, aiohttp.ClientError, TimeoutError) as error:
            p.failed += 1
            p.last_error = f"{request.mode} from {request.leader}: {error}"
            logger.warning("digest sync failed (attempt %d): %s", request.attempt, p.last_error)
        finally:
            p.phase = SyncPhase.IDLE
            self._metrics.active.labels(mode=request.mode.value).set(0)
            self._metrics.syncs.labels(mode=request.mode.value, outcome=outcome).inc()
        if outcome == "ok":
            return
        await asyncio.sleep(self._settings.retry_seconds)
        if request.mode is SyncMode.CATCH_UP:
            # The core forgets the fetch; the leader's next beat asks again (maybe someone new).
            self._replica.snapshot_failed()
        elif self._wanted is None and request.attempt < self._settings.max_repair_attempts:
            leader = self._replica.leader or request.leader
            self._want(_Request(SyncMode.REPAIR, leader, attempt=request.attempt + 1))

    async def _sync(self, request: _Request) -> None:
        p = self._progress
        p.phase = SyncPhase.DIGEST
        info = await self._post_json(request.leader, DIGEST_PATH, {})
        point = SnapshotMeta(index=Index(_int(info, "index")), term=Term(_int(info, "term")))
        session_id = str(info["session"])
        chunks = _int(info, "chunks")
        p.index = point.index
        p.keys_total = _int(info, "keys")
        self._metrics.keys_total.set(p.keys_total)
        if request.mode is SyncMode.CATCH_UP and point.index <= self._replica.status.commit_index:
            raise SyncAbortedError(f"the leader's state at {point.index} is not past our commit")

        digest: dict[str, int] = {}
        to_fetch: list[str] = []
        chunk_numbers = iter(range(chunks))

        async def read_chunks() -> None:
            for number in chunk_numbers:
                payload = await self._get(request.leader, f"{DIGEST_PATH}/{session_id}/{number}")
                rows = decode_digest_chunk(payload)
                hash_of = self._checksum.hash_of
                for key, _version, key_hash in rows:
                    digest[key] = key_hash
                    if hash_of(key) != key_hash:
                        to_fetch.append(key)
                p.keys_compared += len(rows)

        await _gather(read_chunks() for _ in range(self._settings.parallel))
        if len(digest) != p.keys_total:
            raise DigestProtocolError("digest", f"{len(digest)} keys, announced {p.keys_total}")

        p.phase = SyncPhase.FETCH
        p.keys_to_fetch = len(to_fetch)
        self._metrics.keys_to_fetch.set(len(to_fetch))
        fetched: dict[str, Datum] = {}
        await self._fetch(request.leader, session_id, to_fetch, digest, fetched)

        p.phase = SyncPhase.INSTALL
        if request.mode is SyncMode.REPAIR:
            await self._replica.wait_applied(point.index)
            # Keys written locally since the comparison have a version past X: top them up.
            for _ in range(3):
                missing = [
                    key
                    for key, key_hash in digest.items()
                    if key not in fetched and self._checksum.hash_of(key) != key_hash
                ]
                if not missing:
                    break
                await self._fetch(request.leader, session_id, missing, digest, fetched)
        installed = await self._replica.install_state(
            lambda core: self._build(core, request.mode, point, digest, fetched),
            reset_log=request.mode is SyncMode.CATCH_UP,
        )
        if installed is None:
            raise SyncAbortedError(f"the state at {point.index} no longer fits this replica")
        seconds = time.monotonic() - p.started
        p.completed += 1
        p.last_error = None
        p.last = {
            "mode": request.mode.value,
            "index": point.index,
            "keys": len(digest),
            "fetched": len(fetched),
            "deleted": p.keys_deleted,
            "seconds": round(seconds, 3),
        }
        self._metrics.seconds.set(seconds)
        logger.info(
            "digest %s from %s done: state at %d, %d keys, %d fetched, %d deleted in %.2fs",
            request.mode,
            request.leader,
            point.index,
            len(digest),
            len(fetched),
            p.keys_deleted,
            seconds,
        )

    async def _fetch(
        self,
        leader: NodeId,
        session_id: str,
        keys: list[str],
        digest: dict[str, int],
        fetched: dict[str, Datum],
    ) -> None:
        size = self._settings.batch_keys
        batches = iter([keys[i : i + size] for i in range(0, len(keys), size)])

        async def worker() -> None:
            for batch in batches:
                body = orjson.dumps({"session": session_id, "keys": batch})
                payload = await self._post(leader, DATUMS_PATH, body)
                datums = decode_datums(payload)
                for key in batch:
                    datum = datums.get(key)
                    if datum is None or datum_hash(key, datum) != digest[key]:
                        raise DigestProtocolError("datums", f"{key!r} does not match its digest")
                    fetched[key] = datum
                self._progress.keys_fetched += len(batch)
                self._metrics.keys_fetched.set(self._progress.keys_fetched)

        await _gather(worker() for _ in range(self._settings.parallel))

    def _build(
        self,
        core: RaftCore,
        mode: SyncMode,
        point: SnapshotMeta,
        digest: dict[str, int],
        fetched: dict[str, Datum],
    ) -> SnapshotMeta | None:
        """On the driver: change the live datums to the synced state (see the docstring)."""
        live = self._datums
        hash_of = self._checksum.hash_of
        puts: dict[str, Datum] = {}
        for key, key_hash in digest.items():
            if hash_of(key) == key_hash:
                continue
            datum = fetched.get(key)
            if datum is None:
                logger.info("digest sync: %r changed since the comparison; retrying", key)
                return None
            puts[key] = datum
        deletes = [key for key, _datum in live.items() if key not in digest]
        if mode is SyncMode.CATCH_UP:
            if core.role is not Role.FOLLOWER or point.index <= core.commit_index:
                return None
            for key, datum in puts.items():
                live.put(key, datum.value, datum.version)
            for key in deletes:
                live.delete(key)
            self._progress.keys_deleted = len(deletes)
            return point
        # Repair: the correct state at X, then our own log replayed on it up to applied.
        applied = core.applied_index
        if applied < point.index or core.snapshot.index > point.index:
            return None
        gone = set(deletes)
        target = {key: datum for key, datum in live.items() if key not in gone}
        target.update(puts)
        scratch = DatumTable(target)
        machine = self._make_machine(scratch)
        for entry in core.log_view.slice(Index(point.index + 1), Index(applied + 1)):
            machine.apply(entry)
        repaired = dict(scratch.items())
        deleted = [key for key, _datum in live.items() if key not in repaired]
        for key, datum in repaired.items():
            if live.get(key) != datum:
                live.put(key, datum.value, datum.version)
        for key in deleted:
            live.delete(key)
        self._progress.keys_deleted = len(deleted)
        term = core.term_at(applied)
        return SnapshotMeta(index=applied, term=term if term is not None else point.term)

    # ------------------------------------------------------------------ HTTP

    async def _post_json(self, leader: NodeId, path: str, body: object) -> dict[str, object]:
        payload = await self._post(leader, path, orjson.dumps(body))
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as error:
            raise DigestProtocolError(path, f"not JSON: {error}") from None
        if not isinstance(data, dict):
            raise DigestProtocolError(path, "not a JSON object")
        return data

    async def _post(self, leader: NodeId, path: str, body: bytes) -> bytes:
        return await self._request("POST", leader, path, body)

    async def _get(self, leader: NodeId, path: str) -> bytes:
        return await self._request("GET", leader, path, b"")

    async def _request(self, method: str, leader: NodeId, path: str, body: bytes) -> bytes:
        session = self._session
        assert session is not None
        headers = self._signer.headers(method, path, leader, body)
        async with session.request(
            method,
            f"{self._tls.url(leader)}{path}",
            data=body or None,
            headers=headers,
            server_hostname=self._tls.server_hostname,
        ) as answer:
            payload = await answer.read()
            if answer.status == 409:
                raise SyncAbortedError(f"{leader} no longer leads")
            if answer.status == 410:
                raise SyncAbortedError("the digest session expired")
            if answer.status != 200:
                raise SyncAbortedError(f"{method} {path}: HTTP {answer.status} {payload[:120]!r}")
            return payload


async def _gather(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run `coroutines` together; the first failure cancels the rest and is raised as is."""
    try:
        async with asyncio.TaskGroup() as tasks:
            for coroutine in coroutines:
                tasks.create_task(coroutine)
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None


def _int(data: dict[str, object], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int):
        raise DigestProtocolError(name, f"expected an integer, got {value!r}")
    return value
