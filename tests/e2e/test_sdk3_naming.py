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
