"""/nacos/v1/ns/catalog/…: the shapes Nacos's console and tooling read."""

from __future__ import annotations

from typing import Any

CATALOG = "/nacos/v1/ns/catalog"


async def register(env: Any, service: str, ip: str, **params: str) -> None:
    base = {"ip": ip, "port": "8080", "serviceName": service}
    assert await env.text("POST", "/nacos/v1/ns/instance", {**base, **params}) == (200, "ok")


async def test_services_page_with_counts_in_nacos_shape(env: Any) -> None:
    for n in range(5):
        await register(env, f"svc-{n}", "10.0.0.1")
    await register(env, "svc-0", "10.0.0.2", clusterName="c2", healthy="false")
    await register(env, "G2@@other", "10.0.0.3")

    answer = await env.json("GET", f"{CATALOG}/services", {"pageNo": "1", "pageSize": "2"})

    assert answer == {
        "count": 6,
        "serviceList": [
            {"name": "svc-0", "groupName": "DEFAULT_GROUP", "clusterCount": 2, "ipCount": 2,
             "healthyInstanceCount": 1, "triggerFlag": "false"},
            {"name": "svc-1", "groupName": "DEFAULT_GROUP", "clusterCount": 1, "ipCount": 1,
             "healthyInstanceCount": 1, "triggerFlag": "false"},
        ],
    }  # fmt: skip


async def test_services_search_by_group_and_name_substrings(env: Any) -> None:
    await register(env, "orders-api", "10.0.0.1")
    await register(env, "G2@@orders-db", "10.0.0.1")
    await register(env, "payments", "10.0.0.1")

    by_name = await env.json("GET", f"{CATALOG}/services", {"serviceNameParam": "orders"})
    by_group = await env.json(
        "GET", f"{CATALOG}/services", {"serviceNameParam": "orders", "groupNameParam": "G2"}
    )

    assert [s["name"] for s in by_name["serviceList"]] == ["orders-api", "orders-db"]
    assert by_group["count"] == 1
    assert by_group["serviceList"][0]["name"] == "orders-db"


async def test_service_detail_lists_its_clusters(env: Any) -> None:
    await register(env, "orders", "10.0.0.1", clusterName="c1")

    answer = await env.json("GET", f"{CATALOG}/service", {"serviceName": "orders"})

    assert answer["service"]["name"] == "orders"
    assert answer["service"]["groupName"] == "DEFAULT_GROUP"
    assert [c["name"] for c in answer["clusters"]] == ["c1"]


async def test_instances_of_a_cluster_paged(env: Any) -> None:
    for n in range(3):
        await register(env, "orders", f"10.0.0.{n + 1}", clusterName="c1")
    await register(env, "orders", "10.0.1.1", clusterName="c2")

    answer = await env.json(
        "GET",
        f"{CATALOG}/instances",
        {"serviceName": "orders", "clusterName": "c1", "pageNo": "2", "pageSize": "2"},
    )

    assert answer["count"] == 3
    [row] = answer["list"]
    assert row["ip"] == "10.0.0.3"
    assert {"instanceId", "weight", "healthy", "enabled", "ephemeral", "metadata"} <= set(row)


async def test_bad_input_names_the_field_and_unknown_service_is_404(env: Any) -> None:
    status, text = await env.text("GET", f"{CATALOG}/services", {"pageSize": "0"})
    assert status == 400
    assert "pageSize" in text
    status, text = await env.text("GET", f"{CATALOG}/service", {"serviceName": "nope"})
    assert status == 404
    assert "nope" in text


async def test_with_instances_lists_each_services_instances_by_cluster(env: Any) -> None:
    await register(env, "orders", "10.0.0.1", clusterName="c1")
    await register(env, "orders", "10.0.0.2", clusterName="c2")

    answer = await env.json("GET", f"{CATALOG}/services", {"withInstances": "true"})

    [entry] = answer
    assert (entry["serviceName"], entry["groupName"]) == ("orders", "DEFAULT_GROUP")
    assert sorted(entry["clusterMap"]) == ["c1", "c2"]
    assert [h["ip"] for h in entry["clusterMap"]["c2"]["hosts"]] == ["10.0.0.2"]
