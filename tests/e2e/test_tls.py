"""Acceptance: a 3-node cluster with client TLS and mutual TLS between its members
(`ProcessCluster(tls=True)`: a throwaway CA, a certificate per node), driven over https by
the real Nacos Python client and by a verifying client, and probed by impostors.

nacos-sdk-python 2.0.11 takes `https://host:port` server addresses (read from its source:
`parse_nacos_server_addr` keeps the scheme, `_do_sync_req` prefixes http only when no scheme
is given) and speaks TLS with `ssl.SSLContext()`, which verifies nothing: it shows that a
stock Nacos client works against the TLS port, while httpx with the cluster's CA shows a
verified client. Every peer path the members use (Raft messages, digest, checksum, beats,
forwarded writes) is also what the impostors are refused.
"""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nacos  # type: ignore[import-untyped]
import pytest
from tests.e2e.harness import (
    FAST_TIMERS,
    LocalCluster,
    NodeProcess,
    free_ports,
    local_cluster,
    naraft_command,
    wait_for,
)

from naraft.certs import issue, new_ca, write_private
from naraft.client import INSTANCE_LIST_PATH, LEADER_PATH, kv_path
from naraft.tls import PEER_SERVER_NAME

pytestmark = [
    pytest.mark.e2e,
    # nacos/client.py builds `ssl.SSLContext()` for every request (see test_nacos_sdk.py)
    pytest.mark.filterwarnings(r"ignore:ssl\.(SSLContext|PROTOCOL_TLS):DeprecationWarning"),
]

REMOVE_AFTER_SECONDS = 1.5
TIMER_ARGS = (*FAST_TIMERS, "--unhealthy-after-ms", "800", "--remove-after-ms", "1500",
              "--sweep-ms", "100", "--checksum-interval-ms", "200",
              "--compact-entries", "30", "--compact-keep", "5")  # fmt: skip
PEER_ROUTES = (
    ("POST", "/nacos/v1/ns/raft/messages"),
    ("GET", "/nacos/v1/ns/raft/stream"),
    ("POST", "/naraft/v1/beats"),
    ("POST", "/nacos/v1/ns/raft/digest"),
    ("GET", "/nacos/v1/ns/raft/digest/s/0"),
    ("POST", "/nacos/v1/ns/raft/datums"),
    ("POST", "/nacos/v1/ns/raft/checksum"),
)
HOSTS = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("tls") / "cluster"
    with local_cluster(root, size=3, extra_args=TIMER_ARGS, tls=True) as cluster:
        cluster.wait_ready()
        yield cluster


@pytest.fixture
def followers(cluster: LocalCluster) -> tuple[NodeProcess, NodeProcess]:
    leader = cluster.leader()
    first, second = (n for n in cluster.nodes if n is not leader)
    return first, second


def test_every_node_serves_https_only_with_the_clusters_certificate(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        assert node.url.startswith("https://")
        assert cluster.client.get(f"{node.url}{LEADER_PATH}").status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{node.url}{LEADER_PATH}")  # the system's CAs do not know it
        with pytest.raises(httpx.TransportError):  # plaintext to the TLS port: no answer
            httpx.get(f"http://{node.address}{LEADER_PATH}", timeout=3)
        log = node.log_text()
        assert "clients over TLS, peers over mutual TLS" in log


def test_the_nacos_client_registers_over_https_and_another_node_serves_it(
    cluster: LocalCluster, followers: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    first, second = followers
    client = nacos.NacosClient(
        server_addresses=f"https://{first.address}",
        namespace="public",
        logDir=str(tmp_path / "nacos-logs"),
    )
    # a follower forwards the write to the leader over mutual TLS
    assert client.add_naming_instance(
        "tls-orders", "10.1.0.1", 9001, cluster_name="c1", ephemeral=False
    )
    reader = nacos.NacosClient(
        server_addresses=f"https://{second.address}",
        namespace="public",
        logDir=str(tmp_path / "nacos-logs-2"),
    )

    def listed() -> list[str] | None:
        hosts = reader.list_naming_instance("tls-orders")["hosts"]
        return [f"{h['ip']}:{h['port']}" for h in hosts] or None

    assert wait_for(listed, timeout_seconds=15, what="the instance on the other follower") == [
        "10.1.0.1:9001"
    ]
    assert client.remove_naming_instance(
        "tls-orders", "10.1.0.1", 9001, cluster_name="c1", ephemeral=False
    )
    wait_for(lambda: listed() is None, timeout_seconds=15, what="the instance gone")


def test_beats_sent_to_a_follower_reach_the_leader_over_mutual_tls(
    cluster: LocalCluster, followers: tuple[NodeProcess, NodeProcess], tmp_path: Path
) -> None:
    """An ephemeral instance beating only at a follower stays healthy: the follower batches
    its beats to the leader (the beat route), which would otherwise mark it unhealthy after
    0.8 s and remove it after 1.5 s."""
    first, second = followers
    client = nacos.NacosClient(
        server_addresses=f"https://{first.address}",
        namespace="public",
        logDir=str(tmp_path / "nacos-logs"),
    )
    assert client.add_naming_instance(
        "tls-beats", "10.1.0.2", 9002, cluster_name="c1", heartbeat_interval=0.3
    )
    try:
        params = {"serviceName": "tls-beats", "healthyOnly": "true"}

        def healthy_on(node: NodeProcess) -> list[Any]:
            answer = cluster.client.get(f"{node.url}{INSTANCE_LIST_PATH}", params=params)
            hosts: list[Any] = answer.json()["hosts"]
            return hosts

        wait_for(lambda: healthy_on(second), timeout_seconds=15, what="the instance listed")
        leader = cluster.leader()
        # Watched over twice the removal deadline: healthy on the leader all along.
        watch_until = time.monotonic() + 2 * REMOVE_AFTER_SECONDS
        while time.monotonic() < watch_until:
            assert len(healthy_on(leader)) == 1
            time.sleep(0.1)
        assert len(healthy_on(second)) == 1
    finally:
        for task in client.heartbeats.values():
            task.stop()
        for task in client.heartbeats.values():
            task.join(timeout=15)
    # and once the beats stop, the leader removes it: the beats were what kept it
    wait_for(lambda: not healthy_on(second), timeout_seconds=15, what="the silent instance gone")


def test_a_kv_write_on_a_follower_is_forwarded_and_read_back_elsewhere(
    cluster: LocalCluster, followers: tuple[NodeProcess, NodeProcess]
) -> None:
    first, second = followers
    answer = cluster.put(first, "tls-key", "over-tls")
    assert answer.status_code == 200, answer.text
    assert answer.headers.get("X-Naraft-Leader") == cluster.leader().id  # it was forwarded
    read = cluster.get(second, "tls-key", consistency="linearizable")
    assert read.status_code == 200
    assert read.json()["value"] == "over-tls"


def _impostor(cluster: LocalCluster, tmp_path: Path, kind: str) -> ssl.SSLContext:
    """A client that trusts the cluster's CA (so it would accept the node) and presents
    a certificate of `kind`."""
    assert cluster.ca_file is not None
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.check_hostname = False
    leaf = {
        "self-signed": lambda: issue(None, HOSTS),
        "other CA": lambda: issue(new_ca("not the cluster's CA"), HOSTS),
        "none": lambda: None,
    }[kind]()
    if leaf is not None:
        write_private(tmp_path / "impostor.pem", leaf.cert_pem)
        write_private(tmp_path / "impostor.key", leaf.key_pem)
        context.load_cert_chain(str(tmp_path / "impostor.pem"), str(tmp_path / "impostor.key"))
    return context


def _peer_headers(cluster: LocalCluster) -> dict[str, str]:
    # claims to be a member, as the peer client does; the signature is never reached
    return {"X-Naraft-Sender": cluster.members[0], "Content-Type": "application/json"}


@pytest.mark.parametrize("kind", ["self-signed", "other CA"])
def test_a_peer_with_a_certificate_the_cluster_did_not_sign_is_refused_at_the_handshake(
    cluster: LocalCluster, tmp_path: Path, kind: str
) -> None:
    with httpx.Client(verify=_impostor(cluster, tmp_path, kind), timeout=3) as impostor:
        for node in cluster.nodes:
            for method, path in PEER_ROUTES:
                with pytest.raises(httpx.TransportError):
                    impostor.request(
                        method,
                        f"{node.url}{path}",
                        content=b"{}",
                        headers=_peer_headers(cluster),
                        extensions={"sni_hostname": PEER_SERVER_NAME},
                    )


def test_a_peer_without_a_certificate_is_refused_every_peer_route(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    with httpx.Client(verify=_impostor(cluster, tmp_path, "none"), timeout=3) as impostor:
        for node in cluster.nodes:
            for method, path in PEER_ROUTES:
                answer = impostor.request(
                    method, f"{node.url}{path}", content=b"{}", headers=_peer_headers(cluster)
                )
                assert answer.status_code == 403, (node.id, path, answer.text)
                assert "peer CA" in answer.text
            forwarded = cluster.client.put(
                f"{node.url}{kv_path('forged')}",
                json={"value": "x"},
                headers={"X-Naraft-Forwarded-By": cluster.members[0]},
            )
            assert forwarded.status_code == 403
    leader = cluster.leader()
    assert cluster.get(leader, "forged", consistency="linearizable").status_code == 404


def test_the_leaders_checksum_reports_reach_the_followers(
    cluster: LocalCluster, followers: tuple[NodeProcess, NodeProcess]
) -> None:
    for follower in followers:
        wait_for(
            lambda f=follower: cluster.state(f)["checksum"]["matches"] > 0,
            timeout_seconds=15,
            what=f"{follower.id} to compare its state with the leader's report",
        )


def test_naraft_status_speaks_tls_with_the_ca(cluster: LocalCluster) -> None:
    """In processes of their own: aiohttp leaves closed TLS transports to the collector,
    which a warning-strict test would trip on."""
    assert cluster.ca_file is not None
    url = cluster.nodes[0].url
    env = {"COLUMNS": "300"}
    shown = naraft_command("status", "--server", url, "--cacert", str(cluster.ca_file), env=env)
    assert shown.returncode == 0, shown.stderr
    leader = cluster.leader().id
    assert shown.stdout.count("follower") == 2
    assert shown.stdout.count(leader) == 4  # its row, and every member's leader column
    assert "unreachable" not in shown.stdout
    refused = naraft_command("status", "--server", url, env=env)  # the system's CAs only
    assert refused.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_a_follower_behind_the_compacted_log_catches_up_by_digest_over_mutual_tls(
    cluster: LocalCluster, followers: tuple[NodeProcess, NodeProcess]
) -> None:
    """Last in the module: it stops and restarts a follower."""
    lagging = followers[0]
    leader = cluster.leader()
    stopped_at = cluster.state(lagging)["lastLogIndex"]
    lagging.stop()
    for number in range(60):
        assert cluster.put(leader, f"behind-{number}", str(number)).status_code == 200
    wait_for(
        lambda: cluster.state(leader)["snapshotIndex"] > stopped_at,
        timeout_seconds=15,
        what="the leader to compact its log",
    )
    lagging.start()
    wait_for(
        lambda: cluster.state(lagging)["catchUp"]["completed"] >= 1,
        timeout_seconds=30,
        what="the restarted follower to install the leader's state by digest",
    )
    assert cluster.get(lagging, "behind-59").json()["value"] == "59"


def test_cluster_up_tls_makes_private_certificates_and_says_how_to_connect(
    tmp_path: Path,
) -> None:
    (port,) = free_ports(1)
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "naraft", "cluster", "up", "--nodes", "1", "--tls",
         "--base-port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    ca = data_dir / "tls" / "ca.pem"
    assert up.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout or ()), daemon=True)
    reader.start()
    try:
        try:
            wait_for(
                lambda: any("Ctrl-C stops every node" in line for line in lines),
                timeout_seconds=30,
                what="cluster up to say how to reach the cluster",
            )
        except AssertionError:
            raise
        except Exception as error:
            pytest.fail(f"{error}; cluster up said:\n{''.join(lines)[-3000:]}")
        url = f"https://127.0.0.1:{port}{LEADER_PATH}"
        assert httpx.get(url, verify=ssl.create_default_context(cafile=str(ca))).is_success
        for path in (data_dir / "tls").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((data_dir / "tls").stat().st_mode) == 0o700
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=20)
        reader.join(timeout=5)
        up.stdout.close()
    output = "".join(lines)
    assert f"curl --cacert {ca}" in output
    assert f"https://127.0.0.1:{port}" in output
