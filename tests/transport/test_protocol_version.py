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

from naraft.raft import Envelope, Heartbeat, Index, NodeId, Term
from naraft.transport import PeerClient, Rejection, RpcOutcome, peer_routes
from naraft.transport.version import CURRENT, ProtocolRange, batch_format, parse_range


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


def test_a_batch_is_written_in_the_newest_format_both_ends_speak() -> None:
    assert ProtocolRange(1, 4) == CURRENT  # 3 and 4 brought commands, not batch formats
    assert batch_format(CURRENT, None) == 1  # a build before version 2 names no range
    assert batch_format(CURRENT, ProtocolRange(1, 1)) == 1
    assert batch_format(CURRENT, ProtocolRange(1, 2)) == 2
    assert batch_format(ProtocolRange(1, 1), ProtocolRange(1, 2)) == 1
    assert batch_format(CURRENT, ProtocolRange(2, 3)) == 2
    assert batch_format(CURRENT, ProtocolRange(1, 2)) == 2
    assert batch_format(ProtocolRange(3, 3), ProtocolRange(3, 3)) == 2  # a test's stand-in
    assert batch_format(CURRENT, ProtocolRange(4, 4)) == 2


def commit_notices(count: int) -> list[Envelope]:
    return [
        Envelope(N1, N2, Heartbeat(term=Term(1), leader_commit=Index(i), quiet=True))
        for i in range(1, count + 1)
    ]


@pytest.mark.parametrize(
    ("receiver", "quiet"),
    [
        pytest.param(ProtocolRange(1, 2), True, id="receiver-1..2"),
        pytest.param(ProtocolRange(1, 1), False, id="receiver-1..1"),
    ],
)
async def test_commit_notices_stay_quiet_only_to_a_receiver_that_reads_them(
    receiver: ProtocolRange, quiet: bool
) -> None:
    """The receiver names its range in the stream's upgrade answer. A build that speaks
    only version 1 would refuse the `quiet` key: it gets the notices as plain beats (which
    it answers). The first batch goes before the stream is open, in version 1."""
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, protocol=receiver)
    first, *rest = commit_notices(3)
    async with serve(routes) as url:
        sender = client(url, CURRENT, metrics)
        sender.send(first)
        async with running(sender):
            await inbox.wait_for_count(1)
            for envelope in rest:
                sender.send(envelope)
            await inbox.wait_for_count(3)
    beats = [envelope.message for envelope in inbox.envelopes]
    assert all(isinstance(beat, Heartbeat) for beat in beats)
    assert [(beat.leader_commit, beat.quiet) for beat in beats if isinstance(beat, Heartbeat)] == [
        (1, False),
        (2, quiet),
        (3, quiet),
    ]


async def test_a_peer_below_the_recorded_version_is_refused_both_ways(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the cluster records version 3, a build that speaks 1..2 shares a version with
    ours but could not read every entry: the receiver refuses its batches, and a sender
    refuses to write to it, each saying why in one line."""
    caplog.set_level(logging.INFO, logger="naraft.transport")
    floor = [1]
    inbox, inbound, metrics = Inbox(), RecordingInboundMetrics(), RecordingPeerMetrics()
    routes = peer_routes(
        inbox.deliver, SECRET, [N1], inbound, self_id=N2, version_floor=lambda: floor[0]
    )
    old_build = ProtocolRange(1, 2)
    first, second, third = heartbeats(N1, N2, 3)
    async with serve(routes) as url:
        sender = client(url, old_build, metrics)
        async with running(sender):
            sender.send(first)
            await inbox.wait_for_count(1)  # nothing recorded yet: the old build takes part
        floor[0] = 3
        sender = client(url, old_build, metrics)  # it reconnects
        async with running(sender):
            sender.send(second)
            await inbound.signal.wait_until(
                lambda: inbound.rejections[Rejection.INCOMPATIBLE] >= 1, "the refusal"
            )
    assert inbox.envelopes == [first]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        "refusing peer n1: it speaks peer protocol 1..2, the cluster has recorded version 3; a"
        " member may not go back to a build that cannot read the log"
    ) in errors

    # The other way: a node of this build sending to a receiver of the old build.
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, protocol=old_build)
    async with serve(routes) as url:
        sender = PeerClient(
            N1, {N2: url}, SECRET, timeout_seconds=2.0, metrics=metrics,
            version_floor=lambda: 3,
        )  # fmt: skip
        async with running(sender):
            sender.send(third)
            await metrics.signal.wait_until(
                lambda: any(o is RpcOutcome.REJECTED for _, _, o in metrics.rpcs), "a refusal"
            )
            assert sender.peer_range(N2) is None  # the stream was dropped, not kept
    assert inbox.envelopes == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        "peer n2 refuses this node: incompatible peer protocol: n2 speaks 1..2, the cluster"
        " has recorded version 3"
    ) in errors


async def test_the_client_knows_each_peers_range_while_its_stream_is_open() -> None:
    inbox, metrics = Inbox(), RecordingPeerMetrics()
    routes = peer_routes(inbox.deliver, SECRET, [N1], self_id=N2, protocol=ProtocolRange(2, 3))
    async with serve(routes) as url:
        sender = client(url, CURRENT, metrics)
        assert sender.peer_range(N2) is None
        async with running(sender):
            for envelope in heartbeats(N1, N2, 2):
                sender.send(envelope)
            await inbox.wait_for_count(2)
            assert sender.peer_range(N2) == ProtocolRange(2, 3)
            assert sender.peer_range(NodeId("n9")) is None
