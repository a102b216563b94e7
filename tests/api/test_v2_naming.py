"""/nacos/v2/ns/…: Nacos 2.x's instance and service API over the same NamingService as v1,
answering Nacos's `Result` and its `ErrorCode`s; what one API writes the other reads."""

from __future__ import annotations

from typing import Any

from naraft.naming.keys import ServiceKey

V2_INSTANCE = "/nacos/v2/ns/instance"
V2_LIST = "/nacos/v2/ns/instance/list"
V2_BEAT = "/nacos/v2/ns/instance/beat"
V2_SERVICE = "/nacos/v2/ns/service"
V2_SERVICES = "/nacos/v2/ns/service/list"
V1_INSTANCE = "/nacos/v1/ns/instance"
V1_LIST = "/nacos/v1/ns/instance/list"
V2_BATCH = "/nacos/v2/ns/instance/metadata/batch"

SVC = ServiceKey(namespace_id="public", group_name="G1", service_name="svc")
ONE = {"serviceName": "svc", "groupName": "G1", "ip": "10.0.0.1", "port": "8080"}


async def v2(env: Any, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
    response = await env.call(method, path, params)
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


def ok(data: object) -> dict[str, object]:
    return {"code": 0, "message": "success", "data": data}


async def test_register_list_detail_update_deregister(env: Any) -> None:
    params = {**ONE, "weight": "2.5", "metadata": '{"k":"v"}', "clusterName": "c1"}
    assert await v2(env, "POST", V2_INSTANCE, params) == (200, ok("ok"))
    (instance,) = env.state.instances(SVC)
    assert (instance.weight, instance.metadata, instance.cluster_name) == (2.5, {"k": "v"}, "c1")

    status, listed = await v2(env, "GET", V2_LIST, {"serviceName": "svc", "groupName": "G1"})
    assert status == 200
    assert listed["code"] == 0
    data = listed["data"]
    assert data["name"] == "G1@@svc"
    assert data["groupName"] == "G1"
    assert data["reachProtectionThreshold"] is False
    assert "dom" not in data  # a v1-only field
    (host,) = data["hosts"]
    assert (host["ip"], host["port"], host["serviceName"]) == ("10.0.0.1", 8080, "G1@@svc")

    status, detail = await v2(env, "GET", V2_INSTANCE, {**ONE, "clusterName": "c1"})
    assert status == 200
    assert detail["data"]["serviceName"] == "G1@@svc"
    assert (detail["data"]["weight"], detail["data"]["metadata"]) == (2.5, {"k": "v"})

    updated = {**ONE, "clusterName": "c1", "weight": "5"}
    assert await v2(env, "PUT", V2_INSTANCE, updated) == (200, ok("ok"))
    assert env.state.instances(SVC)[0].weight == 5.0

    gone = {**ONE, "clusterName": "c1"}
    assert await v2(env, "DELETE", V2_INSTANCE, gone) == (200, ok("ok"))
    assert not env.state.instances(SVC)


async def test_v2_register_is_seen_by_v1_and_v1_register_by_v2(env: Any) -> None:
    await v2(env, "POST", V2_INSTANCE, ONE)
    v1 = await env.json("GET", V1_LIST, {"serviceName": "svc", "groupName": "G1"})
    assert [h["ip"] for h in v1["hosts"]] == ["10.0.0.1"]

    status, body = await env.text("POST", V1_INSTANCE, {**ONE, "ip": "10.0.0.2"})
    assert (status, body) == (200, "ok")
    _, listed = await v2(env, "GET", V2_LIST, {"serviceName": "svc", "groupName": "G1"})
    assert sorted(h["ip"] for h in listed["data"]["hosts"]) == ["10.0.0.1", "10.0.0.2"]


async def test_a_missing_parameter_is_10000_naming_it_and_writes_nothing(env: Any) -> None:
    before = env.snapshot()
    for missing in ("serviceName", "ip", "port"):
        params = {k: v for k, v in ONE.items() if k != missing}
        status, body = await v2(env, "POST", V2_INSTANCE, params)
        assert status == 400
        assert (body["code"], body["message"]) == (10000, "parameter missing")
        assert missing in body["data"]
    assert env.snapshot() == before


async def test_a_bad_value_is_a_validate_error_naming_the_field(env: Any) -> None:
    status, body = await v2(env, "POST", V2_INSTANCE, {**ONE, "port": "70000"})
    assert (status, body["code"], body["message"]) == (400, 20002, "parameter validate error")
    assert "port" in body["data"]
    status, body = await v2(env, "POST", V2_INSTANCE, {**ONE, "weight": "-1"})
    assert (status, body["code"], body["message"]) == (400, 21001, "weight error")
    assert "weight" in body["data"]
    status, body = await v2(env, "POST", V2_INSTANCE, {**ONE, "metadata": "{not json"})
    assert (status, body["code"]) == (400, 20002)
    assert "metadata" in body["data"]
    assert not env.state.instances(SVC)


async def test_batch_metadata_answers_its_result_and_refuses_in_the_v2_shape(env: Any) -> None:
    for ip in ("10.0.0.1", "10.0.0.2"):
        params = {**ONE, "ip": ip, "metadata": '{"zone":"a","old":"1"}', "ephemeral": "false"}
        assert await v2(env, "POST", V2_INSTANCE, params) == (200, ok("ok"))
    batch = {"serviceName": "svc", "groupName": "G1", "consistencyType": "persist"}

    merged = await v2(env, "PUT", V2_BATCH, {**batch, "metadata": '{"zone":"b"}'})
    removed = await v2(env, "DELETE", V2_BATCH, {**batch, "metadata": "old=x"})

    names = ["10.0.0.1:8080:unknown:DEFAULT:persist", "10.0.0.2:8080:unknown:DEFAULT:persist"]
    assert merged == removed == (200, ok({"updated": names}))
    assert [dict(i.metadata) for i in env.state.instances(SVC)] == [{"zone": "b"}] * 2
    before = env.snapshot()
    status, body = await v2(env, "PUT", V2_BATCH, batch)
    assert (status, body["code"]) == (400, 10000)
    assert "metadata" in body["data"]
    status, body = await v2(
        env, "PUT", V2_BATCH, {**batch, "consistencyType": "x", "metadata": "k=v"}
    )
    assert (status, body["code"]) == (400, 20002)
    assert "consistencyType" in body["data"]
    assert env.snapshot() == before


async def test_not_found_instance_and_service(env: Any) -> None:
    status, body = await v2(env, "GET", V2_INSTANCE, ONE)
    assert (status, body["code"], body["message"]) == (404, 21008, "service not exist")
    await v2(env, "POST", V2_INSTANCE, ONE)
    status, body = await v2(env, "GET", V2_INSTANCE, {**ONE, "port": "9"})
    assert (status, body["code"], body["message"]) == (404, 20004, "resource not found")
    assert body["data"] == "no matched ip found!"
    # an update is strict in 2.x: the instance must exist
    status, body = await v2(env, "PUT", V2_INSTANCE, {**ONE, "port": "9"})
    assert (status, body["code"], body["message"]) == (404, 21003, "instance not found")
    assert [i.port for i in env.state.instances(SVC)] == [8080]


async def test_service_crud_and_list(env: Any) -> None:
    svc = {"serviceName": "s2", "groupName": "G1", "protectThreshold": "0.5"}
    assert await v2(env, "POST", V2_SERVICE, {**svc, "metadata": '{"a":"b"}'}) == (200, ok("ok"))
    status, body = await v2(env, "POST", V2_SERVICE, svc)
    assert (status, body["code"], body["message"]) == (400, 21007, "service already exist")

    _, got = await v2(env, "GET", V2_SERVICE, {"serviceName": "s2", "groupName": "G1"})
    assert got["data"]["serviceName"] == "s2"
    assert got["data"]["namespace"] == "public"
    assert (got["data"]["protectThreshold"], got["data"]["metadata"]) == (0.5, {"a": "b"})

    assert await v2(env, "PUT", V2_SERVICE, {**svc, "protectThreshold": "0.7"}) == (200, ok("ok"))
    v1 = await env.json("GET", "/nacos/v1/ns/service", {"serviceName": "s2", "groupName": "G1"})
    assert v1["protectThreshold"] == 0.7

    _, listed = await v2(env, "GET", V2_SERVICES, {"groupName": "G1"})
    assert listed == ok({"count": 1, "services": ["s2"]})

    assert await v2(env, "DELETE", V2_SERVICE, {"serviceName": "s2", "groupName": "G1"}) == (
        200,
        ok("ok"),
    )
    status, body = await v2(env, "DELETE", V2_SERVICE, {"serviceName": "s2", "groupName": "G1"})
    assert (status, body["code"]) == (404, 21008)
    status, body = await v2(env, "GET", V2_SERVICE, {"serviceName": "s2", "groupName": "G1"})
    assert (status, body["code"]) == (404, 21008)
    status, body = await v2(env, "GET", V2_SERVICE, {"groupName": "G1"})
    assert (status, body["code"]) == (400, 10000)
    assert "serviceName" in body["data"]


async def test_beat_answers_its_object_as_nacos_does(env: Any) -> None:
    await v2(env, "POST", V2_INSTANCE, ONE)
    status, body = await v2(env, "PUT", V2_BEAT, {**ONE, "clusterName": "DEFAULT"})
    assert status == 200
    assert body["code"] == 10200
    assert "clientBeatInterval" in body
    assert len(env.beats.recorded) == 2  # the register's and the beat's


async def test_unknown_v2_paths_and_methods_answer_in_the_v2_shape(env: Any) -> None:
    status, body = await v2(env, "GET", "/nacos/v2/ns/nope", {})
    assert (status, body["code"], body["message"]) == (404, 20004, "resource not found")
    assert "/nacos/v2/ns/nope" in body["data"]
    status, body = await v2(env, "PATCH", V2_INSTANCE, ONE)
    assert (status, body["code"]) == (405, 20002)
