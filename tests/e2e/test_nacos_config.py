"""Acceptance: real Nacos 1.x config clients against a real 3-node naraft cluster.

nacos-sdk-python 2.0.11 (`NacosClient`: publish_config, get_config, get_configs,
remove_config, add_config_watcher) and npm `nacos` 2.6.3 (`NacosConfigClient`: publishSingle,
getConfig, subscribe, remove), unchanged. Reads are linearizable (they pass the read index on
the leader), so a read through one node right after a publish acknowledged by another is
asserted at once, never awaited. Watchers are woken when a node applies a change, wherever
it was published.

The npm client is installed by the `npm_client` fixture with `npm ci` from the committed
`tests/e2e/js/package-lock.json` into a cache directory; without npm those tests skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import nacos  # type: ignore[import-untyped]
import pytest
from tests.e2e.harness import FAST_TIMERS, LocalCluster, NodeProcess, local_cluster, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings(r"ignore:ssl\.(SSLContext|PROTOCOL_TLS):DeprecationWarning"),
    pytest.mark.filterwarnings(r"ignore:setDaemon\(\) is deprecated:DeprecationWarning"),
]

GROUP = "DEFAULT_GROUP"
NAMESPACE = "cfg-e2e"
JS_DIR = Path(__file__).parent / "js"
LISTENER_ROUTE = 'naraft_config_requests_total{route="configs.listener"}'
# compact often, so that a follower that missed a few hundred publishes catches up by digest
COMPACTING = (*FAST_TIMERS, "--compact-entries", "300", "--compact-keep", "50")
MISSED_PUBLISHES = 500


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("config-cluster"), extra_args=COMPACTING) as cluster:
        cluster.wait_ready()
        yield cluster


ClientFactory = Callable[..., Any]


@pytest.fixture
def new_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Makes `nacos.NacosClient`s whose snapshots live in `tmp_path`; stops their pullers."""
    clients: list[Any] = []

    def make(servers: list[NodeProcess], namespace: str | None = None) -> Any:
        client = nacos.NacosClient(
            server_addresses=",".join(n.address for n in servers),
            namespace=namespace,
            logDir=str(tmp_path / "nacos-logs"),
        )
        client.set_options(
            snapshot_base=str(tmp_path / "snapshot"), failover_base=str(tmp_path / "failover")
        )
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            close_client(client)


def close_client(client: Any) -> None:
    """End a client's pulling threads: forget its watched keys, then wait for each puller
    to see its key list empty (a publish to a watched key ends the poll it is holding)."""
    pullers = {id(p[0]): p for p in (client.puller_mapping or {}).values()}
    for cache_key in list(client.watcher_mapping):
        data_id, group, _namespace = cache_key.split("+")
        for watcher in list(client.watcher_mapping.get(cache_key, [])):
            client.remove_config_watcher(data_id, group, watcher.callback, remove_all=True)
        client.publish_config(data_id, group, "closing")
    for thread, _keys in pullers.values():
        thread.join(timeout=40)
        assert not thread.is_alive(), "a config puller thread did not stop"
    if client.puller_mapping is not None:
        client.callback_tread_pool.close()
        client.callback_tread_pool.join()
        client.process_mgr.shutdown()


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def metric(cluster: LocalCluster, node: NodeProcess, name: str) -> float:
    text = cluster.client.get(f"{node.url}/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_publish_on_one_node_is_read_at_once_on_every_other(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    writer = new_client([nodes[0]])
    content = "greeting=你好, naraft 🎉\nline=2"
    assert writer.publish_config("unicode.properties", GROUP, content, config_type="properties")
    for node in nodes[1:]:  # no waiting: the read goes through the leader's read index
        assert new_client([node]).get_config("unicode.properties", GROUP) == content
    answer = cluster.client.get(
        f"{nodes[2].url}/nacos/v1/cs/configs",
        params={"dataId": "unicode.properties", "group": GROUP},
    )
    assert answer.headers["Content-MD5"] == md5(content)
    assert writer.remove_config("unicode.properties", GROUP)
    assert new_client([nodes[1]]).get_config("unicode.properties", GROUP, no_snapshot=True) is None


def test_namespaces_isolate_and_large_content_round_trips(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    custom = new_client([nodes[1]], namespace=NAMESPACE)
    public = new_client([nodes[2]])
    big = "".join(f"line {i:06d} {'x' * 90}\n" for i in range(1024))  # about 100 KB
    assert len(big.encode()) > 100_000
    assert custom.publish_config("big.txt", GROUP, big)
    assert new_client([nodes[0]], namespace=NAMESPACE).get_config("big.txt", GROUP) == big
    assert public.get_config("big.txt", GROUP, no_snapshot=True) is None
    page = new_client([nodes[2]], namespace=NAMESPACE).get_configs(no_snapshot=True)
    assert page["totalCount"] == 1
    assert page["pageItems"][0]["dataId"] == "big.txt"
    assert page["pageItems"][0]["md5"] == md5(big)
    assert custom.remove_config("big.txt", GROUP)


def _put_content(seen: queue.Queue[str]) -> Callable[[dict[str, Any]], None]:
    return lambda event: seen.put(event["content"])


def test_a_watcher_fires_on_a_change_published_through_another_node(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    for namespace in (None, NAMESPACE):
        watcher_client = new_client([nodes[2]], namespace=namespace)
        publisher = new_client([nodes[0]], namespace=namespace)
        assert publisher.publish_config("watched.json", GROUP, '{"v": 1}')
        seen: queue.Queue[str] = queue.Queue()
        watcher_client.add_config_watcher("watched.json", GROUP, _put_content(seen))
        # the first poll is held by node 2 once the puller has started
        wait_for(
            lambda: metric(cluster, nodes[2], LISTENER_ROUTE) > 0,
            timeout_seconds=10,
            what="the watcher's first long poll",
        )
        assert publisher.publish_config("watched.json", GROUP, '{"v": 2}')
        assert seen.get(timeout=15) == '{"v": 2}'


def test_an_idle_watcher_makes_a_few_requests_a_minute(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    node = cluster.nodes[1]
    client = new_client([node])
    client.publish_config("idle.txt", GROUP, "still")
    client.add_config_watcher("idle.txt", GROUP, lambda _event: None)
    wait_for(
        lambda: metric(cluster, node, LISTENER_ROUTE) > 0,
        timeout_seconds=10,
        what="the idle watcher's first poll",
    )
    before = metric(cluster, node, LISTENER_ROUTE)
    stop = threading.Event()
    stop.wait(15)  # the window measured: the client's polls are held ~29.5 s each
    polls = metric(cluster, node, LISTENER_ROUTE) - before
    assert polls <= 2, f"{polls} long polls in 15 s from one idle watcher"


def test_kill_9_of_the_node_the_client_talks_to(
    cluster: LocalCluster, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    client = new_client(list(nodes))  # talks to nodes[0] first, fails over in order
    assert client.publish_config("failover.txt", GROUP, "before")
    nodes[0].kill()
    try:
        cluster.leader(among=nodes[1:], timeout_seconds=20)
        assert client.publish_config("failover.txt", GROUP, "after")
        assert new_client(nodes[1:]).get_config("failover.txt", GROUP, no_snapshot=True) == "after"
        assert client.get_config("failover.txt", GROUP, no_snapshot=True) == "after"
    finally:
        cluster.restart(nodes[0])
        cluster.leader(timeout_seconds=20)


def test_a_follower_that_missed_publishes_catches_up_by_digest(cluster: LocalCluster) -> None:
    """Configs and their history are datums: a follower that missed compacted publishes
    installs them by digest sync and answers long polls from them (a local read)."""
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    follower.terminate()
    try:
        with httpx.Client(timeout=10) as http, ThreadPoolExecutor(16) as pool:

            def publish(i: int) -> str:
                return http.post(
                    f"{leader.url}/nacos/v1/cs/configs",
                    data={"dataId": f"missed-{i}", "group": GROUP, "content": f"value {i}"},
                ).text

            assert set(pool.map(publish, range(MISSED_PUBLISHES))) == {"true"}
            wait_for(
                lambda: cluster.state(leader)["snapshotIndex"] > 0,
                timeout_seconds=30,
                what="the leader to compact its log",
            )
    finally:
        cluster.restart(follower)
    leader_state = cluster.state(leader)
    cluster.wait_applied(follower, leader_state["appliedIndex"], timeout_seconds=60)
    assert cluster.state(follower)["catchUp"]["completed"] >= 1
    assert metric(cluster, follower, "naraft_configs") == metric(cluster, leader, "naraft_configs")
    # the follower's own state: a no-hangup poll with the right MD5 answers "unchanged"
    probe = "".join(
        f"missed-{i}\x02{GROUP}\x02{md5(f'value {i}')}\x01" for i in (0, 250, MISSED_PUBLISHES - 1)
    )
    answer = cluster.client.post(
        f"{follower.url}/nacos/v1/cs/configs/listener",
        data={"Listening-Configs": probe},
        headers={"Long-Pulling-Timeout": "30000", "Long-Pulling-Timeout-No-Hangup": "true"},
    )
    assert answer.status_code == 200
    assert answer.text == ""


# ------------------------------------------------------------------------- npm nacos


@pytest.fixture(scope="module")
def npm_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The npm client installed with `npm ci` into a cache directory keyed by the lock
    file's hash; the path of the driver script in it."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node are not installed: the npm nacos client cannot run")
    lock = (JS_DIR / "package-lock.json").read_bytes()
    cache_root = Path(os.environ.get("NARAFT_NPM_CACHE", Path.home() / ".cache" / "naraft-npm"))
    target = cache_root / hashlib.sha256(lock).hexdigest()[:16]
    if not (target / "node_modules" / "nacos").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS_DIR / name, target / name)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--cache", str(cache_root / "npm-cache")],
            cwd=target,
            check=True,
            capture_output=True,
            timeout=150,
        )
    shutil.copy(JS_DIR / "config_client.js", target / "config_client.js")
    return target / "config_client.js"


def run_js(script: Path, servers: str, namespace: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", str(script), servers, namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_npm_client_publishes_reads_and_removes(
    cluster: LocalCluster, npm_client: Path, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    for namespace in ("-", NAMESPACE):
        result = run_js(npm_client, nodes[1].address, namespace, "crud", "npm.yaml", GROUP, "k: 值")
        assert result == {"published": True, "got": "k: 值", "removed": True, "after": None}
    # the npm client removed it through node 1; the Python client reads through node 2
    python_reader = new_client([nodes[2]])
    assert python_reader.get_config("npm.yaml", GROUP, no_snapshot=True) is None


def test_npm_subscriber_hears_a_change_and_survives_a_kill_9(
    cluster: LocalCluster, npm_client: Path, new_client: ClientFactory
) -> None:
    nodes = cluster.nodes
    publisher = new_client([nodes[0], nodes[1]])
    assert publisher.publish_config("npm-watched.txt", GROUP, "v1")
    servers = ",".join(n.address for n in (nodes[2], nodes[1]))
    process = subprocess.Popen(
        ["node", str(npm_client), servers, "-", "subscribe", "npm-watched.txt", GROUP],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert lines.get(timeout=20) == {"subscribed": True}
        assert lines.get(timeout=20) == {"content": "v1"}
        before = metric(cluster, nodes[2], LISTENER_ROUTE)
        assert publisher.publish_config("npm-watched.txt", GROUP, "v2")
        assert lines.get(timeout=15) == {"content": "v2"}
        # idle: a few polls a minute, not a loop
        threading.Event().wait(5)
        assert metric(cluster, nodes[2], LISTENER_ROUTE) - before <= 3
        nodes[2].kill()  # the node the subscriber polls
        try:
            cluster.leader(among=nodes[:2], timeout_seconds=20)
            assert publisher.publish_config("npm-watched.txt", GROUP, "v3")
            assert lines.get(timeout=30) == {"content": "v3"}
        finally:
            cluster.restart(nodes[2])
            cluster.leader(timeout_seconds=20)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        assert process.stderr is not None
        process.stderr.close()
        if process.stdout is not None:
            process.stdout.close()


def test_listener_protocol_on_the_wire(cluster: LocalCluster) -> None:
    """A poll held on one node answers a change published through another, URL-encoded."""
    nodes = cluster.nodes
    probe = f"wire.txt\x02{GROUP}\x02\x02{NAMESPACE}\x01"
    with httpx.Client(timeout=40) as http:
        result: dict[str, httpx.Response] = {}

        def poll() -> None:
            result["answer"] = http.post(
                f"{nodes[1].url}/nacos/v1/cs/configs/listener",
                data={"Listening-Configs": probe},
                headers={"Long-Pulling-Timeout": "30000"},
            )

        poller = threading.Thread(target=poll)
        poller.start()
        wait_for(
            lambda: metric(cluster, nodes[1], "naraft_config_listeners_held") >= 1,
            timeout_seconds=10,
            what="the poll to be held",
        )
        published = http.post(
            f"{nodes[0].url}/nacos/v1/cs/configs",
            data={"dataId": "wire.txt", "group": GROUP, "tenant": NAMESPACE, "content": "x"},
        )
        assert published.text == "true"
        poller.join(timeout=15)
        assert result["answer"].status_code == 200
        assert result["answer"].text.strip() == f"wire.txt%02{GROUP}%02{NAMESPACE}%01"
