"""/nacos/v2/cs/…: Nacos 2.x's config and history API over the same ConfigService as v1
(the in-process config node of test_configs), answering Nacos's `Result`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.test_configs import CS, MAX_CONTENT, Env

from naraft.api import make_app
from naraft.configs.model import ConfigKey

V2_CONFIG = "/nacos/v2/cs/config"
V2_HISTORY = "/nacos/v2/cs/history"
V2_HISTORY_LIST = "/nacos/v2/cs/history/list"
KEY = {"dataId": "app.yaml", "group": "DEFAULT_GROUP"}


@pytest.fixture
async def cs() -> AsyncIterator[Env]:
    environment = Env()
    app = make_app(environment.naming, configs=environment.api)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    environment.client = client
    try:
        yield environment
    finally:
        await client.close()


async def v2(
    env: Env, method: str, path: str, params: dict[str, str], *, form: bool = False
) -> tuple[int, Any]:
    if form:
        response = await env.call(method, path, data=params)
    else:
        response = await env.call(method, path, params)
    assert response.content_type == "application/json", await response.text()
    return response.status, await response.json()


def ok(data: object) -> dict[str, object]:
    return {"code": 0, "message": "success", "data": data}


async def test_publish_get_delete(cs: Env) -> None:
    published = {**KEY, "content": "a: 1", "type": "yaml"}
    assert await v2(cs, "POST", V2_CONFIG, published, form=True) == (200, ok(True))
    assert await v2(cs, "GET", V2_CONFIG, KEY) == (200, ok("a: 1"))
    assert cs.proposer.read_barriers == 1  # a read passes the barrier, as v1's
    assert await v2(cs, "DELETE", V2_CONFIG, KEY) == (200, ok(True))
    status, body = await v2(cs, "GET", V2_CONFIG, KEY)
    assert (status, body) == (
        404,
        {"code": 20004, "message": "resource not found", "data": "config data not exist"},
    )
    assert cs.counted == ["v2.config.publish", "v2.config.get", "v2.config.delete", "v2.config.get"]


async def test_v2_and_v1_share_the_configs_and_namespaces(cs: Env) -> None:
    in_ns = {**KEY, "namespaceId": "ns1", "content": "x=1"}
    assert await v2(cs, "POST", V2_CONFIG, in_ns, form=True) == (200, ok(True))
    v1 = await cs.call("GET", CS, {**KEY, "tenant": "ns1"})
    assert (v1.status, await v1.text()) == (200, "x=1")
    public = await cs.call("GET", CS, KEY)
    assert public.status == 404  # another namespace

    await cs.publish("from-v1", "y=2")
    got = await v2(cs, "GET", V2_CONFIG, {"dataId": "from-v1", "group": "DEFAULT_GROUP"})
    assert got == (200, ok("y=2"))
    # `public` names the default namespace, and `tenant` is read when namespaceId is absent
    public_named = {"dataId": "from-v1", "group": "DEFAULT_GROUP", "namespaceId": "public"}
    assert await v2(cs, "GET", V2_CONFIG, public_named) == (200, ok("y=2"))
    by_tenant = {**KEY, "tenant": "ns1"}
    assert await v2(cs, "GET", V2_CONFIG, by_tenant) == (200, ok("x=1"))


async def test_errors_name_the_field_and_write_nothing(cs: Env) -> None:
    status, body = await v2(cs, "POST", V2_CONFIG, KEY, form=True)
    assert (status, body["code"], body["message"]) == (400, 10000, "parameter missing")
    assert "content" in body["data"]
    status, body = await v2(cs, "GET", V2_CONFIG, {"group": "DEFAULT_GROUP"})
    assert (status, body["code"]) == (400, 10000)
    assert "dataId" in body["data"]
    bad_id = {**KEY, "dataId": "a b", "content": "x"}
    status, body = await v2(cs, "POST", V2_CONFIG, bad_id, form=True)
    assert (status, body["code"], body["message"]) == (400, 20002, "parameter validate error")
    assert "dataId" in body["data"]
    bad_ns = {**KEY, "namespaceId": "no spaces", "content": "x"}
    status, body = await v2(cs, "POST", V2_CONFIG, bad_ns, form=True)
    assert (status, body["code"]) == (400, 20001)
    too_big = {**KEY, "content": "x" * (MAX_CONTENT + 1)}
    status, body = await v2(cs, "POST", V2_CONFIG, too_big, form=True)
    assert (status, body["code"]) == (413, 20002)
    assert cs.state.count() == 0


async def test_history_list_and_detail(cs: Env) -> None:
    for content in ("v1", "v2"):
        await v2(cs, "POST", V2_CONFIG, {**KEY, "content": content}, form=True)
    status, listed = await v2(cs, "GET", V2_HISTORY_LIST, KEY)
    assert status == 200
    assert listed["code"] == 0
    page = listed["data"]
    assert page["totalCount"] == 2
    newest = page["pageItems"][0]
    assert (newest["opType"], newest["content"]) == ("U", None)
    status, detail = await v2(cs, "GET", V2_HISTORY, {**KEY, "nid": newest["id"]})
    assert (status, detail["data"]["content"]) == (200, "v1")
    status, body = await v2(cs, "GET", V2_HISTORY, {**KEY, "nid": "999"})
    assert (status, body["code"]) == (404, 20004)
    status, body = await v2(cs, "GET", V2_HISTORY, {**KEY, "nid": "x"})
    assert (status, body["code"]) == (400, 20002)
    assert "nid" in body["data"]
    status, body = await v2(cs, "GET", V2_HISTORY, KEY)
    assert (status, body["code"]) == (400, 10000)


async def test_history_previous_is_the_newest_record_of_a_config_id(cs: Env) -> None:
    previous = "/nacos/v2/cs/history/previous"
    for content in ("v1", "v2", "v3"):
        await v2(cs, "POST", V2_CONFIG, {**KEY, "content": content}, form=True)
    record = cs.api.service.state.get(
        ConfigKey(tenant="", group="DEFAULT_GROUP", data_id="app.yaml")
    )
    assert record is not None
    config_id = str(record.id)
    status, body = await v2(cs, "GET", previous, {**KEY, "id": config_id})
    assert (status, body["code"]) == (200, 0)
    assert (body["data"]["opType"], body["data"]["content"]) == ("U", "v2")
    assert await v2(cs, "GET", previous, {**KEY, "id": "999"}) == (200, ok(None))
    status, body = await v2(cs, "GET", previous, {"dataId": "other", "group": KEY["group"],
                                                  "id": config_id})  # fmt: skip
    assert (status, body["code"]) == (403, 10001)
    status, body = await v2(cs, "GET", previous, {**KEY, "namespaceId": "dev", "id": config_id})
    assert (status, body["code"]) == (403, 10001)
    status, body = await v2(cs, "GET", previous, KEY)
    assert (status, body["code"]) == (400, 10000)
    assert "id" in body["data"]


async def test_history_configs_lists_a_namespace_without_contents(cs: Env) -> None:
    configs = "/nacos/v2/cs/history/configs"
    await v2(cs, "POST", V2_CONFIG, {**KEY, "content": "x"}, form=True)
    await v2(cs, "POST", V2_CONFIG, {"dataId": "b", "group": "G", "content": "y"}, form=True)
    dev = {"dataId": "c", "group": "G", "content": "z", "namespaceId": "dev"}
    await v2(cs, "POST", V2_CONFIG, dev, form=True)
    status, body = await v2(cs, "GET", configs, {"namespaceId": "public"})
    assert (status, body["code"]) == (200, 0)
    assert [(c["dataId"], c["group"], c["tenant"]) for c in body["data"]] == [
        ("app.yaml", "DEFAULT_GROUP", ""),
        ("b", "G", ""),
    ]
    assert all(c["content"] is None for c in body["data"])
    listed = (await v2(cs, "GET", configs, {"namespaceId": "dev"}))[1]["data"]
    assert [(c["dataId"], c["tenant"], c["type"]) for c in listed] == [("c", "dev", "text")]
    status, body = await v2(cs, "GET", configs, {})
    assert (status, body["code"]) == (400, 10000)
    assert "namespaceId" in body["data"]
    status, body = await v2(cs, "GET", configs, {"namespaceId": "bad/ns"})
    assert (status, body["code"]) == (400, 20001)


@pytest.mark.parametrize("extra", [{"clone": "true"}, {"clone": "x"}, {"beta": "no"}])
async def test_clone_and_a_non_true_beta_leave_reads_and_deletes_ordinary(
    cs: Env, extra: dict[str, str]
) -> None:
    """Nacos clones only on `POST /v1/cs/configs?clone=true` and reads the gray config only
    on `beta=true`; elsewhere those names are ignored, never a 501."""
    await cs.publish("app.yaml", "a: 1")
    assert await v2(cs, "GET", V2_CONFIG, {**KEY, **extra}) == (200, ok("a: 1"))
    v1 = await cs.call("GET", CS, {**KEY, **extra})
    assert (v1.status, await v1.text()) == (200, "a: 1")
    assert await v2(cs, "DELETE", V2_CONFIG, {**KEY, **extra}) == (200, ok(True))
    await cs.publish("app.yaml", "a: 2")
    deleted = await cs.call("DELETE", CS, {**KEY, **extra})
    assert (deleted.status, await deleted.text()) == (200, "true")
    assert cs.state.count() == 0


async def test_beta_true_is_the_gray_config_and_refused(cs: Env) -> None:
    await cs.publish("app.yaml", "a: 1")
    status, body = await v2(cs, "GET", V2_CONFIG, {**KEY, "beta": "true"})
    assert status == 501
    assert "gray" in body["data"]
