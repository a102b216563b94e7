"""Bounds at the edge: what no Nacos or Java client could take is refused with a 400 naming
the field before anything is proposed; the quota and apply-time rejections reach the client
as clear errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.conftest import Env

from naraft.api import make_app
from naraft.api.params import MAX_PARAM_VALUE_CHARS, MAX_PARAMS
from naraft.machine import NodeStateMachine
from naraft.metrics import NodeMetrics
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.naming.switches import INTEGER_SWITCHES
from naraft.raft import Entry, Index, Term
from naraft.state.datums import DatumTable
from naraft.state.kv import PutValue, encode_kv
from naraft.state.rejections import EntryRejected, RejectionKind

SWITCHES = "/nacos/v1/ns/operator/switches"
INSTANCE = "/nacos/v1/ns/instance"
HUGE = "1000000000000000000000000000000"


def test_seven_switches_take_integers() -> None:
    assert len(INTEGER_SWITCHES) == 7


@pytest.mark.parametrize("entry", INTEGER_SWITCHES)
@pytest.mark.parametrize(
    "value",
    [HUGE, str(1 << 63), str((1 << 64) - 1), "0", "-1", "9" * 5000],
    ids=["1e30", "2^63", "2^64-1", "zero", "negative", "5000-digits"],
)
async def test_an_integer_switch_out_of_java_range_is_400_and_never_proposed(
    env: Any, entry: str, value: str
) -> None:
    status, text = await env.text("PUT", SWITCHES, {"entry": entry, "value": value})
    assert status == 400
    assert "value" in text
    assert entry in text
    assert env.proposer.proposed == []


@pytest.mark.parametrize("entry", INTEGER_SWITCHES)
async def test_an_integer_switch_takes_its_java_maximum(env: Any, entry: str) -> None:
    high = (1 << 31) - 1 if entry == "healthCheckTimes" else (1 << 63) - 1
    assert await env.text("PUT", SWITCHES, {"entry": entry, "value": str(high)}) == (200, "ok")
    status, _ = await env.text("PUT", SWITCHES, {"entry": entry, "value": str(high + 1)})
    assert status == 400
    answer = await env.json("GET", SWITCHES)
    assert high in answer.values()


async def test_a_beat_interval_override_past_a_java_long_falls_back_to_the_switch(
    env: Any,
) -> None:
    params = {
        "serviceName": "s",
        "ip": "10.0.0.1",
        "port": "80",
        "metadata": orjson.dumps({"preserved.heart.beat.interval": str(1 << 64)}).decode(),
    }
    assert await env.text("POST", INSTANCE, params) == (200, "ok")
    beat = await env.json(
        "PUT", f"{INSTANCE}/beat", {k: params[k] for k in params if k != "metadata"}
    )
    assert beat["clientBeatInterval"] == 5000


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"weight": "1e400"}, "weight"),
        ({"weight": "nan"}, "weight"),
        ({"weight": "10000.5"}, "weight"),
        ({"port": "65536"}, "port"),
        ({"port": "1" * 100}, "port"),
        ({"metadata": '{"a": 1e400}'}, "metadata"),
    ],
)
async def test_numbers_outside_nacos_ranges_are_400_naming_the_field(
    env: Any, params: dict[str, str], field: str
) -> None:
    base = {"serviceName": "s", "ip": "10.0.0.1", "port": "80"}
    status, text = await env.text("POST", INSTANCE, {**base, **params})
    assert status == 400
    assert field in text
    assert env.proposer.proposed == []


async def test_a_long_selector_is_refused(env: Any) -> None:
    selector = orjson.dumps({"type": "label", "expression": "a" * 5000}).decode()
    status, text = await env.text(
        "POST", "/nacos/v1/ns/service", {"serviceName": "s", "selector": selector}
    )
    assert (status, "selector" in text) == (400, True)


async def test_too_many_parameters_are_refused(env: Any) -> None:
    params = {f"p{i}": "x" for i in range(MAX_PARAMS + 1)}
    status, text = await env.text("GET", "/nacos/v1/ns/service/list", params)
    assert status == 400
    assert "too many parameters" in text


async def test_too_many_form_parameters_are_refused(env: Any) -> None:
    body = "&".join(f"p{i}=x" for i in range(MAX_PARAMS + 1))
    answer = await env.client.post(
        INSTANCE, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status == 400
    assert "too many parameters" in await answer.text()


# ------------------------------------------------------------------------- quota, rejections


class QuotaUp:
    def __init__(self) -> None:
        self.up = True

    def quota_refusal(self) -> str | None:
        return "state quota exceeded (--quota-bytes)" if self.up else None


async def _client(env: Env, naming: NamingService) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(make_app(naming)))
    await client.start_server()
    return client


async def test_while_the_quota_alarm_is_up_writes_are_503_and_deletes_go_through() -> None:
    env = Env()
    guard = QuotaUp()
    naming = NamingService(env.state, env.proposer, env.clock, env.beats, env.push, guard=guard)
    client = await _client(env, naming)
    try:
        base = {"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "false"}
        guard.up = False
        assert (await client.post(INSTANCE, params=base)).status == 200
        guard.up = True
        refused = await client.post(INSTANCE, params={**base, "port": "81"})
        assert refused.status == 503
        assert "quota" in await refused.text()
        switch = await client.put(SWITCHES, params={"entry": "pushEnabled", "value": "false"})
        assert switch.status == 503
        assert len(env.proposer.proposed) == 1
        assert (await client.get(f"{INSTANCE}/list", params={"serviceName": "s"})).status == 200
        assert (await client.delete(INSTANCE, params=base)).status == 200
        assert (
            await client.delete("/nacos/v1/ns/service", params={"serviceName": "s"})
        ).status == 200
    finally:
        await client.close()


class RejectingProposer:
    def __init__(self, kind: RejectionKind) -> None:
        self.kind = kind

    async def propose(self, command: bytes) -> object:
        return EntryRejected(index=9, kind=self.kind, detail="TypeError: boom")

    async def read_barrier(self) -> None:
        return None

    async def local_read_point(self) -> None:
        return None


@pytest.mark.parametrize(
    ("kind", "status", "words"),
    [(RejectionKind.FAULT, 500, "rejected on apply"), (RejectionKind.QUOTA, 503, "quota")],
)
async def test_an_entry_rejected_on_apply_is_a_clear_error_not_a_hang(
    kind: RejectionKind, status: int, words: str
) -> None:
    env = Env()
    naming = NamingService(env.state, RejectingProposer(kind), env.clock, env.beats, env.push)
    client = await _client(env, naming)
    try:
        answer = await client.post(
            INSTANCE, params={"serviceName": "s", "ip": "1.2.3.4", "port": "1"}
        )
        assert answer.status == status
        assert words in await answer.text()
    finally:
        await client.close()


async def test_a_parameter_value_past_its_size_is_refused_naming_it(env: Any) -> None:
    body = "serviceName=s&ip=10.0.0.1&port=80&metadata=" + "m" * (MAX_PARAM_VALUE_CHARS + 1)
    answer = await env.client.post(
        INSTANCE, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status == 400
    assert "metadata" in await answer.text()
    assert env.proposer.proposed == []


def test_the_state_gauges_show_size_quota_alarm_and_rejections() -> None:
    datums = DatumTable()
    machine = NodeStateMachine(datums, NamingState(datums), quota_bytes=1_000)
    machine.apply(Entry(Term(1), Index(1), machine.quota_proposal() or b""))
    machine.apply(Entry(Term(1), Index(2), b"not a command"))
    room = 1_000 - 5 - datums.size_bytes - len("naraft.kv.k")
    machine.apply(Entry(Term(1), Index(3), encode_kv(PutValue(key="k", value="v" * room))))
    metrics = NodeMetrics()
    metrics.observe_machine(machine)
    text = metrics.render().decode()
    assert f"naraft_state_size_bytes {float(datums.size_bytes)}" in text
    assert "naraft_state_quota_bytes 1000.0" in text
    assert "naraft_state_quota_alarm 1.0" in text
    assert 'naraft_state_rejected_entries{reason="fault"} 1.0' in text
    assert 'naraft_state_rejected_entries{reason="quota"} 0.0' in text
