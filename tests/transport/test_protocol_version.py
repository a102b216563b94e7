"""The peer protocol's version range (`naraft.transport.version`): senders name theirs,
receivers take a batch only from a range sharing a version with their own, and both sides
say so in one line. Real sockets on loopback."""

from __future__ import annotations

import logging

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

from naraft.transport import PeerClient, Rejection, RpcOutcome, peer_routes
from naraft.transport.version import ProtocolRange, parse_range


def client(url: str, protocol: ProtocolRange, metrics: RecordingPeerMetrics) -> PeerClient:
    return PeerClient(
        N1, {N2: url}, SECRET, timeout_seconds=2.0, metrics=metrics, protocol=protocol
    )


async def test_ranges_sharing_a_version_talk() -> None:
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, protocol=ProtocolRange(1, 1))
    async with serve(routes) as url:
        sender = client(url, ProtocolRange(1, 2), metrics)  # the next build, still speaking 1
        for envelope in heartbeats(N1, N2, 3):
            sender.send(envelope)
        async with running(sender):
            await inbox.wait_for_count(3)
    assert inbox.envelopes == heartbeats(N1, N2, 3)


async def test_a_peer_sharing_no_version_is_refused_in_one_line_each_side(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="naraft.transport")
    inbox, inbound, metrics = Inbox(), RecordingInboundMetrics(), RecordingPeerMetrics()
    routes = peer_routes(
        inbox.deliver, SECRET, [N1], inbound, self_id=N2, protocol=ProtocolRange(1, 1)
    )
    async with serve(routes) as url:
        sender = client(url, ProtocolRange(3, 3), metrics)
        async with running(sender):
            for count, envelope in enumerate(heartbeats(N1, N2, 3), start=1):
                sender.send(envelope)
                await inbound.signal.wait_until(
                    lambda count=count: inbound.rejections[Rejection.INCOMPATIBLE] >= count,
                    f"refusal {count}",
                )
    assert inbox.envelopes == []
    assert RpcOutcome.REJECTED in {outcome for _, _, outcome in metrics.rpcs}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        errors.count(
            "refusing peer n1: it speaks peer protocol 3..3, this node 1..1; members must share"
            " a version (upgrade one version at a time)"
        )
        == 1
    )  # once, not once per batch
    assert (
        errors.count(
            "peer n2 refuses this node: incompatible peer protocol: n1 speaks 3..3, n2 speaks 1..1"
        )
        == 1
    )


def test_ranges_parse_and_bad_ones_name_the_rule() -> None:
    assert parse_range("1..2") == ProtocolRange(1, 2)
    assert parse_range("4") == ProtocolRange(4, 4)
    assert ProtocolRange(1, 2).shares(ProtocolRange(2, 3))
    assert not ProtocolRange(1, 1).shares(ProtocolRange(2, 3))
    for bad in ("2..1", "0..1", "a..b", "", "1..99999999"):
        with pytest.raises(ValueError, match="LOW..HIGH"):
            parse_range(bad)
