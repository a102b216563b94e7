"""The 2.x gRPC acceptor as a stranger meets it, on a real node: the handshake, and every
kind of bad input answered in Nacos's shapes (never a broken call, never a crash); the
bounds on message size and on a client that never answers its pushes; tokens on gRPC;
and a stopping node telling its clients to move.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from tests.e2e.harness import DEFAULT_ARGS, LocalCluster, local_cluster, wait_for_async

from naraft.client import login
from naraft.grpc import payload
from naraft.grpc.client import GrpcTestClient, grpc_address

pytestmark = pytest.mark.e2e

ARGS = (
    *DEFAULT_ARGS,
    "--grpc-max-message-mib", "1",
    "--grpc-push-timeout-ms", "300",
)  # fmt: skip
NAMES = {"namespace": "public", "groupName": "DEFAULT_GROUP"}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("grpc-protocol"), size=1, extra_args=ARGS) as c:
        c.wait_ready()
        yield c


@pytest.fixture
async def client(node: LocalCluster) -> AsyncIterator[GrpcTestClient]:
    connected = await GrpcTestClient(grpc_address(node.nodes[0].address)).connect()
    yield connected
    await connected.close()


def register_body(service: str, **instance: Any) -> dict[str, Any]:
    return {
        **NAMES,
        "serviceName": service,
        "type": "registerInstance",
        "instance": {"ip": "10.9.0.1", "port": 80, **instance},
    }


async def test_handshake_then_health_check(client: GrpcTestClient) -> None:
    assert client.connection_id.endswith(f"_{client.connection_id.rsplit('_', 1)[-1]}")
    assert "_127.0.0.1_" in client.connection_id
    health = await client.request("HealthCheckRequest", {})
    assert health.type == "HealthCheckResponse"
    assert health.ok


async def test_bad_payloads_are_answered_in_nacos_shapes(client: GrpcTestClient) -> None:
    undecodable = await client.raw_request(b"\xff\xfe not a protobuf")
    assert undecodable.type == "ErrorResponse"
    assert undecodable.body["errorCode"] == 502
    assert "payload" in undecodable.body["message"]

    not_json = payload.build("InstanceRequest", {})
    not_json.body.value = b"{not json"
    answer = await client.raw_request(payload.serialize(not_json))
    assert (answer.type, answer.body["errorCode"]) == ("ErrorResponse", 502)
    assert "body" in answer.body["message"]

    untyped = await client.raw_request(payload.serialize(payload.build("", {})))
    assert untyped.body["errorCode"] == 502
    assert "metadata.type" in untyped.body["message"]

    unknown = await client.request("NoSuchRequest", {})
    assert (unknown.type, unknown.body["errorCode"]) == ("ErrorResponse", 302)
    # the internal route a member uses to release a closed connection is not a client's
    internal = await client.request("ReleaseConnectionRequest", {"keys": []})
    assert internal.body["errorCode"] == 302

    # the connection still serves after all of that
    assert (await client.request("HealthCheckRequest", {})).ok


@pytest.mark.parametrize(
    ("instance", "field"),
    [
        ({"ip": ""}, "ip"),
        ({"port": 70_000}, "port"),
        ({"port": "eighty"}, "port"),
        ({"weight": -1}, "weight"),
        ({"metadata": ["not", "a", "map"]}, "metadata"),
        ({"ephemeral": False}, "ephemeral"),
        ({"ephemeral": "false"}, "ephemeral"),
        ({"ephemeral": []}, "ephemeral"),
    ],
)
async def test_bad_fields_are_refused_naming_the_field(
    client: GrpcTestClient, node: LocalCluster, instance: dict[str, Any], field: str
) -> None:
    answer = await client.request("InstanceRequest", register_body("bad-field-svc", **instance))
    assert answer.type == "InstanceResponse", answer
    assert answer.body["errorCode"] == 400, answer
    assert answer.body["resultCode"] == 500
    assert field in answer.body["message"], answer
    listed = node.client.get(
        f"{node.nodes[0].url}/nacos/v1/ns/instance/list", params={"serviceName": "bad-field-svc"}
    )
    assert listed.json()["hosts"] == []  # nothing half-written


async def test_unknown_instance_request_type_and_missing_service(client: GrpcTestClient) -> None:
    wrong = await client.request("InstanceRequest", {**register_body("s"), "type": "upsert"})
    assert wrong.body["errorCode"] == 400
    assert "type" in wrong.body["message"]
    nameless = await client.request("InstanceRequest", {**register_body(""), "serviceName": None})
    assert nameless.body["errorCode"] == 400
    assert "service" in nameless.body["message"].lower()


async def test_a_request_without_a_connection_setup_is_unregistered(node: LocalCluster) -> None:
    channel = grpc.aio.insecure_channel(grpc_address(node.nodes[0].address))
    try:
        unary = channel.unary_unary(
            "/Request/request",
            request_serializer=payload.serialize,
            response_deserializer=payload.Payload.FromString,
        )
        answer = payload.decoded(await unary(payload.build("HealthCheckRequest", {}), timeout=10))
        assert (answer.type, answer.body["errorCode"]) == ("ErrorResponse", 301)
    finally:
        await channel.close()


async def test_a_message_over_the_limit_is_refused_and_the_node_serves_on(
    client: GrpcTestClient,
) -> None:
    huge = register_body("huge-svc", metadata={"blob": "x" * (2 * 1024 * 1024)})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.request("InstanceRequest", huge)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await client.request("HealthCheckRequest", {})).ok


async def test_a_client_that_never_answers_pushes_is_closed_and_released(
    node: LocalCluster,
) -> None:
    address = grpc_address(node.nodes[0].address)
    silent = await GrpcTestClient(address, answer_pushes=False).connect()
    writer = await GrpcTestClient(address).connect()
    try:
        answer = await silent.request("InstanceRequest", register_body("silent-svc"))
        assert answer.ok, answer
        subscribed = await silent.request(
            "SubscribeServiceRequest",
            {**NAMES, "serviceName": "silent-svc", "clusters": "", "subscribe": True},
        )
        assert subscribed.ok
        other = register_body("silent-svc", ip="10.9.0.2")
        assert (await writer.request("InstanceRequest", other)).ok
        # 3 unanswered attempts of 300 ms: the node closes the connection
        async with asyncio.timeout(15):
            await silent.stream_ended.wait()
        await wait_for_async(
            lambda: _hosts(node, "silent-svc") == {"10.9.0.2:80"} or None,
            timeout_seconds=10,
            what="the silent client's instance to be released",
        )
    finally:
        await silent.close()
        await writer.close()


def _try_login(url: str, password: str) -> str | None:
    try:
        return login(url, password)
    except OSError:
        return None


def _hosts(node: LocalCluster, service: str) -> set[str]:
    listed = node.client.get(
        f"{node.nodes[0].url}/nacos/v1/ns/instance/list", params={"serviceName": service}
    )
    return {f"{h['ip']}:{h['port']}" for h in listed.json()["hosts"]}


async def test_tokens_on_grpc(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("grpc-auth")
    with local_cluster(root, size=1, auth="on") as cluster:
        cluster.wait_ready()
        base = cluster.nodes[0]
        address = grpc_address(base.address)
        anonymous = await GrpcTestClient(address).connect()
        try:
            # the handshake and health checks need no token, a write does
            assert (await anonymous.request("HealthCheckRequest", {})).ok
            refused = await anonymous.request("InstanceRequest", register_body("auth-svc"))
            assert (refused.type, refused.body["errorCode"]) == ("InstanceResponse", 403)
            forged = await anonymous.request(
                "InstanceRequest", register_body("auth-svc"), headers={"accessToken": "forged"}
            )
            assert forged.body["errorCode"] == 403
        finally:
            await anonymous.close()
        password = cluster.admin_password
        assert password is not None
        token = await wait_for_async(
            lambda: _try_login(base.url, password),
            timeout_seconds=15,
            what="the admin's first login (once auth is bootstrapped)",
        )
        admin = await GrpcTestClient(address, access_token=token).connect()
        try:
            done = await admin.request("InstanceRequest", register_body("auth-svc"))
            assert done.ok, done
        finally:
            await admin.close()


async def test_a_stopping_node_asks_its_clients_to_move(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with local_cluster(tmp_path_factory.mktemp("grpc-reset"), size=1) as cluster:
        cluster.wait_ready()
        client = await GrpcTestClient(grpc_address(cluster.nodes[0].address)).connect()
        try:
            assert (await client.request("HealthCheckRequest", {})).ok
            stopping = asyncio.create_task(asyncio.to_thread(cluster.nodes[0].terminate))
            reset = await client.next_push("ConnectResetRequest", timeout_seconds=15)
            assert reset.body.get("serverIp") == ""
            async with asyncio.timeout(15):
                await client.stream_ended.wait()
            await stopping
        finally:
            await client.close()


async def test_grpc_speaks_tls_with_the_client_certificate(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with local_cluster(tmp_path_factory.mktemp("grpc-tls"), size=3, tls=True) as cluster:
        cluster.wait_ready()
        assert cluster.ca_file is not None
        ca = cluster.ca_file.read_bytes()
        secure = await GrpcTestClient(
            grpc_address(cluster.nodes[1].address), root_certificates=ca
        ).connect()
        try:
            done = await secure.request("InstanceRequest", register_body("tls-svc"))
            assert done.ok, done
            listed = await secure.request(
                "ServiceQueryRequest",
                {**NAMES, "serviceName": "tls-svc", "cluster": "", "healthOnly": False},
            )
            assert [h["ip"] for h in listed.body["serviceInfo"]["hosts"]] == ["10.9.0.1"]
        finally:
            await secure.close()
        # a plaintext client gets no service from a TLS node
        plain = GrpcTestClient(grpc_address(cluster.nodes[1].address), timeout_seconds=2)
        with pytest.raises(grpc.aio.AioRpcError):
            await plain.connect()
        await plain.close()


async def test_every_input_nemesis_case_gets_the_answer_it_names(node: LocalCluster) -> None:
    """The chaos input nemesis's gRPC cases against a calm node: each answered as the case
    says (so under faults a wrong answer is the server's), and the node serves on."""
    import random

    from naraft.chaos import grpc_inputs

    address = grpc_address(node.nodes[0].address)
    rng = random.Random(11)
    stop = asyncio.Event()
    seen: dict[str, set[str]] = {}
    for kind, make in grpc_inputs.MAKERS.items():
        for _ in range({"grpc-silent-client": 2, "grpc-garbage-stream": 4}.get(kind, 20)):
            label, send = make(rng)
            status = await grpc_inputs.exchange(address, send, stop)
            assert status in send.answers, f"{kind}: {label}: {status}"
            seen.setdefault(kind, set()).add(status)
    assert seen["grpc-silent-client"] == {"closed-by-server"}  # 3 pushes of 300 ms unanswered
    assert "RESOURCE_EXHAUSTED" in seen["grpc-oversized"]
    assert "InstanceResponse:400" in seen["grpc-oversized"]
    assert await grpc_inputs.healthy(address) is None
    assert not node.nodes[0].tracebacks()
