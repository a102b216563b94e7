"""/nacos/v1/ns/service…: CRUD, list, names (docs/nacos-compat.md#service-endpoints)."""

from __future__ import annotations

from typing import Any

import pytest

SERVICE = "/nacos/v1/ns/service"


async def register(env: Any, service: str, **params: str) -> None:
    base = {"ip": "10.0.0.1", "port": "8080", "serviceName": service}
    assert await env.text("POST", "/nacos/v1/ns/instance", {**base, **params}) == (200, "ok")


async def test_create_then_get_answers_the_nacos_shape(env: Any) -> None:
    params = {"serviceName": "orders", "groupName": "G1", "protectThreshold": "0.3",
              "metadata": '{"team":"pay"}', "selector": '{"type":"none"}'}  # fmt: skip
    assert await env.text("POST", SERVICE, params) == (200, "ok")
    await register(env, "G1@@orders", clusterName="c1")

    answer = await env.json("GET", SERVICE, {"serviceName": "orders", "groupName": "G1"})

    assert answer == {
        "name": "orders",
        "namespaceId": "public",
        "protectThreshold": 0.3,
        "metadata": {"team": "pay"},
        "selector": {"type": "none"},
        "groupName": "G1",
        "clusters": [{"name": "c1", "healthChecker": {"type": "TCP"}, "metadata": {}}],
    }
    assert list(answer) == ["name", "namespaceId", "protectThreshold", "metadata", "selector",
                            "groupName", "clusters"]  # fmt: skip


async def test_create_of_an_existing_service_is_400(env: Any) -> None:
    await env.text("POST", SERVICE, {"serviceName": "orders"})
    before = env.snapshot()
    status, body = await env.text("POST", SERVICE, {"serviceName": "orders"})
    assert status == 400
    assert body == "specified service already exists, serviceName : DEFAULT_GROUP@@orders"
    assert env.snapshot() == before


async def test_update_replaces_threshold_metadata_and_selector(env: Any) -> None:
    await env.text("POST", SERVICE, {"serviceName": "orders", "metadata": '{"a":"1"}'})
    selector = '{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}'
    params = {"serviceName": "orders", "protectThreshold": "0.8", "selector": selector}
    assert await env.text("PUT", SERVICE, params) == (200, "ok")
    answer = await env.json("GET", SERVICE, {"serviceName": "orders"})
    assert answer["protectThreshold"] == 0.8
    assert answer["metadata"] == {}
    assert answer["selector"] == {
        "type": "label",
        "expression": "CONSUMER.label.a = PROVIDER.label.a",
    }


@pytest.mark.parametrize(
    ("params", "wire_field"),
    [
        pytest.param({"serviceName": "orders"}, "protectThreshold", id="no-threshold"),
        pytest.param({"serviceName": "orders", "protectThreshold": "2"}, "protectThreshold",
                     id="threshold-too-big"),
        pytest.param({"serviceName": "orders", "protectThreshold": "0.1", "selector": "{}"},
                     "selector", id="selector-without-type"),
        pytest.param({"serviceName": "orders", "protectThreshold": "0.1", "metadata": "x"},
                     "metadata", id="bad-metadata"),
        pytest.param({"protectThreshold": "0.1"}, "serviceName", id="no-service"),
    ],
)  # fmt: skip
async def test_bad_update_is_400_naming_the_field_and_writes_nothing(
    env: Any, params: dict[str, str], wire_field: str
) -> None:
    await env.text("POST", SERVICE, {"serviceName": "orders"})
    before = env.snapshot()
    status, body = await env.text("PUT", SERVICE, params)
    assert status == 400
    assert wire_field in body
    assert env.snapshot() == before


async def test_update_of_a_missing_service_is_400(env: Any) -> None:
    status, body = await env.text("PUT", SERVICE, {"serviceName": "x", "protectThreshold": "0"})
    assert status == 400
    assert body == "specified service not exist, serviceName : DEFAULT_GROUP@@x"
    assert env.snapshot() == {}


async def test_delete_removes_the_service_and_its_instances(env: Any) -> None:
    await register(env, "orders")
    await register(env, "orders", ip="10.0.0.2", ephemeral="false")
    assert await env.text("DELETE", SERVICE, {"serviceName": "orders"}) == (200, "ok")
    assert env.snapshot() == {}
    status, _ = await env.text("GET", SERVICE, {"serviceName": "orders"})
    assert status == 404


async def test_delete_of_a_missing_service_is_400(env: Any) -> None:
    status, body = await env.text("DELETE", SERVICE, {"serviceName": "ghost"})
    assert (status, body) == (
        400,
        "specified service not exist, serviceName : DEFAULT_GROUP@@ghost",
    )


async def test_get_of_a_missing_service_is_404(env: Any) -> None:
    assert await env.text("GET", SERVICE, {"serviceName": "ghost"}) == (
        404,
        "service DEFAULT_GROUP@@ghost is not found!",
    )


async def test_list_is_paged_with_ungrouped_names(env: Any) -> None:
    for name in ("c", "a", "b"):
        await register(env, name, groupName="G1")
    await register(env, "other")  # DEFAULT_GROUP
    params = {"pageNo": "1", "pageSize": "2", "groupName": "G1", "namespaceId": "public"}
    assert await env.json("GET", f"{SERVICE}/list", params) == {"count": 3, "doms": ["a", "b"]}
    params["pageNo"] = "2"
    assert await env.json("GET", f"{SERVICE}/list", params) == {"count": 3, "doms": ["c"]}
    params["pageNo"] = "3"
    assert await env.json("GET", f"{SERVICE}/list", params) == {"count": 3, "doms": []}


async def test_list_defaults_to_default_group_and_star_means_all(env: Any) -> None:
    await register(env, "a", groupName="G1")
    await register(env, "b")
    paging = {"pageNo": "1", "pageSize": "10"}
    assert await env.json("GET", f"{SERVICE}/list", paging) == {"count": 1, "doms": ["b"]}
    answer = await env.json("GET", f"{SERVICE}/list", {**paging, "groupName": "*"})
    assert answer == {"count": 2, "doms": ["b", "a"]}  # by grouped name: DEFAULT_GROUP < G1


@pytest.mark.parametrize(
    ("params", "wire_field"),
    [
        pytest.param({"pageSize": "10"}, "pageNo", id="no-page-no"),
        pytest.param({"pageNo": "1"}, "pageSize", id="no-page-size"),
        pytest.param({"pageNo": "0", "pageSize": "10"}, "pageNo", id="page-zero"),
        pytest.param({"pageNo": "a", "pageSize": "10"}, "pageNo", id="page-text"),
    ],
)
async def test_list_paging_is_required(env: Any, params: dict[str, str], wire_field: str) -> None:
    status, body = await env.text("GET", f"{SERVICE}/list", params)
    assert status == 400
    assert wire_field in body


async def test_names_per_namespace_with_substring_filter(env: Any) -> None:
    await register(env, "orders")
    await register(env, "payments")
    await register(env, "orders", namespaceId="dev")
    assert await env.json("GET", f"{SERVICE}/names") == {
        "services": {
            "dev": ["DEFAULT_GROUP@@orders"],
            "public": ["DEFAULT_GROUP@@orders", "DEFAULT_GROUP@@payments"],
        },
        "count": 3,
    }
    answer = await env.json("GET", f"{SERVICE}/names", {"namespaceId": "public", "expr": "pay"})
    assert answer == {"services": {"public": ["DEFAULT_GROUP@@payments"]}, "count": 1}


async def test_subscribers_of_a_service_nobody_watches(env: Any) -> None:
    answer = await env.json("GET", f"{SERVICE}/subscribers", {"serviceName": "orders"})
    assert answer == {"subscribers": [], "count": 0}
