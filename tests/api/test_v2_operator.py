"""Nacos 2.x's v2 operator, health and core cluster routes: Nacos's `Result` over what v1
serves, v2's error codes, and the same switches, health and members as v1."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from tests.api.conftest import Members, v2_call, v2_ok

from naraft.naming.keys import ServiceKey

SWITCHES = "/nacos/v2/ns/operator/switches"
METRICS = "/nacos/v2/ns/operator/metrics"
HEALTH_INSTANCE = "/nacos/v2/ns/health/instance"
NODES = "/nacos/v2/core/cluster/node/list"


async def test_switches_read_and_set_under_operator_and_ops(env: Any) -> None:
    status, answer = await v2_call(env, "GET", SWITCHES)
    assert status == 200
    assert answer["data"] == await env.json("GET", "/nacos/v1/ns/operator/switches")
    params = {"entry": "clientBeatInterval", "value": "9000"}
    assert await v2_call(env, "PUT", "/nacos/v2/ns/ops/switches", params) == v2_ok("ok")
    assert (await v2_call(env, "GET", SWITCHES))[1]["data"]["clientBeatInterval"] == 9000
    status, answer = await v2_call(
        env, "PUT", SWITCHES, {"entry": "clientBeatInterval", "value": "x"}
    )
    assert (status, answer["code"], answer["message"]) == (400, 20002, "parameter validate error")
    assert "value" in answer["data"]
    status, answer = await v2_call(env, "PUT", SWITCHES, {"value": "1"})
    assert (status, answer["code"]) == (400, 10000)
    assert answer["data"] == "Required parameter 'entry' is not present"


async def test_metrics_answer_only_the_status_unless_asked(env: Any) -> None:
    params = {"ip": "10.0.0.1", "port": "80", "serviceName": "svc"}
    assert await env.text("POST", "/nacos/v1/ns/instance", params) == (200, "ok")
    status, answer = await v2_call(env, "GET", METRICS)
    assert status == 200
    data = answer["data"]
    assert data["status"] == "UP"
    assert {k for k, v in data.items() if v is not None} == {"status"}
    data = (await v2_call(env, "GET", "/nacos/v2/ns/ops/metrics", {"onlyStatus": "false"}))[1][
        "data"
    ]
    assert list(data)[:3] == ["status", "serviceCount", "instanceCount"]
    assert (data["serviceCount"], data["instanceCount"]) == (1, 1)
    assert all(isinstance(data[k], float) for k in ("cpu", "load", "mem"))
    assert data["clientCount"] is None  # naraft keeps no Nacos 2.x client objects
    status, answer = await v2_call(env, "GET", METRICS, {"onlyStatus": "perhaps"})
    assert (status, answer["code"]) == (400, 20002)


async def test_health_of_a_persistent_instance_is_set_as_through_v1(env: Any) -> None:
    params = {"ip": "10.0.0.1", "port": "80", "serviceName": "svc", "ephemeral": "false"}
    assert await env.text("POST", "/nacos/v1/ns/instance", params) == (200, "ok")
    del params["ephemeral"]
    assert await v2_call(env, "PUT", HEALTH_INSTANCE, {**params, "healthy": "false"}) == v2_ok("ok")
    key = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
    assert env.state.instances(key)[0].healthy is False
    status, answer = await v2_call(env, "PUT", HEALTH_INSTANCE, {**params, "port": "81"})
    assert status in (400, 404)
    assert answer["code"] != 0


async def _result(client: TestClient[web.Request, web.Application], path: str, **query: str) -> Any:
    response = await client.get(path, params=query)
    answer = await response.json()
    return response.status, answer


async def test_core_cluster_nodes_by_address_prefix_and_state(
    cluster: tuple[TestClient[web.Request, web.Application], Members],
) -> None:
    client, members = cluster
    status, answer = await _result(client, NODES)
    assert (status, answer["code"]) == (200, 0)
    assert [n["address"] for n in answer["data"]] == [
        "10.0.0.20:8848",
        "10.0.0.3:8848",
        "10.0.0.2:8848",
    ]
    addresses = [
        n["address"] for n in (await _result(client, NODES, address="10.0.0.2"))[1]["data"]
    ]
    assert addresses == ["10.0.0.20:8848", "10.0.0.2:8848"]
    down = (await _result(client, NODES, state="down"))[1]["data"]
    assert [n["address"] for n in down] == ["10.0.0.2:8848"]
    assert (await _result(client, NODES, state="SUSPICIOUS"))[1]["data"] == []
    status, answer = await _result(client, NODES, state="sleepy")
    assert (status, answer["code"], answer["message"]) == (400, 23000, "illegal state")
    assert answer["data"] == "Illegal state: SLEEPY"

    status, answer = await _result(client, "/nacos/v2/core/cluster/node/self")
    assert (status, answer["data"]["address"]) == (200, "10.0.0.3:8848")
    assert (await _result(client, "/nacos/v2/core/cluster/node/self/health"))[1]["data"] == "UP"
    members.reason = "no leader known"
    assert (await _result(client, "/nacos/v2/core/cluster/node/self/health"))[1]["data"] == "DOWN"
    assert (await _result(client, METRICS))[1]["data"]["status"] == "DOWN"
