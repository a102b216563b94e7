"""A 3-node cluster where every node has its own network namespace and address.

Topology, all inside namespaces this test creates (the root namespace gets nothing):

    <token>-n1 (10.213.0.1) ─┐
    <token>-n2 (10.213.0.2) ─┼─ veth ─ br0 in <token>-hub
    <token>-n3 (10.213.0.3) ─┤
    <token>-cl (10.213.0.100)┘  the HTTP client: a small proxy run with `ip netns exec`

Nodes run as `ip netns exec NS python -m naraft server --id 10.213.0.X:8848 ...`, so node ids
are real, distinct addresses on one port, as in a Nacos deployment. Skipped where this
machine cannot create network namespaces (not root, no CAP_NET_ADMIN, no `ip`).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import pytest
from tests.e2e.harness import FAST_TIMERS, NodeProcess, NodeSpec, WaitTimeoutError, wait_for

from naraft.client import STATE_PATH, NodeStatus, kv_path, parse_status
from naraft.cluster import agreed_leader, write_secret_file

pytestmark = pytest.mark.e2e

SUBNET: Final = "10.213.0"  # private test range, configured inside the test's namespaces only
NODE_PORT: Final = 8848
CLIENT_HOST: Final = f"{SUBNET}.100"

# The client proxy: one JSON request per stdin line, one JSON answer per stdout line.
PROXY_SCRIPT: Final = """
import json, sys, urllib.error, urllib.request
for line in sys.stdin:
    ask = json.loads(line)
    data = None if ask["body"] is None else json.dumps(ask["body"]).encode()
    request = urllib.request.Request(ask["url"], data=data, method=ask["method"])
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=ask["timeout"]) as answer:
            out = {"status": answer.status, "text": answer.read().decode()}
    except urllib.error.HTTPError as error:
        out = {"status": error.code, "text": error.read().decode()}
    except OSError as error:
        out = {"status": None, "text": repr(error)}
    print(json.dumps(out), flush=True)
"""


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def ip_ok(*args: str) -> None:
    result = ip(*args)
    if result.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class NamespaceClient:
    """HTTP from inside a network namespace, through the proxy process running there."""

    def __init__(self, namespace: str) -> None:
        self._process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-u", "-c", PROXY_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def request(
        self, method: str, url: str, body: object = None, timeout_seconds: float = 10.0
    ) -> Answer:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        ask = {"method": method, "url": url, "body": body, "timeout": timeout_seconds}
        self._process.stdin.write(json.dumps(ask) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise AssertionError(f"the client proxy exited with {self._process.poll()}")
        out = json.loads(line)
        return Answer(out["status"], out["text"])

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()  # the proxy's loop ends at end of input
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@dataclass
class NamespaceLab:
    """The namespaces, links and node processes of one test; `close` removes them all."""

    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    nodes: list[NodeProcess] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    client: NamespaceClient | None = None

    @property
    def hub(self) -> str:
        return f"nr{self.token}-hub"

    def add_namespace(self, name: str) -> None:
        result = ip("netns", "add", name)
        if result.returncode != 0:
            raise OSError(result.stderr.strip())
        self.namespaces.append(name)

    def build(self, size: int) -> None:
        if self.hub not in self.namespaces:
            self.add_namespace(self.hub)
        ip_ok("-n", self.hub, "link", "set", "lo", "up")
        ip_ok("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip_ok("-n", self.hub, "link", "set", "br0", "up")
        hosts = {f"nr{self.token}-n{i}": f"{SUBNET}.{i}" for i in range(1, size + 1)}
        hosts[f"nr{self.token}-cl"] = CLIENT_HOST
        for number, (namespace, host) in enumerate(hosts.items(), start=1):
            self.add_namespace(namespace)
            port = f"p{number}"
            ip_ok(
                "link", "add", "eth0", "netns", namespace, "type", "veth",
                "peer", "name", port, "netns", self.hub,
            )  # fmt: skip
            ip_ok("-n", self.hub, "link", "set", port, "master", "br0")
            ip_ok("-n", self.hub, "link", "set", port, "up")
            ip_ok("-n", namespace, "addr", "add", f"{host}/24", "dev", "eth0")
            ip_ok("-n", namespace, "link", "set", "eth0", "up")
            ip_ok("-n", namespace, "link", "set", "lo", "up")
        node_hosts = {ns: host for ns, host in hosts.items() if host != CLIENT_HOST}
        self.members = [f"{host}:{NODE_PORT}" for host in node_hosts.values()]
        secret = self.root / "cluster.secret"
        write_secret_file(secret, "netns-test-secret")
        for namespace, address in zip(node_hosts, self.members, strict=True):
            data_dir = self.root / namespace
            data_dir.mkdir(parents=True)
            spec = NodeSpec(
                node_id=address,
                peers=tuple(self.members),
                data_dir=data_dir,
                secret_file=secret,
                # routed addresses turn auth on; this test is about partitions, not tokens
                extra_args=(*FAST_TIMERS, "--auth", "off"),
                wrap=("ip", "netns", "exec", namespace),
            )
            self.nodes.append(NodeProcess(spec))
        self.client = NamespaceClient(f"nr{self.token}-cl")

    def close(self) -> None:
        for node in self.nodes:
            node.terminate()
        if self.client is not None:
            self.client.close()
        failures = []
        for namespace in reversed(self.namespaces):
            result = ip("netns", "del", namespace)
            if result.returncode != 0:
                failures.append(f"{namespace}: {result.stderr.strip()}")
        assert not failures, f"could not delete namespaces: {failures}"

    def logs(self) -> str:
        return "\n".join(f"--- {n.address}\n{n.log_tail()}" for n in self.nodes)

    # HTTP, from the client namespace
    def call(self, method: str, url: str, body: object = None) -> Answer:
        assert self.client is not None
        return self.client.request(method, url, body)

    def state(self, node: NodeProcess) -> dict[str, Any]:
        answer = self.call("GET", f"{node.url}{STATE_PATH}")
        if answer.status != 200:
            raise ValueError(f"{node.address}: {answer}")
        data: dict[str, Any] = answer.json()
        return data

    def leader(self, exclude: str | None = None) -> NodeProcess:
        """The leader by `naraft.cluster.agreed_leader`, asked from the client namespace."""

        def view(node: NodeProcess) -> NodeStatus | None:
            try:
                return parse_status(self.state(node)) if node.serving else None
            except (OSError, ValueError):
                return None

        def agreed() -> NodeProcess | None:
            leader = agreed_leader({n.address: view(n) for n in self.nodes}, self.members)
            if leader is None or leader == exclude:
                return None
            return next(n for n in self.nodes if n.address == leader)

        try:
            return wait_for(agreed, timeout_seconds=30, what="an agreed leader")
        except WaitTimeoutError as error:
            raise WaitTimeoutError(f"{error}\n{self.logs()}") from None

    def put(self, node: NodeProcess, key: str, value: str) -> Answer:
        return self.call("PUT", f"{node.url}{kv_path(key)}", {"value": value})

    def get(self, node: NodeProcess, key: str, consistency: str) -> Answer:
        return self.call("GET", f"{node.url}{kv_path(key)}?consistency={consistency}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NamespaceLab]:
    lab = NamespaceLab(tmp_path)
    try:
        try:
            lab.add_namespace(lab.hub)  # the probe: can this machine create namespaces?
        except (OSError, subprocess.SubprocessError) as error:
            pytest.skip(f"cannot create network namespaces (needs root or CAP_NET_ADMIN): {error}")
        yield lab
    finally:
        lab.close()


def has_applied(lab: NamespaceLab, node: NodeProcess, index: int) -> bool:
    return int(lab.state(node)["appliedIndex"]) >= index


def test_a_cluster_of_namespaced_nodes_elects_replicates_and_fails_over(
    lab: NamespaceLab,
) -> None:
    lab.build(size=3)
    try:
        for node in lab.nodes:
            node.start()
        old = lab.leader()
        old_term = lab.state(old)["term"]
        acked: dict[str, str] = {}
        for round_number in range(5):
            for i, node in enumerate(lab.nodes):
                key, value = f"k-{round_number}-{i}", f"through-{node.address}"
                answer = lab.put(node, key, value)
                assert answer.status == 200, answer
                acked[key] = value
        commit = lab.state(old)["commitIndex"]
        for node in lab.nodes:
            wait_for(
                partial(has_applied, lab, node, commit),
                timeout_seconds=30,
                what=f"{node.address} to apply {commit}",
            )
            for key, value in acked.items():
                answer = lab.get(node, key, "local")
                assert (answer.status, answer.json()["value"]) == (200, value), (node, answer)
            answer = lab.get(node, "k-0-0", "linearizable")
            assert answer.status == 200, answer

        old.kill()
        new = lab.leader(exclude=old.address)
        assert new.address != old.address
        assert lab.state(new)["term"] > old_term
        for key, value in acked.items():
            answer = lab.get(new, key, "linearizable")
            assert (answer.status, answer.json()["value"]) == (200, value), (key, answer)
        after = lab.put(new, "after-failover", "yes")
        assert after.status == 200, after
    except BaseException:
        sys.stderr.write(lab.logs() + "\n")
        raise
