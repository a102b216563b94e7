"""Auth end to end: a real 3-node cluster with `--auth on`, the real Nacos Python client
with credentials, and raw HTTP for what a client must not get away with.

One cluster serves the module (the tests use their own services and namespaces). Whatever
is refused is checked by reading the state back as the admin, through every node.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import nacos  # type: ignore[import-untyped]
import pytest
from nacos.exception import NacosException  # type: ignore[import-untyped]
from tests.e2e.harness import (
    FAST_TIMERS,
    LocalCluster,
    NodeProcess,
    NodeSpec,
    free_ports,
    js_process,
    local_cluster,
    naraft_command,
    run_js,
    wait_for,
)

from naraft.client import INSTANCE_LIST_PATH, INSTANCE_PATH, bearer, login

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings(r"ignore:ssl\.(SSLContext|PROTOCOL_TLS):DeprecationWarning"),
]

TOKEN_TTL_SECONDS = 3  # short, so that a token expires within the test
NACOS_DEFAULT_KEY = "SecretKey012345678901234567890123456789012345678901234567890123456789"


@contextlib.contextmanager
def auth_cluster(root: Path) -> Iterator[LocalCluster]:
    """A 3-node cluster with auth on, logins taken on every node, namespaces ns-a and ns-b."""
    # the tests' wrong passwords all come from 127.0.0.1: the per-source limit on failed
    # logins (its own tests are in tests/api) must not refuse the next test's good one
    args = (*FAST_TIMERS, "--token-ttl-seconds", str(TOKEN_TTL_SECONDS),
            "--login-failures-per-minute", "1000")  # fmt: skip
    with local_cluster(root, size=3, extra_args=args, auth="on") as cluster:
        cluster.wait_ready()
        password = cluster.admin_password
        assert password is not None
        # the first leader bootstraps the key and the admin; every node then takes a login
        for node in cluster.nodes:
            wait_for(lambda node=node: _try_login(node, password), timeout_seconds=15,
                     what=f"a login on {node.id}")  # fmt: skip
        admin = login(cluster.nodes[0].url, password)
        for namespace in ("ns-a", "ns-b"):
            answer = cluster.client.post(
                f"{cluster.nodes[0].url}/nacos/v1/console/namespaces",
                params={"customNamespaceId": namespace, "namespaceName": namespace},
                headers=bearer(admin),
            )
            assert answer.status_code == 200, answer.text
        yield cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with auth_cluster(tmp_path_factory.mktemp("auth") / "cluster") as cluster:
        yield cluster


def _try_login(node: NodeProcess, password: str) -> str | None:
    try:
        return login(node.url, password)
    except OSError:
        return None


def admin_token(cluster: LocalCluster, node: NodeProcess | None = None) -> str:
    password = cluster.admin_password
    assert password is not None
    return login((node or cluster.nodes[0]).url, password)


def hosts_everywhere(cluster: LocalCluster, service: str, namespace: str = "public") -> set[str]:
    """ip:port of `service` as the admin reads it through each node (they must agree)."""
    seen = []
    for node in cluster.nodes:
        answer = cluster.client.get(
            f"{node.url}{INSTANCE_LIST_PATH}",
            params={"serviceName": service, "namespaceId": namespace},
            headers=bearer(admin_token(cluster, node)),
        )
        assert answer.status_code == 200, answer.text
        seen.append({f"{h['ip']}:{h['port']}" for h in answer.json()["hosts"]})
    assert all(s == seen[0] for s in seen), seen
    return seen[0]


def make_user(cluster: LocalCluster, name: str, namespace: str, action: str) -> None:
    token, base = admin_token(cluster), cluster.nodes[0].url
    for path, params in (
        ("/nacos/v1/auth/users", {"username": name, "password": f"{name}-pw"}),
        ("/nacos/v1/auth/roles", {"role": f"role-{name}", "username": name}),
        ("/nacos/v1/auth/permissions",
         {"role": f"role-{name}", "resource": namespace, "action": action}),
    ):  # fmt: skip
        answer = cluster.client.post(f"{base}{path}", params=params, headers=bearer(token))
        assert answer.status_code == 200, answer.text


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[list[Any]]:
    made: list[Any] = []
    yield made
    for client in made:
        for task in client.heartbeats.values():
            task.stop()


def sdk(clients: list[Any], tmp_path: Path, servers: list[NodeProcess], **options: Any) -> Any:
    client = nacos.NacosClient(
        server_addresses=",".join(n.address for n in servers),
        logDir=str(tmp_path / "nacos-logs"),
        **options,
    )
    clients.append(client)
    return client


def test_the_python_client_logs_in_registers_and_lists(
    cluster: LocalCluster, clients: list[Any], tmp_path: Path
) -> None:
    password = cluster.admin_password
    follower = next(n for n in cluster.nodes if n.id != cluster.leader().id)
    # through a follower first: it forwards the write with the identity it verified, signed
    client = sdk(clients, tmp_path, [follower], username="nacos", password=password)
    assert client.add_naming_instance("auth-orders", "10.1.0.1", 80, ephemeral=False) is True
    wait_for(lambda: hosts_everywhere(cluster, "auth-orders") == {"10.1.0.1:80"},
             timeout_seconds=15, what="the registration on every node")  # fmt: skip
    listed = client.list_naming_instance("auth-orders")
    assert [h["ip"] for h in listed["hosts"]] == ["10.1.0.1"]


def test_a_wrong_password_fails_the_client_constructor(
    cluster: LocalCluster, clients: list[Any], tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="403"):
        sdk(clients, tmp_path, cluster.nodes[:1], username="nacos", password="wrong")


def test_a_reader_reads_cannot_write_and_sees_nothing_of_another_namespace(
    cluster: LocalCluster, clients: list[Any], tmp_path: Path
) -> None:
    token = admin_token(cluster)
    for namespace in ("ns-a", "ns-b"):
        answer = cluster.client.post(
            f"{cluster.nodes[0].url}{INSTANCE_PATH}",
            params={"serviceName": "shared", "ip": "10.2.0.1", "port": "80",
                    "ephemeral": "false", "namespaceId": namespace},
            headers=bearer(token),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
    make_user(cluster, "reader", "ns-a", "r")
    reader = sdk(clients, tmp_path, cluster.nodes, namespace="ns-a",
                 username="reader", password="reader-pw")  # fmt: skip

    def reader_lists() -> bool:
        return [h["ip"] for h in reader.list_naming_instance("shared")["hosts"]] == ["10.2.0.1"]

    wait_for(reader_lists, timeout_seconds=15, what="the reader to list ns-a")
    with pytest.raises(NacosException, match="Insufficient privilege"):
        reader.add_naming_instance("shared", "10.2.0.2", 80, ephemeral=False)
    with pytest.raises(NacosException):
        reader.list_naming_instance("shared", namespace_id="ns-b")
    other = sdk(clients, tmp_path, cluster.nodes, namespace="ns-b",
                username="reader", password="reader-pw")  # fmt: skip
    with pytest.raises(NacosException, match="Insufficient privilege"):
        other.add_naming_instance("shared", "10.2.0.3", 80, ephemeral=False)
    for namespace in ("ns-a", "ns-b"):
        assert hosts_everywhere(cluster, "shared", namespace) == {"10.2.0.1:80"}


def forged_token(key: str, *, sub: str = "nacos", exp_in: int = 600) -> str:
    now = int(time.time())  # noqa: TID251 - a token's expiry is wall-clock time
    return jwt.encode({"sub": sub, "exp": now + exp_in}, key, algorithm="HS256")


def none_alg_token() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': 'nacos', 'exp': 2**40})}."


def test_without_a_good_token_nothing_is_written(cluster: LocalCluster) -> None:
    password = cluster.admin_password
    assert password is not None
    expired = login(cluster.nodes[0].url, password)
    probe = {"serviceName": "auth-guarded", "namespaceId": "public"}

    def refused_as_expired() -> bool:
        answer = cluster.client.get(f"{cluster.nodes[0].url}{INSTANCE_LIST_PATH}",
                                    params=probe, headers=bearer(expired))  # fmt: skip
        return answer.status_code == 403 and answer.text == "token expired!"

    wait_for(refused_as_expired, timeout_seconds=TOKEN_TTL_SECONDS + 10, what="token expiry")
    attempts: dict[str, dict[str, str]] = {
        "none": {},
        "wrong": {"accessToken": "eyJhbGciOiJIUzI1NiJ9.e30.wrong"},
        "expired": {"accessToken": expired},
        "nacos-default-key": {"accessToken": forged_token(NACOS_DEFAULT_KEY)},
        "random-key": {"accessToken": forged_token("another-key-entirely-0123456789abcdef")},
        "alg-none": {"accessToken": none_alg_token()},
    }
    for port, (name, auth) in enumerate(attempts.items(), start=9000):
        for node in cluster.nodes:
            for headers in ({}, {"User-Agent": "Nacos-Server"}, {"X-Naraft-Identity": "nacos"}):
                answer = cluster.client.post(
                    f"{node.url}{INSTANCE_PATH}",
                    params={"serviceName": "auth-guarded", "ip": "10.3.0.1", "port": str(port),
                            "ephemeral": "false", **auth},
                    headers=headers,
                )  # fmt: skip
                assert answer.status_code == 403, (name, node.id, headers, answer.text)
    for path, params in (
        ("/nacos/v1/auth/users", {"username": "intruder", "password": "x"}),
        ("/nacos/v1/auth/roles", {"role": "ROLE_ADMIN", "username": "intruder"}),
    ):
        for headers in ({}, {"User-Agent": "Nacos-Server"}):
            answer = cluster.client.post(f"{cluster.nodes[1].url}{path}", params=params,
                                         headers=headers)  # fmt: skip
            assert answer.status_code == 403
    assert hosts_everywhere(cluster, "auth-guarded") == set()
    users = cluster.client.get(f"{cluster.nodes[2].url}/nacos/v1/auth/users",
                               headers=bearer(admin_token(cluster)))  # fmt: skip
    assert "intruder" not in {u["username"] for u in users.json()["pageItems"]}


def test_a_node_listening_beyond_loopback_is_secure_by_default(tmp_path: Path) -> None:
    """`--listen 0.0.0.0:PORT` and no `--auth`: auth is on, an unauthenticated write is
    refused, and the generated admin password is in the data directory (0600)."""
    (port,) = free_ports(1)
    (tmp_path / "node").mkdir(mode=0o700)
    node = NodeProcess(
        NodeSpec(
            node_id=f"127.0.0.1:{port}",
            listen=f"0.0.0.0:{port}",
            data_dir=tmp_path / "node",
            standalone=True,
            extra_args=FAST_TIMERS,
        )
    )
    node.start()
    try:
        url = f"http://127.0.0.1:{port}"
        password_file = tmp_path / "node" / "admin.password"
        wait_for(password_file.exists, timeout_seconds=15, what="the bootstrap")
        assert password_file.stat().st_mode & 0o777 == 0o600
        with httpx.Client(timeout=5) as client:
            params = {"serviceName": "open", "ip": "10.4.0.1", "port": "80", "ephemeral": "false"}
            answer = client.post(f"{url}{INSTANCE_PATH}", params=params)
            assert (answer.status_code, answer.text) == (403, "user not found!")
            answer = client.put(f"{url}/naraft/v1/kv/k", json={"value": "v"})
            assert answer.status_code == 403
            token = login(url, password_file.read_text().strip())
            answer = client.get(f"{url}{INSTANCE_LIST_PATH}", params={"serviceName": "open"},
                                headers=bearer(token))  # fmt: skip
            assert answer.json()["hosts"] == []
        assert "auth is on" in node.log_text()
    finally:
        node.terminate()


def test_cluster_up_with_auth_says_where_the_admin_password_is(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    data_dir = tmp_path / "data"
    output = tmp_path / "up.out"
    with output.open("w") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "naraft", "cluster", "up", "--nodes", "1", "--auth", "on",
             "--base-port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "COLUMNS": "300"},
        )  # fmt: skip
    password_file = data_dir / "admin.password"
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: "admin user is nacos" in output.read_text(), timeout_seconds=30,
                 what="cluster up to show the auth line")  # fmt: skip
        assert str(password_file) in output.read_text()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        token = wait_for(lambda: _try_login_url(url, password_file.read_text().strip()),
                         timeout_seconds=30, what="a login with the printed password")  # fmt: skip
        answer = httpx.put(f"{url}/naraft/v1/kv/k", json={"value": "v"}, timeout=5)
        assert answer.status_code == 403
        answer = httpx.put(f"{url}/naraft/v1/kv/k", json={"value": "v"}, headers=bearer(token),
                           timeout=5)  # fmt: skip
        assert answer.status_code == 200, answer.text
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=20)


def _try_login_url(url: str, password: str) -> str | None:
    try:
        return login(url, password)
    except OSError:
        return None


def test_import_nacos_logs_in_with_a_password_file(cluster: LocalCluster, tmp_path: Path) -> None:
    from tests.e2e.test_import import build_nacos_home

    home = build_nacos_home(tmp_path / "nacos")
    command = [sys.executable, "-m", "naraft", "import-nacos", str(home),
               "--server", cluster.nodes[1].url]  # fmt: skip
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert "403" in refused.stdout
    assert cluster.admin_password_file is not None
    run = subprocess.run([*command, "--password-file", str(cluster.admin_password_file)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    # the sample home's corrupt file makes it exit 1; no request failed
    assert "failed" not in run.stdout.replace("failed requests", ""), run.stdout
    assert "403" not in run.stdout
    wait_for(lambda: hosts_everywhere(cluster, "orders") != set(), timeout_seconds=15,
             what="the imported instances")  # fmt: skip


# Nacos's own default admin row: bcrypt (Spring's $2a$, cost 10) of the password "nacos"
NACOS_ROW_HASH = "$2a$10$EuWPZHzz32dJN7jexM34MOeYirDdFAZm2kuWj7VEOJhhZkDrxfvUu"


def test_users_move_over_from_a_nacos_database_with_their_hashes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """`mysql --batch` exports of Nacos's users, roles and permissions tables."""
    users = tmp_path / "users.tsv"
    users.write_text(f"username\tpassword\tenabled\nlegacy\t{NACOS_ROW_HASH}\t1\n"
                     f"gone\t{NACOS_ROW_HASH}\t0\n")  # fmt: skip
    roles = tmp_path / "roles.csv"
    roles.write_text("username,role\nlegacy,role-legacy\n")
    permissions = tmp_path / "permissions.csv"
    permissions.write_text("role,resource,action\nrole-legacy,ns-a:*:*,rw\n")
    assert cluster.admin_password_file is not None
    command = [sys.executable, "-m", "naraft", "import-nacos-users", "--users", str(users),
               "--roles", str(roles), "--permissions", str(permissions),
               "--server", cluster.nodes[2].url,
               "--password-file", str(cluster.admin_password_file)]  # fmt: skip
    for _ in range(2):  # the second run finds everything there: still a success
        run = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "imported 3 of 3 rows (1 disabled users skipped)" in run.stdout
    token = wait_for(lambda: _try_login_as(cluster.nodes[0].url, "legacy", "nacos"),
                     timeout_seconds=15, what="the imported user's login")  # fmt: skip
    answer = cluster.client.post(
        f"{cluster.nodes[0].url}{INSTANCE_PATH}",
        params={"serviceName": "legacy-svc", "ip": "10.5.0.1", "port": "80",
                "ephemeral": "false", "namespaceId": "ns-a"},
        headers=bearer(token),
    )  # fmt: skip
    assert (answer.status_code, answer.text) == (200, "ok")
    assert _try_login_as(cluster.nodes[0].url, "gone", "nacos") is None


def _try_login_as(url: str, username: str, password: str) -> str | None:
    try:
        return login(url, password, username=username)
    except OSError:
        return None


def test_tokens_over_tls_and_a_signed_identity_over_mutual_tls(tmp_path: Path) -> None:
    """Both halves of the issue together: clients over TLS with tokens; a follower forwards
    a write with the identity it verified, signed, over mutual TLS to the leader."""
    with local_cluster(tmp_path / "c", size=3, tls=True, auth="on") as tls_cluster:
        leader = tls_cluster.wait_ready()
        follower = next(n for n in tls_cluster.nodes if n is not leader)
        assert follower.url.startswith("https://")
        password = tls_cluster.admin_password
        http = tls_cluster.client  # verifies with the cluster's CA

        def logged_in() -> str | None:
            answer = http.post(f"{follower.url}/nacos/v1/auth/login",
                               params={"username": "nacos", "password": password})  # fmt: skip
            return answer.json()["accessToken"] if answer.status_code == 200 else None

        token = wait_for(logged_in, timeout_seconds=15, what="a login over TLS")
        params = {"serviceName": "tls-auth", "ip": "10.6.0.1", "port": "80",
                  "ephemeral": "false"}  # fmt: skip
        assert http.post(f"{follower.url}{INSTANCE_PATH}", params=params).status_code == 403
        answer = http.post(f"{follower.url}{INSTANCE_PATH}", params=params, headers=bearer(token))
        assert (answer.status_code, answer.text) == (200, "ok")

        def on_leader() -> bool:
            query = {"serviceName": "tls-auth"}
            listed = http.get(f"{leader.url}{INSTANCE_LIST_PATH}", params=query,
                              headers=bearer(token))  # fmt: skip
            return [h["ip"] for h in listed.json()["hosts"]] == ["10.6.0.1"]

        wait_for(on_leader, timeout_seconds=15, what="the forwarded write on the leader")


def test_the_npm_clients_credentials_on_every_request(cluster: LocalCluster) -> None:
    """nacos-naming (npm) sends `username` and `password` with every request, no token;
    here through a follower, which forwards the identity it checked."""
    make_user(cluster, "npm", "public", "rw")
    follower = next(n for n in cluster.nodes if n.id != cluster.leader().id)
    params = {"namespaceId": "public", "serviceName": "DEFAULT_GROUP@@npm-svc",
              "groupName": "DEFAULT_GROUP", "ip": "10.7.0.1", "port": "80",
              "ephemeral": "false", "username": "npm", "password": "npm-pw"}  # fmt: skip
    answer = cluster.client.post(f"{follower.url}{INSTANCE_PATH}", params=params)
    assert (answer.status_code, answer.text) == (200, "ok")
    wrong = {**params, "port": "81", "password": "guess"}
    answer = cluster.client.post(f"{follower.url}{INSTANCE_PATH}", params=wrong)
    assert (answer.status_code, answer.text) == (403, "unknown user!")
    wait_for(lambda: hosts_everywhere(cluster, "npm-svc") == {"10.7.0.1:80"},
             timeout_seconds=15, what="the npm-style registration everywhere")  # fmt: skip


def test_config_with_credentials_and_a_readers_limits(
    cluster: LocalCluster, clients: list[Any], tmp_path: Path
) -> None:
    """The Python client's config half with a login: the admin publishes and reads back
    through every node; a user with `r` on a namespace reads its configs there and can
    neither publish there nor read another namespace's (checked as the admin)."""
    admin = sdk(clients, tmp_path, cluster.nodes, namespace="cfg-a",
                username="nacos", password=cluster.admin_password)  # fmt: skip
    assert admin.publish_config("app.yaml", "DEFAULT_GROUP", "port: 80") is True
    for node in cluster.nodes:
        one = sdk(clients, tmp_path, [node], namespace="cfg-a",
                  username="nacos", password=cluster.admin_password)  # fmt: skip
        assert one.get_config("app.yaml", "DEFAULT_GROUP", no_snapshot=True) == "port: 80"
    other_ns = sdk(clients, tmp_path, cluster.nodes, namespace="cfg-b",
                   username="nacos", password=cluster.admin_password)  # fmt: skip
    assert other_ns.publish_config("secret.yaml", "DEFAULT_GROUP", "key: 1") is True
    make_user(cluster, "cfgreader", "cfg-a", "r")
    reader = sdk(clients, tmp_path, cluster.nodes, namespace="cfg-a",
                 username="cfgreader", password="cfgreader-pw")  # fmt: skip
    assert reader.get_config("app.yaml", "DEFAULT_GROUP", no_snapshot=True) == "port: 80"
    with pytest.raises(NacosException):
        reader.publish_config("app.yaml", "DEFAULT_GROUP", "port: 81")
    stranger = sdk(clients, tmp_path, cluster.nodes, namespace="cfg-b",
                   username="cfgreader", password="cfgreader-pw")  # fmt: skip
    with pytest.raises(NacosException):
        stranger.get_config("secret.yaml", "DEFAULT_GROUP", no_snapshot=True)
    unauthenticated = cluster.client.post(
        f"{cluster.nodes[0].url}/nacos/v1/cs/configs",
        data={"dataId": "app.yaml", "group": "DEFAULT_GROUP", "tenant": "cfg-a", "content": "x"},
    )
    assert unauthenticated.status_code == 403
    assert admin.get_config("app.yaml", "DEFAULT_GROUP", no_snapshot=True) == "port: 80"


def test_leader_transfer_is_the_admins(cluster: LocalCluster, tmp_path: Path) -> None:
    """`naraft leader transfer` with auth on: refused without credentials (nothing moves),
    done with the admin's password file."""
    leader = cluster.leader()
    refused = naraft_command("leader", "transfer", "--server", leader.url)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: transfer refused (403)"), refused.stderr
    assert cluster.leader().id == leader.id
    password_file = tmp_path / "admin.password"
    password_file.write_text(f"{cluster.admin_password}\n")
    done = naraft_command("leader", "transfer", "--server", leader.url,
                          "--password-file", str(password_file))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cluster.leader().id != leader.id


def test_the_npm_config_client_with_credentials(cluster: LocalCluster, npm_client: Path) -> None:
    """npm `nacos`'s NacosConfigClient with a username and password (sent with every
    request): the admin's publish, read and remove through a follower work; with a wrong
    password nothing is published (read back as the admin)."""
    follower = next(n for n in cluster.nodes if n.id != cluster.leader().id)
    admin = {"NACOS_USERNAME": "nacos", "NACOS_PASSWORD": cluster.admin_password}
    result = run_js(npm_client, follower.address, "cfg-npm", "crud", "npm.yaml",
                    "DEFAULT_GROUP", "k: v", env=admin)  # fmt: skip
    assert result == {"published": True, "got": "k: v", "removed": True, "after": None}
    wrong = {"NACOS_USERNAME": "nacos", "NACOS_PASSWORD": "wrong"}
    done = js_process(npm_client, follower.address, "cfg-npm", "crud", "npm-bad.yaml",
                      "DEFAULT_GROUP", "k: v", env=wrong)  # fmt: skip
    assert done.returncode != 0 or '"published":true' not in done.stdout
    # the admin reads back from another loopback address than the wrong password's
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        base = cluster.nodes[0].url
        credentials = {"username": "nacos", "password": cluster.admin_password}
        logged_in = other.post(f"{base}/nacos/v1/auth/login", data=credentials)
        assert logged_in.status_code == 200, logged_in.text
        answer = other.get(
            f"{base}/nacos/v1/cs/configs",
            params={"dataId": "npm-bad.yaml", "group": "DEFAULT_GROUP", "tenant": "cfg-npm"},
            headers=bearer(logged_in.json()["accessToken"]),
        )
    assert answer.status_code == 404, answer.text


def test_import_nacos_configs_zip_needs_a_writer(cluster: LocalCluster, tmp_path: Path) -> None:
    """A config zip upload without credentials is refused (nothing written); with the
    admin's password file it is imported through a follower."""
    zip_path = tmp_path / "configs.zip"
    with zipfile.ZipFile(zip_path, "w") as out:
        out.writestr("DEFAULT_GROUP/auth-imported", "x")
    command = [sys.executable, "-m", "naraft", "import-nacos", "--configs-zip", str(zip_path),
               "--namespace", "zip-ns", "--server", cluster.nodes[1].url]  # fmt: skip
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1
    assert "403" in refused.stderr, refused.stdout + refused.stderr
    assert cluster.admin_password_file is not None
    run = subprocess.run([*command, "--password-file", str(cluster.admin_password_file)],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 imported, 0 skipped" in run.stdout
