"""/nacos/v2/console/namespace…: Nacos 2.x's namespace API over v1's namespaces, in its
`Result`, with its parameter names and error codes; nothing written on a refusal."""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.conftest import v2_call, v2_ok

NAMESPACE = "/nacos/v2/console/namespace"
LIST = f"{NAMESPACE}/list"


async def test_create_list_show_update_delete_as_v1_sees_them(env: Any) -> None:
    public = (await env.json("GET", "/nacos/v1/console/namespaces"))["data"]
    assert await v2_call(env, "GET", LIST) == v2_ok(public)
    params = {"namespaceId": "dev", "namespaceName": "Dev", "namespaceDesc": "for devs"}
    assert await v2_call(env, "POST", NAMESPACE, params) == v2_ok(True)
    v1 = await env.json(
        "GET", "/nacos/v1/console/namespaces", {"show": "all", "namespaceId": "dev"}
    )
    assert await v2_call(env, "GET", NAMESPACE, {"namespaceId": "dev"}) == v2_ok(v1)
    assert v1["namespaceShowName"] == "Dev"
    assert [n["namespace"] for n in (await v2_call(env, "GET", LIST))[1]["data"]] == ["", "dev"]

    params = {"namespaceId": "dev", "namespaceName": "Develop", "namespaceDesc": "d"}
    assert await v2_call(env, "PUT", NAMESPACE, params) == v2_ok(True)
    shown = (await v2_call(env, "GET", NAMESPACE, {"namespaceId": "dev"}))[1]["data"]
    assert (shown["namespaceShowName"], shown["namespaceDesc"]) == ("Develop", "d")
    assert (await v2_call(env, "GET", NAMESPACE, {"namespaceId": ""}))[1]["data"] == public[0]

    assert await v2_call(env, "DELETE", NAMESPACE, {"namespaceId": "dev"}) == v2_ok(True)
    assert await v2_call(env, "GET", LIST) == v2_ok(public)


async def test_create_without_an_id_generates_one(env: Any) -> None:
    assert await v2_call(env, "POST", NAMESPACE, {"namespaceName": "Anon"}) == v2_ok(True)
    assert (await v2_call(env, "GET", LIST))[1]["data"][1]["namespace"] == "generated-id"


@pytest.mark.parametrize(
    ("method", "params", "status", "code", "wire_field"),
    [
        pytest.param("POST", {"namespaceId": "dev"}, 400, 10000, "namespaceName", id="no-name"),
        pytest.param("POST", {"namespaceId": "d.v", "namespaceName": "x"}, 400, 20001,
                     "namespaceId", id="bad-id"),
        pytest.param("POST", {"namespaceId": "x", "namespaceName": "a$b"}, 400, 22000,
                     "namespaceName", id="bad-name"),
        pytest.param("PUT", {"namespaceId": "ghost", "namespaceName": "g"}, 404, 22001, "ghost",
                     id="update-unknown"),
        pytest.param("PUT", {"namespaceId": "ghost", "namespaceName": "g@"}, 400, 22000,
                     "namespaceName", id="update-bad-name"),
        pytest.param("GET", {"namespaceId": "ghost"}, 404, 22001, "ghost", id="show-unknown"),
        pytest.param("GET", {}, 400, 10000, "namespaceId", id="show-no-id"),
        pytest.param("DELETE", {}, 400, 10000, "namespaceId", id="delete-no-id"),
    ],
)  # fmt: skip
async def test_errors_use_nacos_codes_name_the_parameter_and_write_nothing(
    env: Any, method: str, params: dict[str, str], status: int, code: int, wire_field: str
) -> None:
    answer_status, answer = await v2_call(env, method, NAMESPACE, params)
    assert (answer_status, answer["code"]) == (status, code)
    assert wire_field in answer["data"]
    assert env.snapshot() == {}


async def test_create_of_an_existing_namespace_is_22002(env: Any) -> None:
    params = {"namespaceId": "dev", "namespaceName": "Dev"}
    assert await v2_call(env, "POST", NAMESPACE, params) == v2_ok(True)
    before = env.snapshot()
    status, answer = await v2_call(env, "POST", NAMESPACE, params)
    assert (status, answer["code"], answer["message"]) == (400, 22002, "namespace already exist")
    assert env.snapshot() == before
