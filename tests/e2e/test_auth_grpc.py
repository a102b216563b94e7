"""Auth on the 2.x gRPC port, on a cluster of its own (test_auth_e2e's cluster has used up
127.0.0.1's failed logins by the time these would run): nacos-sdk-python 3.x with
credentials; tokens that are missing, wrong, expired or forged refused with nothing
written; a reader of one namespace reads there, cannot write, sees nothing of another."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import LocalCluster, Sdk3Client, wait_for_async
from tests.e2e.test_auth_e2e import (
    NACOS_DEFAULT_KEY,
    TOKEN_TTL_SECONDS,
    admin_token,
    auth_cluster,
    forged_token,
    hosts_everywhere,
    make_user,
    none_alg_token,
)

from naraft.client import INSTANCE_LIST_PATH, bearer, login
from naraft.grpc.client import GrpcTestClient, grpc_address

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with auth_cluster(tmp_path_factory.mktemp("auth-grpc") / "cluster") as cluster:
        yield cluster


def grpc_persistent(service: str, ip: str, namespace: str = "public") -> dict[str, Any]:
    return {
        "namespace": namespace,
        "groupName": "DEFAULT_GROUP",
        "serviceName": service,
        "type": "registerInstance",
        "instance": {"ip": ip, "port": 80, "ephemeral": False},
    }


def test_the_3x_client_logs_in_and_works_over_grpc(cluster: LocalCluster, sdk3: Path) -> None:
    password = cluster.admin_password
    assert password is not None
    servers = ",".join(node.address for node in cluster.nodes)
    client = Sdk3Client(sdk3, servers, username="nacos", password=password)
    try:
        assert client.call("register", service="auth-grpc", ip="10.4.0.1", port=80)
        assert [h["ip"] for h in client.call("list", service="auth-grpc")] == ["10.4.0.1"]
        assert client.call("publish", data_id="auth-grpc.yaml", content="k: v")
        assert client.call("get", data_id="auth-grpc.yaml") == "k: v"
    finally:
        client.close()
    wrong = Sdk3Client(sdk3, servers, username="nacos", password="wrong-password")
    try:
        refused = wrong.try_call("register", service="auth-grpc", ip="10.4.0.2", port=80)
        assert not refused["ok"]
    finally:
        wrong.kill()
    assert hosts_everywhere(cluster, "auth-grpc") == set()  # its instance left with it


async def test_grpc_without_a_good_token_writes_nothing(cluster: LocalCluster) -> None:
    password = cluster.admin_password
    assert password is not None
    expired = login(cluster.nodes[0].url, password)
    await wait_for_async(
        lambda: cluster.client.get(
            f"{cluster.nodes[0].url}{INSTANCE_LIST_PATH}",
            params={"serviceName": "x"},
            headers=bearer(expired),
        ).text
        == "token expired!"
        or None,
        timeout_seconds=TOKEN_TTL_SECONDS + 10,
        what="token expiry",
    )
    tokens = {
        "none": None,
        "wrong": "eyJhbGciOiJIUzI1NiJ9.e30.wrong",
        "expired": expired,
        "nacos-default-key": forged_token(NACOS_DEFAULT_KEY),
        "alg-none": none_alg_token(),
    }
    for port, (name, token) in enumerate(tokens.items(), start=9100):
        client = await GrpcTestClient(
            grpc_address(cluster.nodes[port % 3].address), access_token=token
        ).connect()
        try:
            answer = await client.request(
                "PersistentInstanceRequest",
                grpc_persistent("auth-grpc-guarded", f"10.5.0.{port % 200}"),
            )
            assert (answer.type, answer.body["errorCode"]) == ("InstanceResponse", 403), name
            config = await client.request(
                "ConfigPublishRequest",
                {"dataId": "guarded.yaml", "group": "DEFAULT_GROUP", "tenant": "", "content": "x"},
            )
            assert config.body["errorCode"] == 403, (name, config)
        finally:
            await client.close()
    assert hosts_everywhere(cluster, "auth-grpc-guarded") == set()
    read = cluster.client.get(
        f"{cluster.nodes[1].url}/nacos/v1/cs/configs",
        params={"dataId": "guarded.yaml", "group": "DEFAULT_GROUP"},
        headers=bearer(admin_token(cluster)),
    )
    assert read.status_code == 404, read.text


async def test_a_grpc_reader_reads_cannot_write_and_sees_nothing_of_another_namespace(
    cluster: LocalCluster,
) -> None:
    make_user(cluster, "grpc-reader", "ns-a", "r")
    token = login(cluster.nodes[0].url, "grpc-reader-pw", username="grpc-reader")
    client = await GrpcTestClient(
        grpc_address(cluster.nodes[2].address), access_token=token
    ).connect()
    try:
        query = {"groupName": "DEFAULT_GROUP", "serviceName": "shared", "cluster": "",
                 "healthOnly": False}  # fmt: skip
        allowed = await client.request("ServiceQueryRequest", {**query, "namespace": "ns-a"})
        assert allowed.ok, allowed
        refused = await client.request(
            "PersistentInstanceRequest", grpc_persistent("shared", "10.6.0.1", "ns-a")
        )
        assert refused.body["errorCode"] == 403
        other = await client.request("ServiceQueryRequest", {**query, "namespace": "ns-b"})
        assert other.body["errorCode"] == 403
    finally:
        await client.close()
    assert "10.6.0.1:80" not in hosts_everywhere(cluster, "shared", "ns-a")
