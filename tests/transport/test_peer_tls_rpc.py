"""Peer RPC over mutual TLS: `PeerClient` with a `PeerTls` delivers to a member's TLS
listener; a listener whose certificate the peer CA did not sign is an error outcome, never
an exception out of the sender (docs/tls.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.transport.conftest import (
    N1,
    N2,
    SECRET,
    Inbox,
    RecordingInboundMetrics,
    RecordingPeerMetrics,
    heartbeats,
    running,
    serve,
)

from naraft.certs import NodeCertFiles, write_cluster_certs
from naraft.tls import PeerTls, server_context
from naraft.transport import PeerClient, RpcOutcome, peer_routes

NODES = ("127.0.0.1:1", "127.0.0.1:2")


@pytest.fixture
def cluster_files(tmp_path: Path) -> dict[str, NodeCertFiles]:
    return write_cluster_certs(tmp_path / "ours", NODES)


def client(tls: PeerTls, url: str, metrics: RecordingPeerMetrics) -> PeerClient:
    return PeerClient(N1, {N2: url}, SECRET, timeout_seconds=2.0, metrics=metrics, tls=tls)


async def test_messages_travel_over_mutual_tls(cluster_files: dict[str, NodeCertFiles]) -> None:
    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], RecordingInboundMetrics(), self_id=N2)
    listener = server_context(cluster_files[NODES[1]].settings)
    async with serve(routes, ssl_context=listener) as url:
        assert url.startswith("https://")
        metrics = RecordingPeerMetrics()
        tls = PeerTls.of(cluster_files[NODES[0]].settings)
        sender = client(tls, url, metrics)
        sent = heartbeats(N1, N2, 5)
        for envelope in sent:
            sender.send(envelope)
        async with running(sender):
            await inbox.wait_for_count(5)
            await metrics.signal.wait_until(lambda: bool(metrics.rpcs), "the outcome")
    assert inbox.envelopes == sent
    assert {outcome for _, _, outcome in metrics.rpcs} == {RpcOutcome.OK}


async def test_a_listener_the_peer_ca_did_not_sign_is_an_error_outcome(
    cluster_files: dict[str, NodeCertFiles], tmp_path: Path
) -> None:
    strangers = write_cluster_certs(tmp_path / "theirs", NODES)  # another throwaway CA
    inbox = Inbox()
    routes = peer_routes(inbox.deliver, SECRET, [N1], RecordingInboundMetrics(), self_id=N2)
    async with serve(routes, ssl_context=server_context(strangers[NODES[1]].settings)) as url:
        metrics = RecordingPeerMetrics()
        sender = client(PeerTls.of(cluster_files[NODES[0]].settings), url, metrics)
        for envelope in heartbeats(N1, N2, 3):
            sender.send(envelope)
        async with running(sender):
            await metrics.signal.wait_until(lambda: len(metrics.rpcs) >= 1, "an attempt")
            sender.send(heartbeats(N1, N2, 1)[0])  # still sending: nothing escaped
            await metrics.signal.wait_until(lambda: len(metrics.rpcs) >= 2, "a second attempt")
    assert inbox.envelopes == []
    assert {outcome for _, _, outcome in metrics.rpcs} == {RpcOutcome.ERROR}
    assert metrics.reachability_changes == [(N2, False)]
