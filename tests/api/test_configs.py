"""The config Open API in process: an aiohttp test server over the real state machine,
whose proposer applies each command at once and wakes the listener hub as a node does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from urllib.parse import unquote_plus

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from tests.api.conftest import FakeClock, LocalBeats

from naraft.api import make_app
from naraft.api.params import Params
from naraft.api.v1.configs import CONFIG_ROUTES, ConfigApi, resource_of
from naraft.configs import validate
from naraft.configs.listeners import ListenerHub
from naraft.configs.model import ConfigKey, content_md5
from naraft.configs.service import ConfigService
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigState
from naraft.machine import NodeStateMachine
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumTable

CS = "/nacos/v1/cs/configs"
LISTENER = "/nacos/v1/cs/configs/listener"
MAX_CONTENT = 64 * 1024


class MachineProposer:
    def __init__(self, machine: NodeStateMachine, hub_ref: list[ListenerHub]) -> None:
        self._machine = machine
        self._hub = hub_ref
        self.index = 0
        self.read_barriers = 0

    async def propose(self, command: bytes) -> object:
        self.index += 1
        result = self._machine.apply(Entry(term=1, index=self.index, command=command))
        changes = self._machine.drain_changes()
        self._hub[0].on_changes(changes.changed_keys())
        return result

    async def read_barrier(self) -> None:
        self.read_barriers += 1


class Env:
    def __init__(self) -> None:
        self.datums = DatumTable()
        naming_state = NamingState(self.datums)
        self.state = ConfigState(self.datums)
        self.machine = NodeStateMachine(self.datums, naming_state, configs=self.state)
        hubs: list[ListenerHub] = []
        self.proposer = MachineProposer(self.machine, hubs)
        self.clock = FakeClock()
        settings = ConfigSettings(max_content_bytes=MAX_CONTENT, max_held_polls=2, max_poll_keys=3)
        self.hub = ListenerHub(self.state, max_polls=2, max_keys=3, min_hold_seconds=0.2)
        hubs.append(self.hub)
        self.counted: list[str] = []
        self.api = ConfigApi(
            service=ConfigService(self.state, self.proposer, self.clock, settings),
            hub=self.hub,
            count=self.counted.append,
        )
        self.naming = NamingService(
            naming_state, self.proposer, self.clock, LocalBeats(), PushTargets()
        )
        self.client: TestClient[web.Request, web.Application]

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        return await self.client.request(
            method, path, params=params or {}, data=data, headers=headers
        )

    async def publish(self, data_id: str, content: str, **extra: str) -> ClientResponse:
        return await self.call(
            "POST",
            CS,
            data={"dataId": data_id, "group": "DEFAULT_GROUP", "content": content, **extra},
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    environment = Env()
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(environment.naming, configs=environment.api))
    )
    await client.start_server()
    environment.client = client
    try:
        yield environment
    finally:
        await client.close()


async def test_publish_get_detail_delete(env: Env) -> None:
    content = "name=naraft\n名字=值 🎉"
    response = await env.publish("app.properties", content, type="properties", desc="d")
    assert response.status == 200
    assert await response.text() == "true"
    got = await env.call("GET", CS, {"dataId": "app.properties", "group": "DEFAULT_GROUP"})
    assert got.status == 200
    assert await got.text() == content
    assert got.headers["Content-MD5"] == content_md5(content)
    assert got.headers["Config-Type"] == "properties"
    assert env.proposer.read_barriers == 1  # the read went through the barrier
    detail = await (
        await env.call(
            "GET", CS, {"dataId": "app.properties", "group": "DEFAULT_GROUP", "show": "all"}
        )
    ).json()
    assert detail["id"] == "1"
    assert detail["desc"] == "d"
    assert detail["md5"] == content_md5(content)
    deleted = await env.call("DELETE", CS, {"dataId": "app.properties", "group": "DEFAULT_GROUP"})
    assert await deleted.text() == "true"
    missing = await env.call("GET", CS, {"dataId": "app.properties", "group": "DEFAULT_GROUP"})
    assert missing.status == 404
    assert "config data not exist" in await missing.text()


async def test_tenant_isolates_and_public_is_the_default(env: Env) -> None:
    await env.publish("a", "in ns1", tenant="ns1")
    await env.publish("a", "in public", tenant="public")
    for tenant, expected in (("ns1", "in ns1"), ("", "in public"), ("public", "in public")):
        got = await env.call("GET", CS, {"dataId": "a", "group": "DEFAULT_GROUP", "tenant": tenant})
        assert await got.text() == expected


async def test_cas_md5_conflict_answers_409_and_writes_nothing(env: Env) -> None:
    await env.publish("c", "v1")
    conflict = await env.publish("c", "v2", casMd5=content_md5("other"))
    assert conflict.status == 409
    assert (
        await (await env.call("GET", CS, {"dataId": "c", "group": "DEFAULT_GROUP"})).text()
    ) == "v1"
    ok = await env.publish("c", "v2", casMd5=content_md5("v1"))
    assert ok.status == 200


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"group": "G", "content": "x"}, 400, "dataId"),
        ({"dataId": "a", "content": "x"}, 400, "group"),
        ({"dataId": "a", "group": "G"}, 400, "content"),
        ({"dataId": "a b", "group": "G", "content": "x"}, 400, "dataId"),
        ({"dataId": "a", "group": "G/H", "content": "x"}, 400, "group"),
        ({"dataId": "a", "group": "G", "content": "x", "tenant": "bad tenant"}, 400, "tenant"),
        ({"dataId": "a" * 256, "group": "G", "content": "x"}, 400, "dataId"),
        ({"dataId": "a", "group": "G", "content": "x" * (MAX_CONTENT + 1)}, 413, str(MAX_CONTENT)),
        ({"dataId": "a", "group": "G", "content": "x", "desc": "d" * 129}, 400, "desc"),
        ({"dataId": "a", "group": "G", "content": "x", "tag": "t1"}, 501, "tag"),
    ],
)
async def test_bad_publishes_name_the_parameter_and_write_nothing(
    env: Env, params: dict[str, str], status: int, names: str
) -> None:
    response = await env.call("POST", CS, data=params)
    assert response.status == status
    assert names in await response.text()
    assert env.proposer.index == 0


async def test_gray_publish_is_refused_as_unsupported(env: Env) -> None:
    response = await env.call(
        "POST",
        CS,
        data={"dataId": "a", "group": "G", "content": "x"},
        headers={"betaIps": "1.1.1.1"},
    )
    assert response.status == 501
    assert "gray" in await response.text()
    assert env.proposer.index == 0


async def test_unknown_cs_paths_answer_in_nacos_shape(env: Env) -> None:
    unknown = await env.call("GET", "/nacos/v1/cs/nothing/here")
    assert unknown.status == 404
    body = await unknown.json()
    assert body["status"] == 404
    assert body["path"] == "/nacos/v1/cs/nothing/here"
    capacity = await env.call("GET", "/nacos/v1/cs/capacity")
    assert capacity.status == 501
    assert "capacity" in await capacity.text()


async def test_search_accurate_and_blur_page(env: Env) -> None:
    for name in ("svc-a.yaml", "svc-b.yaml", "other.yaml"):
        await env.publish(name, f"content of {name}", appName="app1")
    await env.publish("svc-c.yaml", "elsewhere", tenant="ns1")
    page = await (
        await env.call(
            "GET",
            CS,
            {"dataId": "", "group": "", "search": "accurate", "pageNo": "1", "pageSize": "2"},
        )
    ).json()
    assert page["totalCount"] == 3
    assert page["pagesAvailable"] == 2
    assert len(page["pageItems"]) == 2
    assert page["pageItems"][0]["content"] == "content of svc-a.yaml"
    blur = await (
        await env.call(
            "GET",
            CS,
            {"dataId": "svc-*", "group": "", "search": "blur", "pageNo": "1", "pageSize": "10"},
        )
    ).json()
    assert sorted(i["dataId"] for i in blur["pageItems"]) == ["svc-a.yaml", "svc-b.yaml"]


async def test_delete_by_ids(env: Env) -> None:
    await env.publish("a", "1")
    await env.publish("b", "2")
    response = await env.call("DELETE", CS, {"delType": "ids", "ids": "1,2"})
    assert await response.json() == {"code": 200, "message": None, "data": True}
    assert env.state.count() == 0


async def test_history_pages_detail_and_previous(env: Env) -> None:
    await env.publish("h", "v1")
    await env.publish("h", "v2")
    page = await (
        await env.call(
            "GET",
            "/nacos/v1/cs/history",
            {"dataId": "h", "group": "DEFAULT_GROUP", "search": "accurate"},
        )
    ).json()
    assert page["totalCount"] == 2
    newest = page["pageItems"][0]
    assert newest["opType"] == "U"
    assert newest["content"] is None
    detail = await (
        await env.call(
            "GET",
            "/nacos/v1/cs/history",
            {"dataId": "h", "group": "DEFAULT_GROUP", "nid": newest["id"]},
        )
    ).json()
    assert detail["content"] == "v1"
    wrong = await env.call(
        "GET",
        "/nacos/v1/cs/history",
        {"dataId": "x", "group": "DEFAULT_GROUP", "nid": newest["id"]},
    )
    assert wrong.status == 403
    previous = await (
        await env.call(
            "GET",
            "/nacos/v1/cs/history/previous",
            {"dataId": "h", "group": "DEFAULT_GROUP", "id": "1"},
        )
    ).json()
    assert previous["id"] == newest["id"]


async def held_polls(env: Env, count: int) -> None:
    """Until the hub holds `count` polls (the requests are in flight on the same loop)."""
    for _ in range(500):
        if env.hub.held >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the hub holds {env.hub.held} polls, not {count}")


def listening(*lines: tuple[str, ...]) -> str:
    return "".join("\x02".join(line) + "\x01" for line in lines)


async def test_listener_answers_a_change_as_soon_as_it_is_applied(env: Env) -> None:
    await env.publish("l", "v1")
    probe = listening(("l", "DEFAULT_GROUP", content_md5("v1")), ("m", "DEFAULT_GROUP", "", "ns1"))
    poll = asyncio.create_task(
        env.call(
            "POST",
            LISTENER,
            data={"Listening-Configs": probe},
            headers={"Long-Pulling-Timeout": "30000"},
        )
    )
    await held_polls(env, 1)
    await env.publish("m", "new", tenant="ns1")
    async with asyncio.timeout(5):  # woken by the apply, long before the 30 s hold ends
        response = await poll
    text = await response.text()
    assert text.strip() == "m%02DEFAULT_GROUP%02ns1%01"
    assert unquote_plus(text).split("\x01")[0].split("\x02") == ["m", "DEFAULT_GROUP", "ns1"]


async def test_listener_answers_at_once_when_the_client_is_behind(env: Env) -> None:
    await env.publish("l", "v1")
    response = await env.call(
        "POST",
        LISTENER,
        data={"Listening-Configs": listening(("l", "DEFAULT_GROUP", ""))},
        headers={"Long-Pulling-Timeout": "30000"},
    )
    assert (await response.text()).strip() == "l%02DEFAULT_GROUP%01"


async def test_listener_times_out_with_an_empty_200(env: Env) -> None:
    response = await env.call(
        "POST",
        LISTENER,
        data={"Listening-Configs": listening(("l", "DEFAULT_GROUP", ""))},
        headers={"Long-Pulling-Timeout": "100"},
    )
    assert response.status == 200
    assert await response.text() == ""
    assert env.hub.held == 0


async def test_no_hangup_answers_at_once(env: Env) -> None:
    response = await env.call(
        "POST",
        LISTENER,
        data={"Listening-Configs": listening(("l", "DEFAULT_GROUP", ""))},
        headers={"Long-Pulling-Timeout": "30000", "Long-Pulling-Timeout-No-Hangup": "true"},
    )
    assert response.status == 200
    assert await response.text() == ""


async def test_polls_are_bounded_and_failures_are_answered_late(env: Env) -> None:
    probe = {"Listening-Configs": listening(("l", "DEFAULT_GROUP", ""))}
    headers = {"Long-Pulling-Timeout": "30000"}
    held = [
        asyncio.create_task(env.call("POST", LISTENER, data=probe, headers=headers))
        for _ in range(2)
    ]
    await held_polls(env, 2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused = await env.call("POST", LISTENER, data=probe, headers=headers)
    assert refused.status == 503
    assert "config-max-polls" in await refused.text()
    assert loop.time() - started >= 1.9  # answered late: a client retrying at once cannot spin
    too_many = listening(*((f"k{i}", "G", "") for i in range(4)))
    bad = await env.call("POST", LISTENER, data={"Listening-Configs": too_many}, headers=headers)
    assert bad.status == 400
    assert "config-max-poll-keys" in await bad.text()
    await env.publish("l", "wake")
    for task in held:
        assert (await task).status == 200


async def test_listener_status_routes(env: Env) -> None:
    status = await (
        await env.call("GET", LISTENER, {"dataId": "l", "group": "DEFAULT_GROUP"})
    ).json()
    assert status == {"collectStatus": 200, "lisentersGroupkeyStatus": {}}
    by_ip = await (await env.call("GET", "/nacos/v1/cs/listener", {"ip": "127.0.0.1"})).json()
    assert by_ip["collectStatus"] == 200


def test_every_route_names_its_permission_and_resource() -> None:
    for route in CONFIG_ROUTES:
        assert route.action in ("r", "w") or route.path.endswith("{tail:.*}")
    writes = {r.method for r in CONFIG_ROUTES if r.action == "w"}
    assert writes == {"POST", "DELETE"}
    params = Params(MultiDict({"tenant": "ns1", "group": "G", "dataId": "app.yaml"}))
    assert resource_of(params) == "ns1:G:app.yaml"
    assert resource_of(Params(MultiDict({"dataId": "d"}))) == "::d"


async def test_one_failing_poll_answer_does_not_stop_the_others(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """The hub answers inside the replica's applied-changes event: an answer that raises
    is logged, and the other polls on the change are still answered."""
    key = validate.config_key("l", "DEFAULT_GROUP", "")
    answered: list[list[ConfigKey]] = []

    def broken(_changed: list[ConfigKey]) -> None:
        raise RuntimeError("a broken answer")

    env.hub.hold({key: ""}, 30_000, "a", broken)
    env.hub.hold({key: ""}, 30_000, "b", answered.append)
    await env.publish("l", "v1")  # applied: the hub wakes both, in the event
    assert answered == [[key]]
    assert env.hub.held == 0
    assert "answering a long poll of a failed" in caplog.text
