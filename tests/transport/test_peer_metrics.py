"""The node's peer metrics count every frame, whether its series was resolved before or not."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from naraft import metrics as node_metrics
from naraft.metrics import NodeMetrics
from naraft.raft.types import NodeId
from naraft.transport import Lane, RpcOutcome, StreamEnd


def samples(metrics: NodeMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The values of the samples called `name`, by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
        if sample.name == name
    }


@pytest.mark.parametrize("cap", [4096, 1], ids=["cached", "over-the-cache-cap"])
def test_peer_frames_are_counted_per_peer_rpc_and_outcome(
    monkeypatch: pytest.MonkeyPatch, cap: int
) -> None:
    monkeypatch.setattr(node_metrics, "_MAX_CACHED_SERIES", cap)
    metrics = NodeMetrics()
    a, b = NodeId("a:1"), NodeId("b:1")
    for peer, outcome in [(a, RpcOutcome.OK), (a, RpcOutcome.OK), (b, RpcOutcome.TIMEOUT)]:
        metrics.observe_rpc(peer, "messages", outcome, 0.001)
    metrics.received(a, 3)
    metrics.received(a, 2)
    metrics.received(b, 1)
    metrics.stream_opened(a, Lane.BULK)
    metrics.stream_closed(a, Lane.BULK, StreamEnd.FAILED)
    assert samples(metrics, "naraft_peer_rpc_total") == {
        (("outcome", "ok"), ("peer", "a:1"), ("rpc", "messages")): 2.0,
        (("outcome", "timeout"), ("peer", "b:1"), ("rpc", "messages")): 1.0,
    }
    assert samples(metrics, "naraft_peer_rpc_seconds_count") == {
        (("outcome", "ok"), ("peer", "a:1"), ("rpc", "messages")): 2.0,
        (("outcome", "timeout"), ("peer", "b:1"), ("rpc", "messages")): 1.0,
    }
    assert samples(metrics, "naraft_peer_messages_received_total") == {
        (("peer", "a:1"),): 5.0,
        (("peer", "b:1"),): 1.0,
    }
    assert samples(metrics, "naraft_peer_streams_opened_total") == {
        (("lane", "bulk"), ("peer", "a:1")): 1.0
    }
    assert samples(metrics, "naraft_peer_streams_closed_total") == {
        (("how", "failed"), ("lane", "bulk"), ("peer", "a:1")): 1.0
    }


@pytest.mark.parametrize("cap", [4096, 1], ids=["cached", "over-the-cache-cap"])
def test_config_requests_are_counted_per_route(monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    monkeypatch.setattr(node_metrics, "_MAX_CACHED_SERIES", cap)
    metrics = NodeMetrics()
    for route in ["configs.publish", "configs.publish", "configs.listener"]:
        metrics.count_config_request(route)
    assert samples(metrics, "naraft_config_requests_total") == {
        (("route", "configs.publish"),): 2.0,
        (("route", "configs.listener"),): 1.0,
    }
