"""State checksums as a verifier (the seed's beat): the leader reports, followers compare.

Every `interval_seconds` the leader POSTs (applied index, checksum) to each follower,
unless the `sendBeatOnly` switch is on. A follower compares with its own checksum at that
index: from its history if it is already past it, or exactly when it gets there (the
replica drains the applied state at that index: `Replica.add_drain_point`). A difference
raises the alarm (an ERROR log line, `naraft_state_checksum_mismatches_total`, the
`checksum` part of `/nacos/v1/ns/raft/state`) and starts a repair by digest sync. A later
comparison that matches clears the alarm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Final

import aiohttp
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from naraft.digest.checksum import StateChecksum
from naraft.digest.protocol import CHECKSUM_PATH
from naraft.digest.server import ChecksumReport
from naraft.raft import Index, NodeId, Role
from naraft.replica import Replica
from naraft.state.datums import DatumChanges
from naraft.tls import PLAINTEXT, PeerTls
from naraft.transport.signing import PeerSigner

logger = logging.getLogger(__name__)

MAX_EXPECTED: Final = 16  # reports waiting for our applied index to reach theirs


class ChecksumVerifier:
    """Both ends of the checksum report for one node."""

    def __init__(
        self,
        *,
        replica: Replica,
        checksum: StateChecksum,
        peers: Collection[str],  # read at each report: members change
        signer: PeerSigner,
        interval_seconds: float,
        beat_only: Callable[[], bool],
        on_mismatch: Callable[[NodeId], None],
        registry: CollectorRegistry | None = None,
        tls: PeerTls = PLAINTEXT,
    ) -> None:
        self._replica = replica
        self._tls = tls
        self._checksum = checksum
        self._peers = peers
        self._signer = signer
        self._interval = interval_seconds
        self._beat_only = beat_only
        self._on_mismatch = on_mismatch
        self._expected: dict[int, ChecksumReport] = {}
        self.alarm = False
        self.mismatches = 0
        self.matches = 0
        self.last_mismatch: dict[str, object] | None = None
        r = registry if registry is not None else CollectorRegistry()
        self._mismatch_total = Counter(
            "naraft_state_checksum_mismatches_total",
            "Times this follower's state checksum differed from the leader's",
            registry=r,
        )
        self._checked_total = Counter(
            "naraft_state_checksum_checks_total", "Checksum comparisons made", registry=r
        )
        self._alarm_gauge = Gauge(
            "naraft_state_checksum_alarm", "1 while the state checksum alarm is raised", registry=r
        )

    def view(self) -> dict[str, object]:
        return {
            "index": self._checksum.index,
            "value": f"{self._checksum.value:016x}",
            "alarm": self.alarm,
            "mismatches": self.mismatches,
            "matches": self.matches,
            "lastMismatch": self.last_mismatch,
        }

    # ------------------------------------------------------------------ follower

    def on_report(self, report: ChecksumReport) -> None:
        """A leader's report arrived (the digest server's `POST checksum`)."""
        if self._replica.status.role is Role.LEADER:
            return
        ours = self._checksum.at(report.index)
        if ours is not None:
            self._compare(report, ours)
            return
        if report.index > self._checksum.index:
            if len(self._expected) >= MAX_EXPECTED:
                self._expected.pop(min(self._expected))
            self._expected[report.index] = report
            self._replica.add_drain_point(Index(report.index))

    def on_applied(self, changes: DatumChanges, index: Index) -> None:
        """The replica's `on_applied` hook: keep the checksum, compare when a report waits."""
        self._checksum.apply(changes, index)
        if self._expected:
            report = self._expected.pop(index, None)
            if report is not None:
                self._compare(report, self._checksum.value)
            for stale in [i for i in self._expected if i < index]:
                del self._expected[stale]

    def _compare(self, report: ChecksumReport, ours: int) -> None:
        self._checked_total.inc()
        if ours == report.checksum:
            self.matches += 1
            if self.alarm:
                logger.warning("state checksum matches the leader's again at %d", report.index)
            self.alarm = False
            self._alarm_gauge.set(0)
            return
        self.mismatches += 1
        self.alarm = True
        self._alarm_gauge.set(1)
        self._mismatch_total.inc()
        self.last_mismatch = {
            "index": report.index,
            "ours": f"{ours:016x}",
            "leader": report.leader,
            "theirs": f"{report.checksum:016x}",
        }
        logger.error(
            "STATE CHECKSUM MISMATCH at applied index %d: ours %016x, leader %s has %016x;"
            " repairing by digest sync",
            report.index,
            ours,
            report.leader,
            report.checksum,
        )
        self._on_mismatch(report.leader)

    # ------------------------------------------------------------------ leader

    async def report_forever(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(1.0, self._interval))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await asyncio.sleep(self._interval)
                status = self._replica.status
                if status.role is not Role.LEADER or self._beat_only():
                    continue
                body = orjson.dumps(
                    {
                        "leader": status.id,
                        "term": status.term,
                        "index": self._checksum.index,
                        "checksum": self._checksum.value,
                    }
                )
                await asyncio.gather(
                    *(
                        self._send(session, NodeId(p), body)
                        for p in list(self._peers)
                        if p != status.id
                    )
                )

    async def _send(self, session: aiohttp.ClientSession, peer: NodeId, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            **self._signer.headers("POST", CHECKSUM_PATH, peer, body),
        }
        try:
            async with session.post(
                f"{self._tls.url(peer)}{CHECKSUM_PATH}",
                data=body,
                headers=headers,
                ssl=self._tls.ssl,
                server_hostname=self._tls.server_hostname,
            ):
                pass
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            logger.debug("checksum report to %s failed: %s", peer, error)
