"""`PUT /nacos/v1/ns/cluster`: Nacos's cluster update (docs/nacos-compat.md#cluster-update)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.api.test_metadata_batch import RecordingGate, gated

from naraft.naming.keys import ServiceKey
from naraft.naming.model import HealthCheckerType
from naraft.naming.service import UPDATE_CLUSTER_SINCE

CLUSTER = "/nacos/v1/ns/cluster"
HTTP_CHECKER = '{"type":"HTTP","path":"/health","headers":"","expectedResponseCode":"204"}'
SVC = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc")


async def register(env: Any, **params: str) -> None:
    base = {"ip": "10.0.0.1", "port": "8080", "serviceName": "svc", "clusterName": "c1"}
    assert await env.text("POST", "/nacos/v1/ns/instance", {**base, **params}) == (200, "ok")


def update(**params: str) -> dict[str, str]:
    return {
        "serviceName": "svc",
        "clusterName": "c1",
        "checkPort": "8081",
        "useInstancePort4Check": "false",
        "healthChecker": HTTP_CHECKER,
        "metadata": '{"zone":"a"}',
        **params,
    }


async def test_update_replaces_the_cluster_and_every_view_shows_it(env: Any) -> None:
    await register(env)
    assert await env.text("PUT", CLUSTER, update()) == (200, "ok")
    service = env.state.service(SVC)
    cluster = service.clusters["c1"]
    assert (cluster.check_port, cluster.use_instance_port) == (8081, False)
    assert cluster.health_checker_type is HealthCheckerType.HTTP
    assert cluster.metadata == {"zone": "a"}
    checker = {"type": "HTTP", "path": "/health", "headers": "", "expectedResponseCode": 204}
    detail = await env.json("GET", "/nacos/v1/ns/service", {"serviceName": "svc"})
    assert detail["clusters"] == [
        {"name": "c1", "healthChecker": checker, "metadata": {"zone": "a"}}
    ]
    catalog = await env.json("GET", "/nacos/v1/ns/catalog/service", {"serviceName": "svc"})
    (shown,) = catalog["clusters"]
    assert shown["healthChecker"] == checker
    assert (shown["defaultCheckPort"], shown["useIPPort4Check"]) == (8081, False)
    # a cluster not there yet is created; the others keep theirs
    mysql = '{"type":"mysql","user":"u","pwd":"p","cmd":"select 1","extra":1}'
    second = update(clusterName="c2", healthChecker=mysql, metadata="", checkPort="0")
    assert await env.text("PUT", CLUSTER, second) == (200, "ok")
    clusters = env.state.service(SVC).clusters
    assert clusters["c1"] == cluster
    assert clusters["c2"].checker_options == {"user": "u", "pwd": "p", "cmd": "select 1"}
    assert clusters["c2"].metadata == {}


async def test_a_checker_of_type_none_lets_ephemeral_health_be_set_by_hand(env: Any) -> None:
    await register(env)
    health = {"serviceName": "svc", "ip": "10.0.0.1", "port": "8080", "clusterName": "c1",
              "healthy": "false"}  # fmt: skip
    status, _ = await env.text("PUT", "/nacos/v1/ns/health/instance", health)
    assert status == 400  # beats decide, while the checker is TCP
    assert await env.text("PUT", CLUSTER, update(healthChecker='{"type":"NONE"}')) == (200, "ok")
    assert await env.text("PUT", "/nacos/v1/ns/health/instance", health) == (200, "ok")
    assert env.state.instances(SVC)[0].healthy is False


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"serviceName": ""}, "serviceName"),
        ({"clusterName": ""}, "clusterName"),
        ({"clusterName": "a b"}, "clusterName"),
        ({"checkPort": ""}, "checkPort"),
        ({"checkPort": "65536"}, "checkPort"),
        ({"checkPort": "x"}, "checkPort"),
        ({"useInstancePort4Check": ""}, "useInstancePort4Check"),
        ({"useInstancePort4Check": "yes"}, "useInstancePort4Check"),
        ({"healthChecker": ""}, "healthChecker"),
        ({"healthChecker": "{"}, "healthChecker"),
        ({"healthChecker": "[1]"}, "healthChecker"),
        ({"healthChecker": '{"type":"GRPC"}'}, "healthChecker"),
        ({"healthChecker": '{"type":"HTTP","expectedResponseCode":99}'}, "healthChecker"),
        ({"healthChecker": '{"type":"HTTP","path":' + '"' + "p" * 1025 + '"}'}, "healthChecker"),
        ({"healthChecker": '{"type":"MYSQL","user":1}'}, "healthChecker"),
        ({"metadata": "[1]"}, "metadata"),
    ],
)
async def test_a_bad_update_is_400_naming_the_field_and_writes_nothing(
    env: Any, params: dict[str, str], named: str
) -> None:
    await register(env)
    before = env.snapshot()
    status, body = await env.text("PUT", CLUSTER, update(**params))
    assert status == 400, body
    assert named in body
    assert env.snapshot() == before


async def test_a_missing_service_is_refused_and_creates_nothing(env: Any) -> None:
    before = env.snapshot()
    status, body = await env.text("PUT", CLUSTER, update(serviceName="nobody"))
    assert (status, body) == (
        400,
        "specified service not exist, serviceName : DEFAULT_GROUP@@nobody",
    )
    assert env.snapshot() == before


async def test_before_every_member_reads_the_command_it_is_503_and_nothing_is_proposed(
    env: Any,
) -> None:
    await register(env)
    before, proposed = env.snapshot(), len(env.proposer.proposed)
    gate = RecordingGate(behind="127.0.0.1:7003 (speaks 1..3)")
    async with gated(env, gate) as client:
        response = await client.put(CLUSTER, params=update())
        status, body = response.status, await response.text()
    assert status == 503
    assert "127.0.0.1:7003 (speaks 1..3)" in body
    assert gate.asked == [(UPDATE_CLUSTER_SINCE, "cluster updates")]
    assert len(env.proposer.proposed) == proposed
    assert env.snapshot() == before
