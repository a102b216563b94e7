"""deploy/grafana/naraft.json: a well-formed Grafana dashboard (the fields Grafana needs to
import it, panels on the 24-column grid without overlaps, every query with its refId) whose
queries name only metrics a node exports (read from a node's own registry)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from naraft.metrics import NodeMetrics

DASHBOARD: Final = Path(__file__).parents[2] / "deploy" / "grafana" / "naraft.json"
PANEL_TYPES: Final = frozenset({"row", "timeseries", "stat"})
PROMQL_WORDS: Final = frozenset(
    {"sum", "max", "min", "count", "rate", "increase", "histogram_quantile", "by", "without",
     "label_values", "instance", "and", "or", "unless"}
)  # fmt: skip
_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def exported_names() -> set[str]:
    names: set[str] = set()
    family: Metric
    for family in NodeMetrics().registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label
    matchers, ranges, grouping clauses, numbers and PromQL's own words are taken out."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", "", text)
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return tokens - PROMQL_WORDS


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    dashboard = load()
    for key, kind in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list)):
        assert isinstance(dashboard[key], kind), key
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            targets = panel["targets"]
            assert targets, panel["title"]
            assert len({t["refId"] for t in targets}) == len(targets)
            assert all(t["expr"].strip() for t in targets)


def test_the_dashboard_shows_the_raft_view_beside_the_registry_view() -> None:
    dashboard = load()
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows[:2] == ["Raft", "Registry (Nacos)"]
    every_query = " ".join(queries(dashboard))
    for needed in (
        "naraft_raft_term",
        "naraft_raft_leader_changes_total",
        "naraft_raft_commit_index",
        "naraft_storage_write_seconds_bucket",
        'name="serviceCount"',
        'name="ipCount"',
        'name="subscriberCount"',
        "naraft_http_requests_total",
        "naraft_http_request_seconds_bucket",
    ):
        assert needed in every_query, needed


def test_the_dashboard_reads_only_metrics_a_node_exports() -> None:
    exported = exported_names()
    read = set().union(*(metric_names(q) for q in queries(load())))
    assert read, "no metric found in the queries"
    assert read <= exported, sorted(read - exported)


def test_the_metric_name_reader_sees_through_promql() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, route) (rate(a_seconds_bucket{x="y"}[1m])))'
    assert metric_names(expr) == {"a_seconds_bucket"}
    assert metric_names('b_total - c_index{i=~"$i"}') == {"b_total", "c_index"}
