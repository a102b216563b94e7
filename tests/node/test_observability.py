"""What a running node tells its operator: request metrics by route template and status,
the latency histogram, Nacos's `nacos_monitor` gauges, process and build metrics, the
version endpoint and the access log. One standalone `run_node` in-process, real HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from naraft import __version__
from naraft.client import (
    ACTUATOR_PROMETHEUS_PATH,
    INSTANCE_LIST_PATH,
    INSTANCE_PATH,
    PROMETHEUS_PATH,
    VERSION_PATH,
)
from naraft.config_sources import build_config
from naraft.logs import ACCESS_LOGGER
from naraft.node import run_node

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def scrape(session: aiohttp.ClientSession, base: str, path: str = PROMETHEUS_PATH) -> Samples:
    async with session.get(f"{base}{path}") as answer:
        assert answer.status == 200
        assert answer.content_type == "text/plain"
        text = await answer.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[str]:
    node_id = f"127.0.0.1:{free_port()}"
    config = build_config(
        {"id": node_id, "data-dir": tmp_path, "standalone": True, "tick-ms": 20}, {}
    )
    ready = asyncio.Event()
    task = asyncio.create_task(run_node(config, ready=ready))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield f"http://{node_id}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def register(session: aiohttp.ClientSession, base: str, service: str, ip: str) -> None:
    params = {"serviceName": service, "ip": ip, "port": "80", "ephemeral": "false"}
    async with asyncio.timeout(10):
        while True:  # until the node has elected itself
            async with session.post(f"{base}{INSTANCE_PATH}", params=params) as answer:
                if answer.status == 200:
                    return
            await asyncio.sleep(0.05)


async def test_requests_move_the_counter_histogram_and_nacos_gauges(
    node: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with aiohttp.ClientSession() as session:
        before = await scrape(session, node)
        await register(session, node, "orders", "10.0.0.1")
        await register(session, node, "orders", "10.0.0.2")
        await register(session, node, "billing", "10.0.0.3")
        # a subscriber: a list request naming a UDP port
        list_params = {"serviceName": "orders", "clientIP": "127.0.0.1", "udpPort": "50999"}
        async with session.get(f"{node}{INSTANCE_LIST_PATH}", params=list_params) as answer:
            assert answer.status == 200
        async with session.post(f"{node}{INSTANCE_PATH}", params={"ip": "1.2.3.4"}) as answer:
            assert answer.status == 400  # serviceName missing
        async with session.get(f"{node}/nacos/v1/ns/no/such/thing/42") as answer:
            assert answer.status == 404
        after = await scrape(session, node)

    post = {"method": "POST", "route": INSTANCE_PATH}
    ok = value(after, "naraft_http_requests_total", **post, status="200") - value(
        before, "naraft_http_requests_total", **post, status="200"
    )
    assert ok >= 3
    assert value(after, "naraft_http_requests_total", **post, status="400") == 1
    # an unknown path counts under one route, whatever it was
    assert value(after, "naraft_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1  # fmt: skip
    listed = {"method": "GET", "route": INSTANCE_LIST_PATH}
    assert value(after, "naraft_http_request_seconds_count", **listed) == 1
    assert value(after, "naraft_http_request_seconds_bucket", **listed, le="+Inf") == 1
    assert value(after, "naraft_http_request_seconds_sum", **listed) > 0
    assert value(after, "http_server_requests_seconds_count", method="GET", uri=INSTANCE_LIST_PATH,
                 status="200", outcome="SUCCESS") == 1  # fmt: skip

    def monitor(samples: Samples, name: str) -> float:
        return value(samples, "nacos_monitor", module="naming", name=name)

    assert (monitor(before, "serviceCount"), monitor(after, "serviceCount")) == (0, 2)
    assert monitor(after, "domCount") == 2
    assert (monitor(before, "ipCount"), monitor(after, "ipCount")) == (0, 3)
    assert (monitor(before, "subscriberCount"), monitor(after, "subscriberCount")) == (0, 1)
    assert monitor(after, "leaderStatus") == 1
    assert value(after, "naraft_build_info", version=__version__, python=__import__(
        "platform").python_version(), implementation="CPython") == 1  # fmt: skip
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0

    # the access log, on by default, one line per request
    wanted = f'"GET {INSTANCE_LIST_PATH}?serviceName=orders'
    err = ""
    async with asyncio.timeout(5):
        while wanted not in err:
            err += capsys.readouterr().err
            await asyncio.sleep(0.05)
    lines = [line for line in err.splitlines() if f"INFO {ACCESS_LOGGER}: " in line]
    assert any(wanted in line and '" 200 ' in line for line in lines), lines
    assert any('"POST /nacos/v1/ns/instance?ip=1.2.3.4 HTTP/1.1" 400 ' in line for line in lines)


async def test_nacos_scrape_configurations_find_the_same_metrics(node: str) -> None:
    """A Prometheus job written for Nacos scrapes `/nacos/actuator/prometheus` (Spring Boot's
    actuator): it gets the node's registry, Nacos's series among them."""
    async with aiohttp.ClientSession() as session:
        await register(session, node, "orders", "10.0.0.1")
        ours = await scrape(session, node)
        nacos = await scrape(session, node, ACTUATOR_PROMETHEUS_PATH)
    assert value(nacos, "nacos_monitor", module="naming", name="ipCount") == 1
    posted = {"method": "POST", "uri": INSTANCE_PATH, "status": "200", "outcome": "SUCCESS"}
    assert value(nacos, "http_server_requests_seconds_count", **posted) >= 1
    assert {name for name, _ in nacos} == {name for name, _ in ours}


async def test_the_version_endpoint_names_the_build(node: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{node}{VERSION_PATH}") as answer:
        assert answer.status == 200
        body = await answer.json()
    assert body["version"] == __version__
    assert body["peerFormat"] == 2  # the newest batch format it writes (it reads 1 too)
