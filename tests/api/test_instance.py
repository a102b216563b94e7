"""/nacos/v1/ns/instance…: what real clients send (docs/nacos-compat.md) and what they get."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.api.conftest import T0

from naraft.naming.commands import RegisterInstance
from naraft.naming.keys import ServiceKey
from naraft.naming.model import Instance
from naraft.raft import NodeId, NotLeaderError

INSTANCE = "/nacos/v1/ns/instance"
LIST = "/nacos/v1/ns/instance/list"
BEAT = "/nacos/v1/ns/instance/beat"
JAVA = {"User-Agent": "Nacos-Java-Client:v1.0.0"}
PY_AGENT = {"User-Agent": "Nacos-Python-Client:v0.1.16"}

SVC_A = ServiceKey(namespace_id="public", group_name="G1", service_name="svcA")

# Recorded from nacos-sdk-python 2.0.11 (docs/nacos-compat.md#clients-studied).
PY_REGISTER = {
    "ip": "127.0.0.1",
    "port": "9001",
    "serviceName": "svcA",
    "weight": "2.5",
    "enable": "True",
    "healthy": "True",
    "clusterName": "c1",
    "ephemeral": "False",
    "groupName": "G1",
    "metadata": '{"k": "v", "n": 1}',
}
# Recorded from the npm nacos client 2.6.3.
NODE_REGISTER = {
    "namespaceId": "public",
    "serviceName": "G1@@nsvcA",
    "groupName": "G1",
    "clusterName": "c1",
    "ip": "127.0.0.1",
    "port": "9101",
    "weight": "2.5",
    "enable": "true",
    "healthy": "true",
    "ephemeral": "false",
    "metadata": '{"k":"v"}',
    "username": "nacos",
    "password": "secret",
}


async def register(env: Any, **params: str) -> None:
    base = {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc"}
    status, body = await env.text("POST", INSTANCE, {**base, **params})
    assert (status, body) == (200, "ok")


async def test_python_register_answers_exactly_ok_and_stores_the_instance(env: Any) -> None:
    response = await env.call("POST", INSTANCE, PY_REGISTER, headers=PY_AGENT)

    assert response.status == 200
    assert await response.read() == b"ok"
    assert response.content_type == "text/plain"
    (instance,) = env.state.instances(SVC_A)
    assert (instance.ip, instance.port, instance.cluster_name) == ("127.0.0.1", 9001, "c1")
    assert (instance.weight, instance.ephemeral, instance.metadata) == (
        2.5,
        False,
        {"k": "v", "n": "1"},
    )


async def test_plus_in_the_query_string_decodes_as_a_space(env: Any) -> None:
    raw = (
        f"{INSTANCE}?ip=127.0.0.1&port=9002&serviceName=svcA&groupName=G1"
        "&metadata=%7B%22k%22%3A+%22v+w%22%7D"
    )
    response = await env.client.post(raw)
    assert response.status == 200, await response.text()
    (instance,) = env.state.instances(SVC_A)
    assert instance.metadata == {"k": "v w"}


async def test_form_body_parameters_are_read_too(env: Any) -> None:
    response = await env.client.post(
        INSTANCE, data={"ip": "10.0.0.9", "port": "80", "serviceName": "formsvc"}
    )
    assert (response.status, await response.text()) == (200, "ok")
    key = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="formsvc")
    assert len(env.state.instances(key)) == 1


async def test_python_cluster_none_is_stored_as_a_cluster_named_none(env: Any) -> None:
    await register(env, clusterName="None")
    (instance,) = env.state.instances(
        ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
    )
    assert instance.cluster_name == "None"


async def test_missing_namespace_and_public_are_the_same_registry(env: Any) -> None:
    await register(env)
    await register(env, namespaceId="public", ip="10.0.0.2")
    answer = await env.json("GET", LIST, {"serviceName": "svc"})
    assert [h["ip"] for h in answer["hosts"]] == ["10.0.0.1", "10.0.0.2"]


async def test_other_namespaces_need_no_creation_and_are_isolated(env: Any) -> None:
    await register(env, namespaceId="ns1")
    answer = await env.json("GET", LIST, {"serviceName": "svc"})
    assert answer["hosts"] == []
    answer = await env.json("GET", LIST, {"serviceName": "svc", "namespaceId": "ns1"})
    assert len(answer["hosts"]) == 1


async def test_node_list_answer_has_every_field_in_order(env: Any) -> None:
    await env.text("POST", INSTANCE, NODE_REGISTER)
    params = {
        "namespaceId": "public",
        "serviceName": "G1@@nsvcA",
        "clusters": "",
        "udpPort": "0",
        "clientIP": "192.0.2.2",
        "healthyOnly": "false",
    }
    answer = await env.json("GET", LIST, params, headers=JAVA)

    assert list(answer) == [
        "name", "groupName", "clusters", "cacheMillis", "hosts", "lastRefTime", "checksum",
        "allIPs", "reachProtectThreshold", "valid", "dom", "env", "useSpecifiedURL", "metadata",
    ]  # fmt: skip
    assert answer["name"] == "G1@@nsvcA"
    assert answer["groupName"] == "G1"
    assert answer["clusters"] == ""
    assert answer["cacheMillis"] == 3000
    assert answer["lastRefTime"] == env.clock.now
    assert answer["dom"] == "G1@@nsvcA"
    assert answer["reachProtectThreshold"] is False
    assert isinstance(answer["checksum"], str)
    assert len(answer["checksum"]) == 32
    assert answer["hosts"] == [
        {
            "ip": "127.0.0.1",
            "port": 9101,
            "valid": True,
            "healthy": True,
            "marked": False,
            "instanceId": "127.0.0.1#9101#c1#G1@@nsvcA",
            "metadata": {"k": "v"},
            "enabled": True,
            "weight": 2.5,
            "clusterName": "c1",
            "serviceName": "G1@@nsvcA",
            "ephemeral": False,
        }
    ]


async def test_python_agent_gets_ungrouped_service_names_in_hosts(env: Any) -> None:
    await env.text("POST", INSTANCE, PY_REGISTER)
    params = {"serviceName": "svcA", "healthyOnly": "False", "groupName": "G1"}
    answer = await env.json("GET", LIST, params, headers=PY_AGENT)
    assert answer["name"] == "G1@@svcA"
    assert answer["dom"] == "svcA"
    assert answer["hosts"][0]["serviceName"] == "svcA"


async def test_list_of_an_unknown_service_is_200_with_no_hosts(env: Any) -> None:
    answer = await env.json("GET", LIST, {"serviceName": "ghost", "clusters": "c1"})
    assert (answer["name"], answer["clusters"], answer["cacheMillis"]) == (
        "DEFAULT_GROUP@@ghost",
        "c1",
        3000,
    )
    assert answer["hosts"] == []


async def test_hosts_are_stable_between_polls(env: Any) -> None:
    await register(env, ip="10.0.0.2")
    await register(env, ip="10.0.0.1")
    first = await env.json("GET", LIST, {"serviceName": "svc"})
    env.clock.now += 5000
    second = await env.json("GET", LIST, {"serviceName": "svc"})
    assert first["hosts"] == second["hosts"]
    assert first["checksum"] == second["checksum"]
    assert [h["ip"] for h in first["hosts"]] == ["10.0.0.1", "10.0.0.2"]


async def test_clusters_filter_and_echo(env: Any) -> None:
    await register(env, clusterName="c1", ip="10.0.0.1")
    await register(env, clusterName="c2", ip="10.0.0.2")
    await register(env, clusterName="c3", ip="10.0.0.3")
    answer = await env.json("GET", LIST, {"serviceName": "svc", "clusters": "c1,c3"})
    assert answer["clusters"] == "c1,c3"
    assert [h["clusterName"] for h in answer["hosts"]] == ["c1", "c3"]


async def test_disabled_instances_are_hidden(env: Any) -> None:
    await register(env, ip="10.0.0.1", enabled="false")
    await register(env, ip="10.0.0.2")
    answer = await env.json("GET", LIST, {"serviceName": "svc"})
    assert [h["ip"] for h in answer["hosts"]] == ["10.0.0.2"]


async def test_healthy_only_drops_unhealthy_instances(env: Any) -> None:
    await register(env, ip="10.0.0.1", healthy="false")
    await register(env, ip="10.0.0.2")
    answer = await env.json("GET", LIST, {"serviceName": "svc", "healthyOnly": "True"})
    assert [h["ip"] for h in answer["hosts"]] == ["10.0.0.2"]
    answer = await env.json("GET", LIST, {"serviceName": "svc"})
    assert [(h["ip"], h["healthy"]) for h in answer["hosts"]] == [
        ("10.0.0.1", False),
        ("10.0.0.2", True),
    ]


async def test_protect_threshold_returns_everyone_as_healthy(env: Any) -> None:
    await register(env, ip="10.0.0.1", healthy="false")
    await register(env, ip="10.0.0.2", healthy="false")
    answer = await env.json("GET", LIST, {"serviceName": "svc", "healthyOnly": "true"})
    assert answer["reachProtectThreshold"] is True
    assert [(h["ip"], h["healthy"], h["valid"]) for h in answer["hosts"]] == [
        ("10.0.0.1", True, True),
        ("10.0.0.2", True, True),
    ]


async def test_protect_threshold_counts_the_service_threshold(env: Any) -> None:
    await env.text(
        "POST", "/nacos/v1/ns/service", {"serviceName": "svc", "protectThreshold": "0.5"}
    )
    await register(env, ip="10.0.0.1", healthy="false")
    await register(env, ip="10.0.0.2")
    answer = await env.json("GET", LIST, {"serviceName": "svc", "healthyOnly": "true"})
    assert answer["reachProtectThreshold"] is True  # 1/2 <= 0.5
    assert len(answer["hosts"]) == 2
    await register(env, ip="10.0.0.3")
    answer = await env.json("GET", LIST, {"serviceName": "svc", "healthyOnly": "true"})
    assert answer["reachProtectThreshold"] is False  # 2/3 > 0.5
    assert [h["ip"] for h in answer["hosts"]] == ["10.0.0.2", "10.0.0.3"]


async def test_list_with_udp_port_records_a_push_target(env: Any) -> None:
    await register(env)
    params = {"serviceName": "svc", "clusters": "DEFAULT", "udpPort": "53733",
              "clientIP": "192.0.2.2"}  # fmt: skip
    answer = await env.json("GET", LIST, params, headers=JAVA)
    assert answer["cacheMillis"] == 3000  # no pushes are sent yet, so keep polling fast
    subscribers = await env.json("GET", "/nacos/v1/ns/service/subscribers", {"serviceName": "svc"})
    assert subscribers == {
        "subscribers": [
            {
                "addrStr": "192.0.2.2:53733",
                "agent": "Nacos-Java-Client:v1.0.0",
                "app": "unknown",
                "ip": "192.0.2.2",
                "port": 53733,
                "namespaceId": "public",
                "serviceName": "DEFAULT_GROUP@@svc",
                "cluster": "DEFAULT",
            }
        ],
        "count": 1,
    }


async def test_list_with_udp_port_zero_records_nothing(env: Any) -> None:
    params = {"serviceName": "svc", "udpPort": "0", "clientIP": "192.0.2.2"}
    await env.json("GET", LIST, params)
    answer = await env.json("GET", "/nacos/v1/ns/service/subscribers", {"serviceName": "svc"})
    assert answer == {"subscribers": [], "count": 0}


async def test_linearizable_list_goes_through_the_read_barrier(env: Any) -> None:
    await env.json("GET", LIST, {"serviceName": "svc", "linearizable": "true"})
    assert (env.proposer.read_barriers, env.proposer.local_reads) == (1, 0)


async def test_a_plain_list_is_local_once_the_commits_heard_of_are_applied(env: Any) -> None:
    await env.json("GET", LIST, {"serviceName": "svc"})
    assert (env.proposer.read_barriers, env.proposer.local_reads) == (0, 1)


async def test_detail_answers_the_contract_shape(env: Any) -> None:
    await env.text("POST", INSTANCE, PY_REGISTER)
    params = {"serviceName": "G1@@svcA", "ip": "127.0.0.1", "port": "9001", "cluster": "c1",
              "clusterName": "c1"}  # fmt: skip
    answer = await env.json("GET", INSTANCE, params)
    assert answer == {
        "service": "G1@@svcA",
        "ip": "127.0.0.1",
        "port": 9001,
        "clusterName": "c1",
        "weight": 2.5,
        "healthy": True,
        "instanceId": "127.0.0.1#9001#c1#G1@@svcA",
        "metadata": {"k": "v", "n": "1"},
    }
    assert list(answer) == ["service", "ip", "port", "clusterName", "weight", "healthy",
                            "instanceId", "metadata"]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"serviceName": "nope"}, "no service DEFAULT_GROUP@@nope found!", id="svc"),
        pytest.param(
            {"serviceName": "svc", "clusterName": "other"},
            "no ips found for cluster other in service DEFAULT_GROUP@@svc",
            id="cluster",
        ),
        pytest.param({"serviceName": "svc", "port": "1"}, "no matched ip found!", id="ip"),
    ],
)
async def test_detail_of_a_missing_instance_is_404(
    env: Any, params: dict[str, str], message: str
) -> None:
    await register(env)
    status, body = await env.text("GET", INSTANCE, {"ip": "10.0.0.1", "port": "8080", **params})
    assert (status, body) == (404, message)


async def test_python_modify_is_an_upsert_that_resets_unsent_fields(env: Any) -> None:
    await env.text("POST", INSTANCE, PY_REGISTER)
    params = {"ip": "127.0.0.1", "port": "9001", "serviceName": "svcA", "ephemeral": "False",
              "groupName": "G1", "clusterName": "c1", "enable": "False", "weight": "5"}  # fmt: skip
    response = await env.call("PUT", INSTANCE, params, headers=PY_AGENT)
    assert (response.status, await response.text()) == (200, "ok")
    (instance,) = env.state.instances(SVC_A)
    assert (instance.weight, instance.enabled, instance.metadata) == (5.0, False, {})
    answer = await env.json("GET", LIST, {"serviceName": "svcA", "groupName": "G1"})
    assert answer["hosts"] == []  # disabled


async def test_python_modify_of_an_unknown_instance_registers_it(env: Any) -> None:
    params = {"ip": "10.0.0.5", "port": "80", "serviceName": "svc"}
    response = await env.call("PUT", INSTANCE, params, headers=PY_AGENT)
    assert response.status == 200
    assert env.state.all_services() != ()


async def test_java_update_of_an_unknown_instance_is_400_and_writes_nothing(env: Any) -> None:
    params = {"ip": "10.0.0.5", "port": "80", "serviceName": "svc"}
    response = await env.call("PUT", INSTANCE, params, headers=JAVA)
    assert response.status == 400
    assert "instance not exist" in await response.text()
    assert env.snapshot() == {}


async def test_patch_changes_only_what_was_sent(env: Any) -> None:
    await register(env, weight="3", metadata='{"a":"1"}')
    status, body = await env.text(
        "PATCH", INSTANCE, {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc", "weight": "7"}
    )
    assert (status, body) == (200, "ok")
    (instance,) = env.state.instances(
        ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
    )
    assert (instance.weight, instance.metadata) == (7.0, {"a": "1"})


async def test_patch_finds_persistent_instances_without_the_ephemeral_flag(env: Any) -> None:
    await register(env, ephemeral="false")
    status, _ = await env.text(
        "PATCH",
        INSTANCE,
        {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc", "enabled": "false"},
    )
    assert status == 200
    assert (
        env.naming.state.instances(
            ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")
        )[0].enabled
        is False
    )


async def test_patch_of_an_unknown_instance_is_400(env: Any) -> None:
    status, _ = await env.text(
        "PATCH", INSTANCE, {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc", "weight": "1"}
    )
    assert status == 400
    assert env.snapshot() == {}


async def test_deregister_removes_and_answers_ok(env: Any) -> None:
    await env.text("POST", INSTANCE, NODE_REGISTER)
    params = {"namespaceId": "public", "serviceName": "G1@@nsvcA", "clusterName": "c1",
              "ip": "127.0.0.1", "port": "9101", "ephemeral": "false"}  # fmt: skip
    assert await env.text("DELETE", INSTANCE, params) == (200, "ok")
    answer = await env.json("GET", LIST, {"serviceName": "G1@@nsvcA"})
    assert answer["hosts"] == []


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"serviceName": "ghost"}, id="unknown-service"),
        pytest.param({"serviceName": "svc", "port": "9"}, id="unknown-instance"),
        pytest.param({"serviceName": "svc", "ephemeral": "false"}, id="wrong-ephemeral-flag"),
        pytest.param({"serviceName": "svc", "clusterName": "c9"}, id="wrong-cluster"),
    ],
)
async def test_deregister_of_nothing_still_answers_ok(env: Any, params: dict[str, str]) -> None:
    await register(env)
    before = env.snapshot()
    status, body = await env.text("DELETE", INSTANCE, {"ip": "10.0.0.1", "port": "8080", **params})
    assert (status, body) == (200, "ok")
    assert env.snapshot() == before


@pytest.mark.parametrize(
    ("method", "params", "wire_field"),
    [
        pytest.param("POST", {"port": "80", "serviceName": "s"}, "ip", id="register-no-ip"),
        pytest.param("POST", {"ip": "1.2.3.4", "serviceName": "s"}, "port", id="register-no-port"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "0", "serviceName": "s"}, "port",
                     id="register-port-zero"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80"}, "serviceName", id="register-no-svc"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80", "serviceName": "s",
                              "weight": "10001"}, "weight", id="register-weight"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80", "serviceName": "s",
                              "metadata": "[1]"}, "metadata", id="register-metadata"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80", "serviceName": "s",
                              "healthy": "sure"}, "healthy", id="register-healthy"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80", "serviceName": "s",
                              "clusterName": "c_1"}, "clusterName", id="register-cluster"),
        pytest.param("POST", {"ip": "1.2.3.4", "port": "80", "serviceName": "s",
                              "namespaceId": "a b"}, "namespaceId", id="register-namespace"),
        pytest.param("DELETE", {"ip": "1.2.3.4", "serviceName": "s"}, "port", id="delete-no-port"),
        pytest.param("PUT", {"ip": "1.2.3.4", "port": "x", "serviceName": "s"}, "port",
                     id="update-port"),
        pytest.param("GET", {"ip": "1.2.3.4", "port": "80"}, "serviceName", id="detail-no-svc"),
    ],
)  # fmt: skip
async def test_bad_input_is_400_naming_the_field_and_writes_nothing(
    env: Any, method: str, params: dict[str, str], wire_field: str
) -> None:
    await register(env)
    before = env.snapshot()
    status, body = await env.text(method, INSTANCE, params)
    assert status == 400
    assert wire_field in body
    assert "Traceback" not in body
    assert env.snapshot() == before


@pytest.mark.parametrize(
    ("params", "wire_field"),
    [
        pytest.param({}, "serviceName", id="no-service"),
        pytest.param({"serviceName": "s", "healthyOnly": "maybe"}, "healthyOnly",
                     id="healthy-only"),
        pytest.param({"serviceName": "s", "udpPort": "70000", "clientIP": "1.2.3.4"}, "udpPort",
                     id="udp-port"),
        pytest.param({"serviceName": "s", "clusters": "a,b_c"}, "clusters", id="clusters"),
    ],
)  # fmt: skip
async def test_bad_list_params_are_400_naming_the_field(
    env: Any, params: dict[str, str], wire_field: str
) -> None:
    status, body = await env.text("GET", LIST, params)
    assert status == 400
    assert wire_field in body


# ------------------------------------------------------------------ beats

PY_BEAT = {
    "serviceName": "G1@@svcE",
    "beat": '{"serviceName": "G1@@svcE", "ip": "127.0.0.1", "port": 9003, "weight": 1.0,'
    ' "ephemeral": true, "cluster": "c2", "metadata": {"a": "b"}}',
    "groupName": "G1",
}
NODE_BEAT = {
    "beat": '{"serviceName":"G1@@nsvcA","ip":"127.0.0.1","port":9104,"cluster":"DEFAULT",'
    '"weight":1,"metadata":{},"scheduled":true}',
    "namespaceId": "public",
    "serviceName": "G1@@nsvcA",
}


async def test_beat_for_an_unknown_instance_re_registers_it_from_the_payload(env: Any) -> None:
    answer = await env.json("PUT", BEAT, PY_BEAT)

    assert answer == {"clientBeatInterval": 5000, "code": 10200, "lightBeatEnabled": True}
    key = ServiceKey(namespace_id="public", group_name="G1", service_name="svcE")
    (instance,) = env.state.instances(key)
    assert (instance.ip, instance.port, instance.cluster_name) == ("127.0.0.1", 9003, "c2")
    assert (instance.metadata, instance.ephemeral) == ({"a": "b"}, True)
    assert env.beats.recorded == [(instance.key, env.clock.now)]


async def test_node_beat_without_ephemeral_re_registers_an_ephemeral_instance(env: Any) -> None:
    await env.json("PUT", BEAT, NODE_BEAT)
    key = ServiceKey(namespace_id="public", group_name="G1", service_name="nsvcA")
    (instance,) = env.state.instances(key)
    assert (instance.ephemeral, instance.cluster_name, instance.weight) == (True, "DEFAULT", 1.0)


async def test_beat_for_a_known_instance_refreshes_it_without_a_write(env: Any) -> None:
    await env.json("PUT", BEAT, PY_BEAT)
    before, proposals = env.snapshot(), len(env.proposer.proposed)
    env.clock.now += 5000

    answer = await env.json("PUT", BEAT, PY_BEAT)

    assert answer["code"] == 10200
    assert env.snapshot() == before
    assert len(env.proposer.proposed) == proposals
    assert env.beats.recorded[-1][1] == env.clock.now


async def test_beat_revives_an_unhealthy_instance(env: Any) -> None:
    await register(env, serviceName="G1@@svcE", ip="127.0.0.1", port="9003", clusterName="c2",
                   healthy="false")  # fmt: skip
    await env.json("PUT", BEAT, PY_BEAT)
    key = ServiceKey(namespace_id="public", group_name="G1", service_name="svcE")
    assert env.state.instances(key)[0].healthy is True


async def test_light_beat_for_an_unknown_instance_is_code_20404(env: Any) -> None:
    params = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"}
    answer = await env.json("PUT", BEAT, params)
    assert answer == {"clientBeatInterval": 5000, "code": 20404}
    assert env.snapshot() == {}
    assert env.proposer.read_barriers == 1  # unknown as of everything committed


async def test_light_beat_for_a_known_instance_is_ok(env: Any) -> None:
    await register(env)
    answer = await env.json("PUT", BEAT, {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"})
    assert answer["code"] == 10200


async def test_beat_interval_follows_instance_metadata(env: Any) -> None:
    await register(env, metadata='{"preserved.heart.beat.interval": "2000"}')
    answer = await env.json("PUT", BEAT, {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"})
    assert answer["clientBeatInterval"] == 2000


async def test_bad_beat_payload_is_400_and_writes_nothing(env: Any) -> None:
    status, body = await env.text("PUT", BEAT, {"serviceName": "svc", "beat": "{not json"})
    assert status == 400
    assert "beat" in body
    assert env.snapshot() == {}


# --------------------------------------------------------------- statuses


async def test_statuses_lists_ip_port_health(env: Any) -> None:
    await register(env, ip="10.0.0.1")
    await register(env, ip="10.0.0.2", healthy="false")
    answer = await env.json(
        "GET", "/nacos/v1/ns/instance/statuses", {"key": "public##DEFAULT_GROUP@@svc"}
    )
    assert answer == {"ips": ["10.0.0.1:8080_true", "10.0.0.2:8080_false"]}
    same = await env.json("GET", "/nacos/v1/ns/instance/statuses", {"key": "DEFAULT_GROUP@@svc"})
    assert same == answer


@pytest.mark.parametrize(
    ("key", "status"),
    [
        pytest.param(None, 400, id="missing"),
        pytest.param("svc", 400, id="ungrouped"),
        pytest.param("public##DEFAULT_GROUP@@ghost", 404, id="unknown"),
    ],
)
async def test_statuses_errors(env: Any, key: str | None, status: int) -> None:
    params = {} if key is None else {"key": key}
    code, _ = await env.text("GET", "/nacos/v1/ns/instance/statuses", params)
    assert code == status


@pytest.mark.parametrize("key", ["'@@x", "DEFAULT_GROUP@@", "G@@a@@b", "bad ns##G@@svc"])
async def test_a_bad_part_of_the_statuses_key_is_named_as_the_key(env: Any, key: str) -> None:
    """The client sent `key`: the message names it, not the part (`serviceName`,
    `groupName`, `namespaceId`) it was split into (found by tests/fuzz)."""
    code, text = await env.text("GET", "/nacos/v1/ns/instance/statuses", {"key": key})
    assert code == 400, text
    assert text.startswith("invalid parameter key: "), text


async def test_register_json_is_what_the_datum_holds(env: Any) -> None:
    await env.text("POST", INSTANCE, PY_REGISTER)
    datum = env.datums.get("com.alibaba.nacos.naming.iplist.public##G1@@svcA/127.0.0.1#9001#c1")
    assert orjson.loads(datum.value)["instanceId"] == ("127.0.0.1#9001#c1#G1@@svcA")


async def test_light_beat_for_an_instance_this_node_has_not_applied_asks_the_commit(
    env: Any,
) -> None:
    # the registration is committed, not yet applied here: the read barrier applies it
    registration = RegisterInstance(
        instance=Instance(
            service=ServiceKey(
                namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc"
            ),
            ip="10.0.0.1",
            port=8080,
        ),
        stamped_at_ms=T0,
    )

    async def barrier() -> None:
        env.state.apply(registration, 1)

    env.proposer.read_barrier = barrier
    answer = await env.json("PUT", BEAT, {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"})
    assert answer["code"] == 10200


async def test_a_follower_sends_a_light_beat_it_cannot_place_to_the_leader(env: Any) -> None:
    async def barrier() -> None:
        raise NotLeaderError(NodeId("127.0.0.1:9999"))

    env.proposer.read_barrier = barrier
    params = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080"}
    status, body = await env.text("PUT", BEAT, params)
    # NotLeaderError, which a node's forward middleware sends on; this app has none
    assert (status, "127.0.0.1:9999" in body) == (503, True)
