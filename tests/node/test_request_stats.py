"""The node's HTTP request measures expose exactly what prometheus_client's own counter,
histogram and summary would for the same requests (`naraft.metrics.RequestStats`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from prometheus_client.parser import text_string_to_metric_families

from naraft import metrics as node_metrics
from naraft.metrics import NodeMetrics

BOUNDS = node_metrics._REQUEST_BUCKETS

Request = tuple[str, str, int, float]

requests = st.lists(
    st.tuples(
        st.sampled_from(["GET", "PUT", "DELETE"]),
        st.sampled_from(["/nacos/v1/ns/instance/list", "/naraft/v1/kv/{key}", "unmatched"]),
        st.sampled_from([200, 201, 400, 404, 499, 500, 503]),
        # exact bounds land in their own bucket (`le` is "at or below")
        st.one_of(st.sampled_from(BOUNDS), st.floats(0, 20, allow_nan=False)),
    ),
    max_size=60,
)


def reference(seen: list[Request]) -> CollectorRegistry:
    """The same requests through prometheus_client's own metric classes."""
    registry = CollectorRegistry()
    count = Counter("naraft_http_requests_total", "", ["method", "route", "status"],
                    registry=registry)  # fmt: skip
    latency = Histogram("naraft_http_request_seconds", "", ["method", "route"], buckets=BOUNDS,
                        registry=registry)  # fmt: skip
    nacos = Summary("http_server_requests_seconds", "", ["method", "uri", "status", "outcome"],
                    registry=registry)  # fmt: skip
    for method, route, status, seconds in seen:
        outcome = node_metrics._OUTCOMES.get(status // 100, "UNKNOWN")
        count.labels(method=method, route=route, status=str(status)).inc()
        latency.labels(method=method, route=route).observe(seconds)
        nacos.labels(method=method, uri=route, status=str(status), outcome=outcome).observe(seconds)
    return registry


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples_of(text: str, names: set[str]) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name in names and not sample.name.endswith("_created")
    }


FAMILIES = {"naraft_http_requests", "naraft_http_request_seconds", "http_server_requests_seconds"}


@given(requests)
def test_request_measures_match_prometheus_clients_own_metrics(seen: list[Request]) -> None:
    from prometheus_client import generate_latest

    metrics = NodeMetrics()
    for request in seen:
        metrics.observe_request(*request)
    ours = samples_of(metrics.render().decode(), FAMILIES)
    theirs = samples_of(generate_latest(reference(seen)).decode(), FAMILIES)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        # sums may add in another order: equal up to rounding
        assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_a_request_at_a_bound_counts_in_that_bucket_and_every_later_one() -> None:
    metrics = NodeMetrics()
    metrics.observe_request("GET", "/r", 200, 0.005)
    metrics.observe_request("GET", "/r", 404, 30.0)
    got = samples_of(metrics.render().decode(), FAMILIES)
    labels = (("method", "GET"), ("route", "/r"))

    def bucket(le: str) -> float:
        return got[("naraft_http_request_seconds_bucket", (("le", le), *labels))]

    assert [bucket(le) for le in ("0.0025", "0.005", "10.0", "+Inf")] == [0, 1, 1, 2]
    assert got[("naraft_http_request_seconds_count", labels)] == 2
