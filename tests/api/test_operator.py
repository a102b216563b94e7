"""/nacos/v1/ns/operator… and /nacos/v1/ns/health…"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.conftest import Env, Members

from naraft import __version__
from naraft.api import make_app
from naraft.api.core_ops import core_ops_routes
from naraft.api.v1.operator import ServerInfo
from naraft.naming.keys import ServiceKey

SWITCHES = "/nacos/v1/ns/operator/switches"


async def register(env: Any, **params: str) -> None:
    base = {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc"}
    assert await env.text("POST", "/nacos/v1/ns/instance", {**base, **params}) == (200, "ok")


async def test_switches_show_nacos_defaults(env: Any) -> None:
    answer = await env.json("GET", SWITCHES)
    assert answer["name"] == "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
    assert answer["clientBeatInterval"] == 5000
    assert answer["defaultCacheMillis"] == 3000
    assert answer["defaultPushCacheMillis"] == 10000
    assert answer["distroThreshold"] == 0.7
    assert answer["lightBeatEnabled"] is True
    assert answer["defaultInstanceEphemeral"] is True


async def test_switch_update_is_replicated_and_takes_effect(env: Any) -> None:
    params = {"entry": "clientBeatInterval", "value": "7000"}
    assert await env.text("PUT", SWITCHES, params) == (200, "ok")
    assert (await env.json("GET", SWITCHES))["clientBeatInterval"] == 7000
    beat = await env.json(
        "PUT", "/nacos/v1/ns/instance/beat", {"serviceName": "s", "ip": "1.2.3.4", "port": "1"}
    )
    assert beat["clientBeatInterval"] == 7000


async def test_default_cache_millis_switch_changes_list_answers(env: Any) -> None:
    await env.text("PUT", SWITCHES, {"entry": "defaultCacheMillis", "value": "4000"})
    answer = await env.json("GET", "/nacos/v1/ns/instance/list", {"serviceName": "svc"})
    assert answer["cacheMillis"] == 4000


async def test_default_instance_ephemeral_switch_changes_the_default(env: Any) -> None:
    await env.text("PUT", SWITCHES, {"entry": "defaultInstanceEphemeral", "value": "false"})
    await register(env)
    key = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
    assert env.state.instances(key)[0].ephemeral is False


@pytest.mark.parametrize(
    ("params", "wire_field"),
    [
        pytest.param({"value": "1"}, "entry", id="no-entry"),
        pytest.param({"entry": "distroThreshold"}, "value", id="no-value"),
        pytest.param({"entry": "bogus", "value": "1"}, "entry", id="unknown-entry"),
        pytest.param({"entry": "distroThreshold", "value": "9"}, "value", id="bad-value"),
        pytest.param({"entry": "pushEnabled", "value": "on"}, "value", id="bad-boolean"),
        pytest.param({"entry": "pushEnabled", "value": "true", "debug": "true"}, "debug",
                     id="debug-refused"),
    ],
)  # fmt: skip
async def test_bad_switch_updates_are_400_and_write_nothing(
    env: Any, params: dict[str, str], wire_field: str
) -> None:
    status, body = await env.text("PUT", SWITCHES, params)
    assert status == 400
    assert wire_field in body
    assert env.snapshot() == {}


async def test_metrics_answer_status_up_and_counts(env: Any) -> None:
    await register(env)
    await register(env, ip="10.0.0.2")
    answer = await env.json("GET", "/nacos/v1/ns/operator/metrics", {"namespaceId": "public"})
    assert list(answer) == [
        "status", "serviceCount", "instanceCount", "raftNotifyTaskCount",
        "responsibleServiceCount", "responsibleInstanceCount", "cpu", "load", "mem",
    ]  # fmt: skip
    assert answer["status"] == "UP"
    assert (answer["serviceCount"], answer["instanceCount"]) == (1, 2)
    assert all(isinstance(answer[k], float) for k in ("cpu", "load", "mem"))


async def test_overridden_server_status_shows_in_metrics(env: Any) -> None:
    await env.text("PUT", SWITCHES, {"entry": "overriddenServerStatus", "value": "DOWN"})
    answer = await env.json("GET", "/nacos/v1/ns/operator/metrics")
    assert answer["status"] == "DOWN"


async def test_servers_default_to_this_node(env: Any) -> None:
    answer = await env.json("GET", "/nacos/v1/ns/operator/servers")
    (member,) = answer["servers"]
    assert member["state"] == "UP"
    assert member["address"] == f"{member['ip']}:{member['port']}"
    assert member["port"] == env.client.port


async def test_health_server_message(env: Any) -> None:
    await register(env)
    answer = await env.json("GET", "/nacos/v1/ns/health/server")
    assert answer == {
        "msg": "Hello! I am Nacos-Naming and healthy! total services: raft 1, "
        f"local port:{env.client.port}"
    }


async def test_health_of_a_persistent_instance_can_be_set(env: Any) -> None:
    await register(env, ephemeral="false")
    params = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080", "healthy": "false"}
    assert await env.text("PUT", "/nacos/v1/ns/health/instance", params) == (200, "ok")
    key = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
    assert env.state.instances(key)[0].healthy is False
    params = {**params, "healthy": "", "valid": "true"}  # the legacy name
    assert await env.text("PUT", "/nacos/v1/ns/health", params) == (200, "ok")
    assert env.state.instances(key)[0].healthy is True


async def test_health_of_an_ephemeral_instance_is_decided_by_beats(env: Any) -> None:
    await register(env)
    before = env.snapshot()
    params = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080", "healthy": "false"}
    status, body = await env.text("PUT", "/nacos/v1/ns/health/instance", params)
    assert (status, body) == (400, "health check is still working, service: DEFAULT_GROUP@@svc")
    assert env.snapshot() == before


@pytest.mark.parametrize(
    ("params", "status"),
    [
        pytest.param({"ip": "10.0.0.1", "port": "8080", "healthy": "true"}, 400, id="no-service"),
        pytest.param({"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"}, 400,
                     id="no-healthy"),
        pytest.param({"serviceName": "svc", "ip": "10.0.0.9", "port": "8080", "healthy": "true"},
                     404, id="unknown-instance"),
    ],
)  # fmt: skip
async def test_health_errors(env: Any, params: dict[str, str], status: int) -> None:
    await register(env, ephemeral="false")
    before = env.snapshot()
    code, _ = await env.text("PUT", "/nacos/v1/ns/health/instance", params)
    assert code == status
    assert env.snapshot() == before


async def test_health_checkers_lists_each_type_with_its_defaults(env: Any) -> None:
    checkers = await env.json("GET", "/nacos/v1/ns/health/checkers")
    assert sorted(checkers) == ["HTTP", "MYSQL", "NONE", "TCP"]
    assert all(checker["type"] == name for name, checker in checkers.items())
    assert checkers["HTTP"] == {
        "type": "HTTP",
        "path": "",
        "headers": "",
        "expectedResponseCode": 200,
    }
    assert checkers["MYSQL"] == {"type": "MYSQL", "user": None, "pwd": None, "cmd": None}
    assert checkers["TCP"] == {"type": "TCP"}


async def test_core_cluster_nodes_lists_the_members_in_a_rest_result(env: Any) -> None:
    answer = await env.json("GET", "/nacos/v1/core/cluster/nodes")
    assert (answer["code"], answer["message"]) == (200, None)
    (member,) = answer["data"]
    assert member["address"] == f"{member['ip']}:{member['port']}"
    assert member["state"] == "UP"
    unmatched = await env.json("GET", "/nacos/v1/core/cluster/nodes", {"keyword": "no-such-host"})
    assert unmatched["data"] == []


async def _data(client: TestClient[web.Request, web.Application], path: str, **query: str) -> Any:
    response = await client.get(path, params=query)
    assert response.status == 200
    answer = await response.json()
    assert (answer["code"], answer["message"]) == (200, None)
    return answer["data"]


async def test_core_cluster_nodes_are_sorted_and_matched_by_address_prefix(
    cluster: tuple[TestClient[web.Request, web.Application], Members],
) -> None:
    client, _ = cluster
    nodes = "/nacos/v1/core/cluster/nodes"
    everyone = await _data(client, nodes)
    # by address as text, as Nacos sorts its members
    assert [n["address"] for n in everyone] == ["10.0.0.20:8848", "10.0.0.2:8848", "10.0.0.3:8848"]
    assert [n["address"] for n in await _data(client, nodes, keyword=" ")] == [
        n["address"] for n in everyone
    ]
    # Nacos matches an address equal to the keyword or starting with it, nothing inside it
    assert [n["address"] for n in await _data(client, nodes, keyword="10.0.0.2")] == [
        "10.0.0.20:8848",
        "10.0.0.2:8848",
    ]
    assert await _data(client, nodes, keyword="0.0.2") == []


async def test_core_cluster_self_simple_nodes_and_health(
    cluster: tuple[TestClient[web.Request, web.Application], Members],
) -> None:
    client, members = cluster
    me = await _data(client, "/nacos/v1/core/cluster/self")
    assert (me["address"], me["state"]) == ("10.0.0.3:8848", "UP")
    assert await _data(client, "/nacos/v1/core/cluster/simple/nodes") == [
        "10.0.0.20:8848",
        "10.0.0.2:8848",
        "10.0.0.3:8848",
    ]
    assert await _data(client, "/nacos/v1/core/cluster/health") == "UP"
    members.reason = "no leader known"
    assert await _data(client, "/nacos/v1/core/cluster/health") == "DOWN"


class Joining:
    """A node waiting to be added: it knows members, none of them itself."""

    def servers(self) -> list[ServerInfo]:
        return [ServerInfo(ip="10.0.0.7", port=8848)]


async def test_core_cluster_self_answers_on_a_node_not_among_its_members() -> None:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(Env().naming, servers=Joining()))
    )
    await client.start_server()
    try:
        me = await _data(client, "/nacos/v1/core/cluster/self")
        assert me["port"] == client.port
    finally:
        await client.close()
    assert me["address"] != "10.0.0.7:8848"


async def test_console_server_state_names_the_mode_and_version(
    env: Any, cluster: tuple[TestClient[web.Request, web.Application], Members]
) -> None:
    client, _ = cluster
    response = await client.get("/nacos/v1/console/server/state")
    assert response.status == 200
    assert await response.json() == {
        "standalone_mode": "cluster",
        "function_mode": None,
        "version": f"naraft-{__version__}",
    }
    alone = await env.json("GET", "/nacos/v1/console/server/state")
    assert alone["standalone_mode"] == "standalone"
    me = await env.json("GET", "/nacos/v1/core/cluster/self")
    assert me["data"]["port"] == env.client.port


async def test_every_operator_route_also_answers_under_ops(env: Any) -> None:
    assert await env.json("GET", "/nacos/v1/ns/ops/switches") == await env.json("GET", SWITCHES)
    params = {"entry": "clientBeatInterval", "value": "6000"}
    assert await env.text("PUT", "/nacos/v1/ns/ops/switches", params) == (200, "ok")
    assert (await env.json("GET", SWITCHES))["clientBeatInterval"] == 6000
    assert (await env.json("GET", "/nacos/v1/ns/ops/metrics"))["status"] == "UP"
    assert (await env.json("GET", "/nacos/v1/ns/ops/push/state"))["total"] == 0


async def test_push_state_of_an_app_that_pushes_nothing(env: Any) -> None:
    answer = await env.json("GET", "/nacos/v1/ns/operator/push/state", {"detail": "true"})
    assert answer == {"succeed": 0, "total": 0, "failed": 0, "ratio": 0, "data": [], "reset": False}
    status, body = await env.text("GET", "/nacos/v1/ns/operator/push/state", {"reset": "maybe"})
    assert status == 400
    assert "reset" in body


@pytest.fixture
def saved_levels() -> Iterator[None]:
    names = ("naraft.raft", "naraft.replica", "naraft.transport", "naraft.digest", "naraft.x.y")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("saved_levels")
async def test_log_sets_the_level_of_a_nacos_log_name_or_a_naraft_logger(env: Any) -> None:
    params = {"logName": "naming-raft", "logLevel": "debug"}
    assert await env.text("PUT", "/nacos/v1/ns/operator/log", params) == (200, "ok")
    for name in ("naraft.raft", "naraft.replica", "naraft.transport", "naraft.digest"):
        assert logging.getLogger(name).level == logging.DEBUG
    params = {"logName": "naraft.x.y", "logLevel": "WARN"}
    assert await env.text("PUT", "/nacos/v1/ns/ops/log", params) == (200, "ok")
    assert logging.getLogger("naraft.x.y").level == logging.WARNING
    params = {"logName": "naming-raft", "logLevel": "off"}
    assert await env.text("PUT", "/nacos/v1/ns/operator/log", params) == (200, "ok")
    assert not logging.getLogger("naraft.raft").isEnabledFor(logging.CRITICAL)


@pytest.mark.parametrize(
    ("params", "wire_field"),
    [
        pytest.param({"logLevel": "INFO"}, "logName", id="no-name"),
        pytest.param({"logName": "naming-raft"}, "logLevel", id="no-level"),
        pytest.param({"logName": "naming-distro", "logLevel": "INFO"}, "logName", id="distro"),
        pytest.param({"logName": "requests", "logLevel": "INFO"}, "logName", id="not-ours"),
        pytest.param({"logName": "naraft." + "a" * 200, "logLevel": "INFO"}, "logName",
                     id="too-long"),
        pytest.param({"logName": "naming-raft", "logLevel": "LOUD"}, "logLevel", id="level"),
    ],
)  # fmt: skip
@pytest.mark.usefixtures("saved_levels")
async def test_bad_log_requests_are_400_naming_the_field_and_change_nothing(
    env: Any, params: dict[str, str], wire_field: str
) -> None:
    before = logging.getLogger("naraft.raft").level
    status, body = await env.text("PUT", "/nacos/v1/ns/operator/log", params)
    assert status == 400
    assert wire_field in body
    assert logging.getLogger("naraft.raft").level == before


async def test_catalog_rt_lists_each_cluster_as_never_checked(env: Any) -> None:
    await register(env)
    await register(env, ip="10.0.0.2", clusterName="c2")
    answer = await env.json("GET", "/nacos/v1/ns/catalog/rt/service", {"serviceName": "svc"})
    never = {"checkRTBest": 2**63 - 1, "checkRTWorst": 0, "checkRTNormalized": 2000}
    assert answer == {"clusters": [{"name": "DEFAULT", **never}, {"name": "c2", **never}]}
    status, body = await env.text("GET", "/nacos/v1/ns/catalog/rt/service", {"serviceName": "no"})
    assert status == 404
    assert "DEFAULT_GROUP@@no" in body
    status, body = await env.text("GET", "/nacos/v1/ns/catalog/rt/service")
    assert status == 400
    assert "serviceName" in body


@pytest.mark.usefixtures("saved_levels")
async def test_core_ops_log_sets_a_core_log_name_and_answers_200() -> None:
    app = make_app(Env().naming, extra_routes=core_ops_routes())
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        params = {"logName": "core-raft", "logLevel": "trace"}
        answer = await client.put("/nacos/v1/core/ops/log", params=params)
        assert (answer.status, await answer.text()) == (200, "200")
        assert logging.getLogger("naraft.raft").level == 5
        params = {"logName": "core-distro", "logLevel": "INFO"}
        refused = await client.put("/nacos/v1/core/ops/log", params=params)
        assert refused.status == 400
        assert "logName" in await refused.text()
        assert logging.getLogger("naraft.raft").level == 5
    finally:
        await client.close()


class LedMembers(Members):
    """The same members, as a node that knows the leader reports them."""

    def __init__(self, leader: str | None) -> None:
        super().__init__()
        self.leader = leader

    def servers(self) -> list[ServerInfo]:
        return [
            ServerInfo(ip=m.ip, port=m.port, state=m.state, is_self=m.is_self,
                       extend_info={"leader": self.leader})
            for m in super().servers()
        ]  # fmt: skip


async def test_distro_views_name_the_leader_and_the_members() -> None:
    env = Env()
    members = LedMembers("10.0.0.20:8848")
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(env.naming, servers=members))
    )
    await client.start_server()
    try:
        params = {"ip": "10.0.0.1", "port": "80", "serviceName": "svc"}
        assert (await client.post("/nacos/v1/ns/instance", params=params)).status == 200
        for base in ("/nacos/v1/ns/operator", "/nacos/v1/ns/ops"):
            answer = await client.get(f"{base}/distro/server", params={"serviceName": "svc"})
            assert (answer.status, await answer.json()) == (
                200,
                {"responsibleServer": "10.0.0.20:8848"},
            )
        missing = await client.get(
            "/nacos/v1/ns/operator/distro/server", params={"serviceName": "nope"}
        )
        assert missing.status == 404
        status = await (await client.get("/nacos/v1/ns/operator/distro/status")).json()
        assert [m["address"] for m in status["status"]] == [
            "10.0.0.20:8848", "10.0.0.3:8848", "10.0.0.2:8848",
        ]  # fmt: skip
        other = await client.get("/nacos/v1/ns/operator/distro/status", params={"action": "x"})
        assert await other.json() == {}
        members.leader = None
        leaderless = await client.get(
            "/nacos/v1/ns/operator/distro/server", params={"serviceName": "svc"}
        )
        assert leaderless.status == 503
    finally:
        await client.close()
