"""`PUT`/`DELETE /nacos/v1/ns/instance/metadata/batch`: Nacos's batch metadata, as one
replicated command (docs/nacos-compat.md#batch-metadata)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.conftest import Env

from naraft.api import make_app
from naraft.errors import UpgradeUnfinishedError
from naraft.naming.commands import MetadataAction, MetadataScope, UpdateMetadata
from naraft.naming.keys import ServiceKey
from naraft.naming.service import UPDATE_METADATA_SINCE, NamingService

INSTANCE = "/nacos/v1/ns/instance"
BATCH = "/nacos/v1/ns/instance/metadata/batch"
SVC = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")


async def register(env: Any, ip: str, **params: str) -> None:
    base = {"ip": ip, "port": "8080", "serviceName": "svc"}
    assert await env.text("POST", INSTANCE, {**base, **params}) == (200, "ok")


async def metadata(env: Any, ip: str, **params: str) -> dict[str, str]:
    """What a client reads back: the instance's detail."""
    query = {"ip": ip, "port": "8080", "serviceName": "svc", **params}
    answer = await env.json("GET", INSTANCE, query)
    return dict(answer["metadata"])


def listed(*items: dict[str, object]) -> str:
    return orjson.dumps(list(items)).decode()


async def test_put_merges_into_the_listed_instances_and_names_them(env: Any) -> None:
    await register(env, "10.0.0.1", metadata='{"zone":"a","keep":"1"}')
    await register(env, "10.0.0.2", metadata='{"zone":"a"}', ephemeral="false")
    await register(env, "10.0.0.3", metadata='{"zone":"a"}')

    answer = await env.json(
        "PUT",
        BATCH,
        {
            "serviceName": "svc",
            "instances": listed(
                {"ip": "10.0.0.1", "port": 8080},
                {"ip": "10.0.0.2", "port": "8080", "clusterName": "", "ephemeral": False},
            ),
            "metadata": '{"zone":"b","added":2}',
        },
    )

    assert answer == {
        "updated": [
            "10.0.0.1:8080:unknown:DEFAULT:ephemeral",
            "10.0.0.2:8080:unknown:DEFAULT:persist",
        ]
    }
    assert await metadata(env, "10.0.0.1") == {"zone": "b", "keep": "1", "added": "2"}
    assert await metadata(env, "10.0.0.2") == {"zone": "b", "added": "2"}
    assert await metadata(env, "10.0.0.3") == {"zone": "a"}
    (command,) = [c for c in env.proposer.proposed if isinstance(c, UpdateMetadata)]
    assert (command.action, command.scope) == (MetadataAction.MERGE, MetadataScope.LISTED)


async def test_delete_removes_the_keys_named_whatever_their_values(env: Any) -> None:
    await register(env, "10.0.0.1", metadata='{"zone":"a","keep":"1","gone":"x"}')

    answer = await env.json(
        "DELETE",
        BATCH,
        {"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "zone=other,gone="},
    )

    assert answer == {"updated": ["10.0.0.1:8080:unknown:DEFAULT:ephemeral"]}
    assert await metadata(env, "10.0.0.1") == {"keep": "1"}


@pytest.mark.parametrize(
    ("consistency_type", "chosen"),
    [
        pytest.param("ephemeral", ["10.0.0.1", "10.0.0.3"], id="ephemeral"),
        pytest.param("persist", ["10.0.0.2"], id="persist"),
    ],
)
async def test_a_consistency_type_selects_every_instance_of_its_kind(
    env: Any, consistency_type: str, chosen: list[str]
) -> None:
    await register(env, "10.0.0.1")
    await register(env, "10.0.0.2", ephemeral="false")
    await register(env, "10.0.0.3", clusterName="c1")

    answer = await env.json(
        "PUT",
        BATCH,
        {
            "serviceName": "svc",
            "consistencyType": consistency_type,
            # checked, then ignored (as Nacos ignores it)
            "instances": listed({"ip": "10.0.0.2", "port": 8080, "ephemeral": False}),
            "metadata": "k=v",
        },
    )

    assert [entry.split(":")[0] for entry in answer["updated"]] == chosen
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        cluster = {"clusterName": "c1"} if ip == "10.0.0.3" else {}
        expected = {"k": "v"} if ip in chosen else {}
        assert await metadata(env, ip, **cluster) == expected, ip


async def test_listed_instances_that_do_not_exist_are_passed_over(env: Any) -> None:
    await register(env, "10.0.0.1")

    answer = await env.json(
        "PUT",
        BATCH,
        {
            "serviceName": "svc",
            "instances": listed(
                {"ip": "10.0.0.9", "port": 8080},
                {"ip": "10.0.0.1", "port": 8080, "ephemeral": False},  # wrong kind
                {"ip": "10.0.0.1", "port": 8080, "clusterName": "c1"},  # wrong cluster
                {"ip": "10.0.0.1", "port": 8080},
            ),
            "metadata": "k=v",
        },
    )

    assert answer == {"updated": ["10.0.0.1:8080:unknown:DEFAULT:ephemeral"]}


async def test_grouped_names_and_form_bodies_are_read_as_on_the_other_instance_routes(
    env: Any,
) -> None:
    await register(env, "10.0.0.1", serviceName="G1@@svc")
    form = {"serviceName": "svc", "groupName": "G1", "consistencyType": "ephemeral",
            "metadata": '{"k":"v"}'}  # fmt: skip

    response = await env.client.put(BATCH, data=form)

    assert response.status == 200, await response.text()
    assert await response.json() == {"updated": ["10.0.0.1:8080:unknown:DEFAULT:ephemeral"]}
    assert await metadata(env, "10.0.0.1", serviceName="G1@@svc") == {"k": "v"}


async def test_a_missing_service_answers_nothing_updated(env: Any) -> None:
    before = env.snapshot()

    answer = await env.json(
        "PUT", BATCH, {"serviceName": "ghost", "consistencyType": "persist", "metadata": "k=v"}
    )

    assert answer == {"updated": []}
    assert env.snapshot() == before


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("instances", [None, "", "[]"])
async def test_no_consistency_type_and_no_instances_proposes_nothing(
    env: Any, method: str, instances: str | None
) -> None:
    await register(env, "10.0.0.1")
    proposed = len(env.proposer.proposed)
    params = {"serviceName": "svc", "metadata": "k=v", "consistencyType": ""}
    if instances is not None:
        params["instances"] = instances

    assert await env.json(method, BATCH, params) == {"updated": []}
    assert len(env.proposer.proposed) == proposed


@pytest.mark.parametrize(
    ("params", "wire_field", "rule"),
    [
        pytest.param({"consistencyType": "all"}, "consistencyType", "ephemeral, persist or empty",
                     id="consistency-type-other"),
        pytest.param({"consistencyType": "EPHEMERAL"}, "consistencyType", "ephemeral, persist",
                     id="consistency-type-case"),
        pytest.param({"instances": "10.0.0.1:8080"}, "instances", "JSON array",
                     id="instances-not-json"),
        pytest.param({"instances": '{"ip": "10.0.0.1", "port": 8080}'}, "instances",
                     "JSON array", id="instances-not-array"),
        pytest.param({"instances": '[{"ip": "10.0.0.1", "port": 0}]'}, "instances",
                     "item 0: port", id="instances-bad-port"),
        pytest.param({"instances": '[{"ip": "10.0.0.1", "port": 1, "clusterName": "c_1"}]'},
                     "instances", "item 0: clusterName", id="instances-bad-cluster"),
        pytest.param({"instances": '[{"port": 8080}]'}, "instances", "item 0: ip is required",
                     id="instances-no-ip"),
        pytest.param({"consistencyType": "ephemeral", "instances": "[1]"}, "instances",
                     "item 0", id="instances-checked-with-a-type"),
        pytest.param({"metadata": None}, "metadata", "is required", id="metadata-missing"),
        pytest.param({"metadata": " "}, "metadata", "is required", id="metadata-blank"),
        pytest.param({"metadata": "[1]"}, "metadata", "", id="metadata-not-an-object"),
        pytest.param({"serviceName": None}, "serviceName", "is required", id="service-missing"),
        pytest.param({"serviceName": "a@@b@@c"}, "serviceName", "", id="service-bad"),
        pytest.param({"namespaceId": "a b"}, "namespaceId", "", id="namespace-bad"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_bad_input_is_400_naming_the_field_and_proposes_nothing(
    env: Any, method: str, params: dict[str, str | None], wire_field: str, rule: str
) -> None:
    await register(env, "10.0.0.1")
    before, proposed = env.snapshot(), len(env.proposer.proposed)
    good = {"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "k=v"}
    query = {k: v for k, v in {**good, **params}.items() if v is not None}

    status, body = await env.text(method, BATCH, query)

    assert status == 400
    assert body.startswith(f"invalid parameter {wire_field}: "), body
    assert rule in body
    assert env.snapshot() == before
    assert len(env.proposer.proposed) == proposed


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_list_past_its_bound_is_400_naming_instances_and_the_bound(
    env: Any, method: str
) -> None:
    await register(env, "10.0.0.1")
    proposed = len(env.proposer.proposed)
    items = listed(*({"ip": "10.0.0.1", "port": port} for port in range(1, 1002)))
    form = {"serviceName": "svc", "instances": items, "metadata": "k=v"}

    response = await env.client.request(method, BATCH, data=form)  # too long for a URL

    assert response.status == 400
    assert await response.text() == "invalid parameter instances: must list at most 1000 instances"
    assert len(env.proposer.proposed) == proposed


async def test_a_change_past_the_metadata_bounds_is_400_and_changes_nothing(env: Any) -> None:
    await register(env, "10.0.0.1", metadata='{"zone":"a"}')
    full = orjson.dumps({f"k{i}": "v" for i in range(128)}).decode()
    await register(env, "10.0.0.2", metadata=full)
    before = env.snapshot()

    status, body = await env.text(
        "PUT", BATCH, {"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "new=1"}
    )

    assert status == 400
    assert body.startswith("invalid parameter metadata: must have at most 128 entries"), body
    assert "10.0.0.2#8080#DEFAULT#DEFAULT_GROUP@@svc" in body
    assert "nothing changed" in body
    assert env.snapshot() == before
    assert await metadata(env, "10.0.0.1") == {"zone": "a"}


# ------------------------------------------------------------ the upgrade gate


class RecordingGate:
    """A cluster version gate: refuses while `behind` names a member, and records asks."""

    def __init__(self, behind: str = "") -> None:
        self.behind = behind
        self.asked: list[tuple[int, str]] = []

    async def require(self, version: int, what: str) -> None:
        self.asked.append((version, what))
        if self.behind:
            raise UpgradeUnfinishedError(
                f"{what} needs peer protocol {version} on every member; not yet: {self.behind}"
            )


@asynccontextmanager
async def gated(
    env: Env, gate: RecordingGate
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A second application over the same state and proposer, its service behind `gate`."""
    naming = NamingService(env.state, env.proposer, env.clock, env.beats, env.push, gate=gate)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(make_app(naming)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_before_every_member_reads_the_command_it_is_503_and_nothing_is_proposed(
    env: Any,
) -> None:
    await register(env, "10.0.0.1")
    before, proposed = env.snapshot(), len(env.proposer.proposed)
    gate = RecordingGate(behind="127.0.0.1:7003 (speaks 1..2)")
    params = {"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "k=v"}

    async with gated(env, gate) as client:
        response = await client.put(BATCH, params=params)
        status, body = response.status, await response.text()

    assert status == 503
    assert "127.0.0.1:7003 (speaks 1..2)" in body
    assert gate.asked == [(UPDATE_METADATA_SINCE, "batch metadata")]
    assert len(env.proposer.proposed) == proposed
    assert env.snapshot() == before


async def test_once_every_member_reads_it_the_gate_lets_it_through(env: Any) -> None:
    await register(env, "10.0.0.1")
    gate = RecordingGate()

    async with gated(env, gate) as client:
        response = await client.put(
            BATCH, params={"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "k=v"}
        )
        nothing = await client.put(BATCH, params={"serviceName": "svc", "metadata": "k=v"})
        answers = (response.status, await response.json(), await nothing.json())

    assert answers == (
        200,
        {"updated": ["10.0.0.1:8080:unknown:DEFAULT:ephemeral"]},
        {"updated": []},
    )
    assert gate.asked == [(3, "batch metadata")]  # not for a request that proposes nothing
    assert await metadata(env, "10.0.0.1") == {"k": "v"}


# ------------------------------------------------------------ the quota alarm


class AlarmUp:
    def quota_refusal(self) -> str | None:
        return "the state is at its quota"


async def test_under_the_quota_alarm_a_removal_goes_and_a_merge_does_not(env: Any) -> None:
    await register(env, "10.0.0.1", metadata='{"a":"1","b":"2"}')
    naming = NamingService(env.state, env.proposer, env.clock, env.beats, env.push, guard=AlarmUp())
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(make_app(naming)))
    await client.start_server()
    params = {"serviceName": "svc", "consistencyType": "ephemeral", "metadata": "a="}
    try:
        refused = await client.put(BATCH, params=params)
        removed = await client.delete(BATCH, params=params)
        assert (refused.status, await refused.text()) == (503, "the state is at its quota")
        assert removed.status == 200
    finally:
        await client.close()
    assert await metadata(env, "10.0.0.1") == {"b": "2"}
