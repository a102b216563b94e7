"""nacos-sdk-python 3.x, the gRPC client a plain `pip install nacos-sdk-python` gives, against
a real 3-node cluster, unchanged: register, list, subscribe and hear another client on
another node, deregister; an instance gone once its client closes; and kill -9 of the node
a client is connected to: the client moves to another node, re-registers its instance,
and its subscription keeps firing, with nothing else lost.

Each SDK runs in its own process (`Sdk3Client`, from the `sdk3` fixture's venv).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import DEFAULT_ARGS, LocalCluster, Sdk3Client, local_cluster, wait_for

pytestmark = pytest.mark.e2e

ARGS = (
    *DEFAULT_ARGS,
    "--unhealthy-after-ms", "1500",
    "--remove-after-ms", "3000",
    "--sweep-ms", "200",
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("sdk3-naming"), size=3, extra_args=ARGS) as c:
        c.wait_ready()
        yield c


def v1_hosts(cluster: LocalCluster, index: int, service: str) -> set[str]:
    answer = cluster.client.get(
        f"{cluster.nodes[index].url}/nacos/v1/ns/instance/list",
        params={"serviceName": service},
    )
    answer.raise_for_status()
    return {f"{h['ip']}:{h['port']}" for h in answer.json()["hosts"]}


def everywhere(cluster: LocalCluster, service: str, expected: set[str]) -> None:
    for index, node in enumerate(cluster.nodes):
        if node.serving:
            wait_for(
                lambda i=index: v1_hosts(cluster, i, service) == expected or None,  # type: ignore[misc]
                timeout_seconds=15,
                what=f"{node.address} to list {sorted(expected)} for {service}",
            )


def naming_connections(cluster: LocalCluster) -> dict[int, int]:
    """Per serving node: the 2.x naming connections it holds (its metrics)."""
    held = {}
    for index, node in enumerate(cluster.nodes):
        if not node.serving:
            continue
        text = cluster.client.get(f"{node.url}/metrics").text
        line = next(
            row for row in text.splitlines()
            if row.startswith('naraft_grpc{name="connections_naming"}')
        )  # fmt: skip
        held[index] = int(float(line.split()[-1]))
    return held


def hears(client: Sdk3Client, service: str, hosts: set[str]) -> None:
    client.wait_event(
        lambda e: e["event"] == "instances" and e["service"] == service and set(e["hosts"]) == hosts
    )


def test_register_list_subscribe_deregister_and_close(cluster: LocalCluster, sdk3: Path) -> None:
    service = "sdk3-svc"
    one = Sdk3Client(sdk3, cluster.nodes[0].address, services="naming")
    two = Sdk3Client(sdk3, cluster.nodes[1].address, services="naming")
    try:
        assert one.call("register", service=service, ip="10.5.0.1", port=80, metadata={"v": "1"})
        listed = one.call("list", service=service)
        assert [(h["ip"], h["port"], h["metadata"]) for h in listed] == [
            ("10.5.0.1", 80, {"v": "1"})
        ]
        two.call("subscribe", service=service)
        hears(two, service, {"10.5.0.1:80"})
        # the other client, on another node, registers: the first one's subscription hears it
        one.call("subscribe", service=service)
        assert two.call("register", service=service, ip="10.5.0.2", port=80)
        hears(one, service, {"10.5.0.1:80", "10.5.0.2:80"})
        everywhere(cluster, service, {"10.5.0.1:80", "10.5.0.2:80"})
        healthy = two.call("list", service=service, healthy_only=True)
        assert {h["ip"] for h in healthy} == {"10.5.0.1", "10.5.0.2"}
        assert two.call("deregister", service=service, ip="10.5.0.2", port=80)
        hears(one, service, {"10.5.0.1:80"})
        assert service in two.call("services")["services"]
        # a v1 registration is heard by a 3.x subscriber too
        v1 = cluster.client.post(
            f"{cluster.nodes[2].url}/nacos/v1/ns/instance",
            params={"serviceName": service, "ip": "10.5.0.3", "port": "80"},
        )
        assert v1.text == "ok"
        hears(two, service, {"10.5.0.1:80", "10.5.0.3:80"})
    finally:
        one.close()
    # its client closed: its instance is gone from every node, heard by the other
    everywhere(cluster, service, {"10.5.0.3:80"})
    hears(two, service, {"10.5.0.3:80"})
    two.close()


def v2_data(cluster: LocalCluster, index: int, path: str, **params: str) -> Any:
    """The `data` of a successful `/nacos/v2/ns/client…` answer from node `index`."""
    answer = cluster.client.get(
        f"{cluster.nodes[index].url}/nacos/v2/ns/client{path}", params=params
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["code"] == 0
    return answer.json()["data"]


def test_the_client_views_show_who_registered_and_who_follows(
    cluster: LocalCluster, sdk3: Path
) -> None:
    """Nacos 2.x's client routes: a 3.x client's connection on the node it talks to, what it
    registered and follows; the publishers of a service on every node, an HTTP registration
    under Nacos's `ip:port#ephemeral` id."""
    service = "sdk3-clients"
    client = Sdk3Client(sdk3, cluster.nodes[0].address, services="naming")
    try:
        assert client.call("register", service=service, ip="10.7.0.1", port=80)
        client.call("subscribe", service=service)
        persistent = cluster.client.post(
            f"{cluster.nodes[1].url}/nacos/v1/ns/instance",
            params={"serviceName": service, "ip": "10.7.0.2", "port": "81", "ephemeral": "false"},
        )
        assert persistent.text == "ok"
        # who registered: replicated, so the same answer on every node
        for index in range(3):
            wait_for(
                lambda i=index: len(  # type: ignore[misc]
                    v2_data(cluster, i, "/service/publisher/list", serviceName=service)
                ) == 1 or None,
                timeout_seconds=15,
                what=f"node {index} to know who registered 10.7.0.1:80",
            )  # fmt: skip
        [publisher] = v2_data(cluster, 2, "/service/publisher/list", serviceName=service)
        client_id = publisher["clientId"]
        assert (publisher["ip"], publisher["port"]) == ("10.7.0.1", 80)
        assert v2_data(
            cluster, 2, "/service/publisher/list", serviceName=service, ephemeral="false"
        ) == [{"clientId": "10.7.0.2:81#false", "ip": "10.7.0.2", "port": 81}]
        assert (
            v2_data(cluster, 0, "/service/publisher/list", serviceName=service, ip="10.9.9.9") == []
        )
        # the connection: held by the node it talks to, and only there
        assert client_id in v2_data(cluster, 0, "/list")
        assert client_id not in v2_data(cluster, 1, "/list")
        detail = v2_data(cluster, 0, "", clientId=client_id)
        assert detail["clientType"] == "connection"
        assert detail["connectType"] == "GRPC"
        assert detail["clientIp"]  # the address the client reports of itself, as in Nacos
        assert client_id.endswith(f"_{detail['clientPort']}")  # the connection's own port
        assert detail["version"]  # the SDK's own, from its setup
        assert v2_data(cluster, 0, "/publish/list", clientId=client_id) == [
            {
                "namespace": "public",
                "group": "DEFAULT_GROUP",
                "serviceName": service,
                "registeredInstance": {"ip": "10.7.0.1", "port": 80, "cluster": "DEFAULT"},
            }
        ]
        followed = v2_data(cluster, 0, "/subscribe/list", clientId=client_id)
        address = f"{detail['clientIp']}:{detail['clientPort']}"
        assert [
            (f["serviceName"], f["subscriberInfo"]["agent"], f["subscriberInfo"]["addr"])
            for f in followed
        ] == [(service, detail["version"], address)]
        followers = v2_data(cluster, 0, "/service/subscriber/list", serviceName=service)
        assert [f["clientId"] for f in followers] == [client_id]
        assert v2_data(cluster, 1, "/service/subscriber/list", serviceName=service) == []
        elsewhere = cluster.client.get(
            f"{cluster.nodes[1].url}/nacos/v2/ns/client", params={"clientId": client_id}
        )
        assert (elsewhere.status_code, elsewhere.json()["code"]) == (404, 20004)
        unnamed = cluster.client.get(f"{cluster.nodes[0].url}/nacos/v2/ns/client/publish/list")
        assert (unnamed.status_code, unnamed.json()["code"]) == (400, 10000)
        assert "clientId" in unnamed.json()["data"]
    finally:
        client.close()
    wait_for(
        lambda: client_id not in v2_data(cluster, 0, "/list") or None,
        timeout_seconds=15,
        what="the closed connection to leave the client list",
    )


def test_kill_9_of_the_clients_node_moves_it_and_loses_nothing(
    cluster: LocalCluster, sdk3: Path
) -> None:
    service = "sdk3-moving"
    before = naming_connections(cluster)
    servers = ",".join(node.address for node in cluster.nodes)
    mover = Sdk3Client(sdk3, servers)  # naming and config, each on its own connection
    try:
        assert mover.call("register", service=service, ip="10.6.0.1", port=80)
        mover.call("listen", data_id="moving.yaml")
        after = naming_connections(cluster)
        holding = next(i for i in after if after[i] > before.get(i, 0))
        witness_node = next(i for i in after if i != holding)
        witness = Sdk3Client(sdk3, cluster.nodes[witness_node].address, services="naming")
        try:
            assert witness.call("register", service=service, ip="10.6.0.2", port=80)
            mover.call("subscribe", service=service)
            hears(mover, service, {"10.6.0.1:80", "10.6.0.2:80"})
            cluster.nodes[holding].kill()
            try:
                # the mover reconnects elsewhere and re-registers: after the dead node's
                # hold expires, its instance is listed again, and the witness's stays
                wait_for(
                    lambda: sum(naming_connections(cluster).values()) >= 2 or None,
                    timeout_seconds=30,
                    what="the client to reconnect to a live node",
                )
                everywhere(cluster, service, {"10.6.0.1:80", "10.6.0.2:80"})
                # its subscription and its config listener keep firing after the move
                assert witness.call("register", service=service, ip="10.6.0.3", port=80)
                hears(mover, service, {"10.6.0.1:80", "10.6.0.2:80", "10.6.0.3:80"})
                published = cluster.client.post(
                    f"{cluster.nodes[witness_node].url}/nacos/v1/cs/configs",
                    data={"dataId": "moving.yaml", "group": "DEFAULT_GROUP", "content": "v: 2"},
                )
                assert published.text == "true", published.text
                mover.wait_event(
                    lambda e: e["event"] == "config"
                    and e["dataId"] == "moving.yaml"
                    and e["content"] == "v: 2"
                )
            finally:
                cluster.nodes[holding].start()
                cluster.wait_ready()
            everywhere(cluster, service, {"10.6.0.1:80", "10.6.0.2:80", "10.6.0.3:80"})
        finally:
            witness.close()
    finally:
        mover.close()
