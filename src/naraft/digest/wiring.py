"""`DigestService`: the checksum, digest server, sync and verifier of one node, wired once.

Built after the replica it serves; `node.py` subscribes its `on_applied` and
`on_snapshot_needed` to the replica's events, adds its `routes()`, runs `run()` and shows
`view()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from naraft.digest.checksum import StateChecksum
from naraft.digest.server import ChecksumReport, DigestServer, FrozenState, freeze_state
from naraft.digest.sync import DigestSync, SyncSettings
from naraft.digest.verifier import ChecksumVerifier
from naraft.raft import Index, NodeId, SnapshotMeta
from naraft.replica import Replica, StateMachine
from naraft.state.datums import DatumChanges, DatumTable
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.members import MemberView
from naraft.transport.signing import PeerSigner, PeerVerifier, default_cluster_id


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestSettings:
    sync: SyncSettings = SyncSettings()
    checksum_interval_seconds: float = 5.0  # 0: never report


class DigestService:
    def __init__(
        self,
        *,
        replica: Replica,
        datums: DatumTable,
        self_id: NodeId,
        members: Collection[str],  # a MemberView follows membership changes
        secret: bytes | None,
        make_machine: Callable[[DatumTable], StateMachine],
        beat_only: Callable[[], bool],
        settings: DigestSettings | None = None,
        registry: CollectorRegistry | None = None,
        cluster_id: str | None = None,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        """`cluster_id` goes into every signed request (default: derived from the secret).
        Built after the replica; the replica's callbacks reach `on_applied` and
        `on_snapshot_needed` through the node's subscriptions."""
        self._datums = datums
        self._self_id = self_id
        self._members = members
        self._secret = secret
        self._cluster_id = cluster_id if cluster_id is not None else default_cluster_id(secret)
        self._make_machine = make_machine
        self._beat_only = beat_only
        self._settings = settings or DigestSettings()
        self._registry = registry
        self._tls = tls  # how to reach the leader and the followers
        self._replica = replica
        self.checksum = StateChecksum(datums.items(), replica.status.applied_index)
        self._parts = self._build(replica)

    def _build(self, replica: Replica) -> _Parts:
        sync = DigestSync(
            replica=replica,
            datums=self._datums,
            checksum=self.checksum,
            signer=self._signer(),
            self_id=self._self_id,
            make_machine=self._make_machine,
            settings=self._settings.sync,
            registry=self._registry,
            tls=self._tls,
        )
        verifier = ChecksumVerifier(
            replica=replica,
            checksum=self.checksum,
            peers=self._members,
            signer=self._signer(),
            interval_seconds=self._settings.checksum_interval_seconds,
            beat_only=self._beat_only,
            on_mismatch=sync.request_repair,
            registry=self._registry,
            tls=self._tls,
        )
        server = DigestServer(
            replica=replica,
            datums=self._datums,
            checksum=self.checksum,
            verifier=PeerVerifier(
                self._secret,
                cluster_id=self._cluster_id,
                self_id=self._self_id,
                members=(
                    self._members
                    if isinstance(self._members, MemberView)
                    else [m for m in self._members if m != self._self_id]
                ),
            ),
            has_peers=isinstance(self._members, MemberView)
            or any(m != self._self_id for m in self._members),
            on_checksum=self._on_report,
        )
        return _Parts(sync=sync, verifier=verifier, server=server)

    def _signer(self) -> PeerSigner:
        return PeerSigner(self._secret, cluster_id=self._cluster_id, self_id=self._self_id)

    # Replica hooks (called on the replica's driver task).
    def on_applied(self, changes: DatumChanges, index: Index) -> None:
        self._parts.verifier.on_applied(changes, index)

    def on_snapshot_needed(self, wanted: SnapshotMeta, leader: NodeId | None) -> None:
        self._parts.sync.request_catch_up(wanted, leader)

    def _on_report(self, report: ChecksumReport) -> None:
        parts = self._parts
        if parts.sync.running:
            return  # the state is being replaced; compare afterwards
        parts.verifier.on_report(report)

    def routes(self) -> list[web.RouteDef]:
        return self._parts.server.routes()

    def freeze(self) -> FrozenState:
        """The applied state now, frozen (datums and checksum, no per-key hashes): what
        `naraft snapshot save` streams."""
        return freeze_state(self._replica.applied, self._datums, self.checksum, hashes=False)

    async def run(self) -> None:
        parts = self._parts
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(parts.sync.run(), name="digest-sync")
            if self._settings.checksum_interval_seconds > 0 and (
                isinstance(self._members, MemberView) or len(self._members) > 1
            ):
                tasks.create_task(parts.verifier.report_forever(), name="checksum-report")

    def view(self) -> dict[str, object]:
        """The `catchUp` and `checksum` parts of the state endpoint."""
        parts = self._parts
        return {"catchUp": parts.sync.progress(), "checksum": parts.verifier.view()}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Parts:
    sync: DigestSync
    verifier: ChecksumVerifier
    server: DigestServer
