"""/nacos/v1/console/namespaces: list, show, create, update, delete."""

from __future__ import annotations

from typing import Any

import pytest

NAMESPACES = "/nacos/v1/console/namespaces"
PUBLIC = {
    "namespace": "",
    "namespaceShowName": "public",
    "namespaceDesc": None,
    "quota": 200,
    "configCount": 0,
    "type": 0,
}


async def test_public_is_always_listed(env: Any) -> None:
    assert await env.json("GET", NAMESPACES) == {"code": 200, "message": None, "data": [PUBLIC]}


async def test_create_update_show_delete(env: Any) -> None:
    params = {"customNamespaceId": "dev", "namespaceName": "Dev", "namespaceDesc": "for devs"}
    assert await env.json("POST", NAMESPACES, params) is True
    answer = await env.json("GET", NAMESPACES)
    assert answer["data"][1] == {
        "namespace": "dev",
        "namespaceShowName": "Dev",
        "namespaceDesc": "for devs",
        "quota": 200,
        "configCount": 0,
        "type": 2,
    }
    params = {"namespace": "dev", "namespaceShowName": "Develop", "namespaceDesc": "d"}
    assert await env.json("PUT", NAMESPACES, params) is True
    shown = await env.json("GET", NAMESPACES, {"show": "all", "namespaceId": "dev"})
    assert shown["namespaceShowName"] == "Develop"
    assert await env.json("DELETE", NAMESPACES, {"namespaceId": "dev"}) is True
    assert (await env.json("GET", NAMESPACES))["data"] == [PUBLIC]


async def test_create_without_an_id_generates_one(env: Any) -> None:
    assert await env.json("POST", NAMESPACES, {"namespaceName": "Anon"}) is True
    answer = await env.json("GET", NAMESPACES)
    assert answer["data"][1]["namespace"] == "generated-id"


@pytest.mark.parametrize(
    ("method", "params", "status", "wire_field"),
    [
        pytest.param("POST", {"customNamespaceId": "dev"}, 400, "namespaceName", id="no-name"),
        pytest.param("POST", {"customNamespaceId": "d.v", "namespaceName": "x"}, 400,
                     "customNamespaceId", id="bad-id"),
        pytest.param("POST", {"customNamespaceId": "x", "namespaceName": "a$b"}, 400,
                     "namespaceName", id="bad-name"),
        pytest.param("POST", {"customNamespaceId": "public", "namespaceName": "p"}, 400,
                     "namespaceId", id="create-public"),
        pytest.param("DELETE", {"namespaceId": "ghost"}, 404, "ghost", id="delete-unknown"),
        pytest.param("DELETE", {}, 400, "namespaceId", id="delete-no-id"),
        pytest.param("DELETE", {"namespaceId": "public"}, 400, "namespaceId",
                     id="delete-public"),
        pytest.param("PUT", {"namespace": "ghost", "namespaceShowName": "g"}, 404, "ghost",
                     id="update-unknown"),
        pytest.param("GET", {"show": "all", "namespaceId": "ghost"}, 404, "ghost",
                     id="show-unknown"),
    ],
)  # fmt: skip
async def test_namespace_errors_write_nothing(
    env: Any, method: str, params: dict[str, str], status: int, wire_field: str
) -> None:
    code, body = await env.text(method, NAMESPACES, params)
    assert code == status
    assert wire_field in body
    assert env.snapshot() == {}


async def test_create_of_an_existing_namespace_is_400(env: Any) -> None:
    params = {"customNamespaceId": "dev", "namespaceName": "Dev"}
    await env.json("POST", NAMESPACES, params)
    before = env.snapshot()
    code, _ = await env.text("POST", NAMESPACES, params)
    assert code == 400
    assert env.snapshot() == before


async def test_check_namespace_id_exist_answers_a_boolean(env: Any) -> None:
    await env.json("POST", NAMESPACES, {"customNamespaceId": "dev", "namespaceName": "Dev"})
    check = {"checkNamespaceIdExist": "true"}
    for custom_id, exists in (("dev", True), ("public", True), ("ghost", False), ("", False),
                              ("bad id!", False), ("x" * 5_000, False)):  # fmt: skip
        answer = await env.json("GET", NAMESPACES, {**check, "customNamespaceId": custom_id})
        assert answer is exists, custom_id
    assert await env.json("GET", NAMESPACES, check) is False
