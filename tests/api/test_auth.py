"""The auth API and the access middleware, in process: a real app over a real state machine.

Every proposal goes through `NodeStateMachine.apply` at once (a one-node cluster), so the
auth entries take the path they take in a cluster: encoded, applied totally, read back.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import bcrypt
import jwt
import pytest
from aiohttp import ClientResponse, FormData, web
from aiohttp.test_utils import TestClient, TestServer

from naraft.api import make_app
from naraft.api.access import IDENTITY_HEADER
from naraft.api.admin import admin_routes
from naraft.api.auth import AuthService
from naraft.api.v1.configs import ConfigApi
from naraft.auth import state as auth_state
from naraft.configs.listeners import ListenerHub
from naraft.configs.model import ConfigKey
from naraft.configs.service import ConfigService
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigState
from naraft.machine import NodeStateMachine
from naraft.naming.health import BeatTable
from naraft.naming.keys import InstanceKey
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumTable
from naraft.transport.signing import PeerSigner, PeerVerifier

# Nacos shipped this as its default token key (nacos.core.auth.default.token.secret.key)
NACOS_DEFAULT_KEY = "SecretKey012345678901234567890123456789012345678901234567890123456789"
SECRET = b"a-cluster-secret-of-the-test!!"
SELF, PEER = "127.0.0.1:1", "127.0.0.1:2"
CLUSTER = "test-cluster"
ADMIN_PASSWORD = "admin-pw"
INSTANCE = "/nacos/v1/ns/instance"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def now_ms(self) -> int:
        return int(self.now * 1000)


class Beats:
    def __init__(self) -> None:
        self.table = BeatTable()

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        self.table.beat(key, beat_at_ms)


class Env:
    def __init__(self) -> None:
        self.datums = DatumTable()
        self.configs = ConfigState(self.datums)
        self.machine = NodeStateMachine(self.datums, NamingState(self.datums), configs=self.configs)
        self.index = 0
        self.clock = Clock()
        naming = NamingService(
            self.machine.naming, self, self.clock, Beats(), PushTargets(),
            new_namespace_id=lambda: "generated-id",
        )  # fmt: skip
        self.auth = AuthService(
            enabled=True,
            datums=self.datums,
            generation=lambda: self.machine.auth_generation,
            propose=self.propose,
            clock=lambda: self.clock.now,
            token_ttl_seconds=100,
            login_failures_per_minute=3,
        )
        self.app = make_app(
            naming,
            extra_routes=admin_routes(),
            configs=ConfigApi(
                service=ConfigService(self.configs, self, self.clock, ConfigSettings()),
                hub=ListenerHub(self.configs, max_polls=1, max_keys=1),
            ),
            auth=self.auth,
            identity_verifier=PeerVerifier(
                SECRET, cluster_id=CLUSTER, self_id=SELF, members={PEER}, clock=self.clock.now_ms
            ),
        )
        self.client: TestClient[web.Request, web.Application]
        hashed = bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(4, prefix=b"2a"))
        assert self.machine.apply(
            self._entry(auth_state.encode_bootstrap("ab" * 32, hashed.decode()))
        )

    def _entry(self, payload: bytes) -> Entry:
        self.index += 1
        return Entry(index=self.index, term=1, command=payload)

    async def propose(self, command: bytes) -> object:
        return self.machine.apply(self._entry(command))

    async def read_barrier(self) -> None:
        return None

    async def local_read_point(self) -> None:
        return None

    async def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        return await self.client.request(method, path, params=params or {}, headers=headers)

    async def login(self, username: str, password: str) -> str:
        answer = await self.call(
            "POST", "/nacos/v1/auth/login", {"username": username, "password": password}
        )
        assert answer.status == 200, await answer.text()
        token: str = (await answer.json())["accessToken"]
        return token

    async def admin(self, method: str, path: str, params: dict[str, str]) -> Any:
        token = await self.login("nacos", ADMIN_PASSWORD)
        answer = await self.call(method, path, {**params, "accessToken": token})
        assert answer.status == 200, await answer.text()
        return await answer.json()

    def instances(self) -> list[str]:
        return [
            k
            for k, _ in self.datums.items()
            if "instance" in k.lower() or k.startswith("com.alibaba")
        ]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    environment = Env()
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(environment.app))
    await client.start_server()
    environment.client = client
    try:
        yield environment
    finally:
        await client.close()


def register(namespace: str = "public", **extra: str) -> dict[str, str]:
    return {"serviceName": "svc", "ip": "10.0.0.1", "port": "80", "namespaceId": namespace, **extra}


async def user_holding(env: Env, resource: str, action: str) -> None:
    """A user `alice` (password `alice-pw`) holding `action` on `resource`, not an admin."""
    await env.admin("POST", "/nacos/v1/auth/users", {"username": "alice", "password": "alice-pw"})
    await env.admin("POST", "/nacos/v1/auth/roles", {"role": "reader", "username": "alice"})
    await env.admin(
        "POST",
        "/nacos/v1/auth/permissions",
        {"role": "reader", "resource": resource, "action": action},
    )


async def reader_of(env: Env, namespace: str, action: str = "r") -> str:
    """A user `alice` holding `action` on `namespace`; her token."""
    await user_holding(env, namespace, action)
    return await env.login("alice", "alice-pw")


async def test_login_answers_nacos_shape_on_both_paths(env: Env) -> None:
    for path in ("/nacos/v1/auth/login", "/nacos/v1/auth/users/login"):
        answer = await env.call("POST", path, {"username": "nacos", "password": ADMIN_PASSWORD})
        body = await answer.json()
        assert set(body) == {"accessToken", "tokenTtl", "globalAdmin", "username"}
        assert (body["tokenTtl"], body["globalAdmin"], body["username"]) == (100, True, "nacos")
        assert answer.headers["Authorization"] == f"Bearer {body['accessToken']}"


async def test_token_as_parameter_or_bearer_header(env: Env) -> None:
    token = await env.login("nacos", ADMIN_PASSWORD)
    answer = await env.call("POST", INSTANCE, {**register(), "accessToken": token})
    assert (answer.status, await answer.text()) == (200, "ok")
    answer = await env.call(
        "GET",
        f"{INSTANCE}/list",
        {"serviceName": "svc"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status == 200
    assert len((await answer.json())["hosts"]) == 1


@pytest.mark.parametrize(
    "variant",
    ["none", "garbage", "wrong-user-password", "expired", "nacos-default-key", "none-alg"],
)
async def test_a_write_without_a_good_token_is_refused_and_changes_nothing(
    env: Env, variant: str
) -> None:
    token: str | None
    if variant == "none":
        token = None
    elif variant == "garbage":
        token = "not.a.token"
    elif variant == "wrong-user-password":
        answer = await env.call(
            "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": "nope"}
        )
        assert (answer.status, await answer.text()) == (403, "unknown user!")
        token = None
    elif variant == "expired":
        token = await env.login("nacos", ADMIN_PASSWORD)
        env.clock.now += 101
    elif variant == "nacos-default-key":
        token = jwt.encode(
            {"sub": "nacos", "exp": int(T0) + 50}, NACOS_DEFAULT_KEY, algorithm="HS256"
        )
    else:
        token = jwt.encode({"sub": "nacos", "exp": int(T0) + 50}, None, algorithm="none")
    before = dict(env.datums.items())
    params = register() if token is None else {**register(), "accessToken": token}
    answer = await env.call("POST", INSTANCE, params)
    assert answer.status == 403
    expected = {"expired": "token expired!", "none": "user not found!"}
    assert await answer.text() == expected.get(
        variant, "user not found!" if token is None else "token invalid!"
    )
    assert dict(env.datums.items()) == before


async def test_user_agent_nacos_server_is_no_bypass(env: Env) -> None:
    """CVE-2021-29441: Nacos skipped auth for `User-Agent: Nacos-Server`."""
    for headers in ({"User-Agent": "Nacos-Server"}, {"serverIdentity": "security"}):
        answer = await env.call("POST", "/nacos/v1/auth/users",
                                {"username": "evil", "password": "x"}, headers=headers)  # fmt: skip
        assert answer.status == 403
        answer = await env.call("POST", INSTANCE, register(), headers=headers)
        assert answer.status == 403
    assert auth_state.read_user(env.datums, "evil") is None


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/nacos/v1/auth/users", {}),
        ("POST", "/nacos/v1/auth/users", {"username": "evil", "password": "x"}),
        ("PUT", "/nacos/v1/auth/users", {"username": "nacos", "newPassword": "x"}),
        ("DELETE", "/nacos/v1/auth/users", {"username": "nacos"}),
        ("POST", "/nacos/v1/auth/roles", {"role": "ROLE_ADMIN", "username": "nacos"}),
        ("POST", "/nacos/v1/auth/permissions", {"role": "r", "resource": "ns", "action": "rw"}),
        ("PUT", "/nacos/v1/ns/operator/switches", {"entry": "distroThreshold", "value": "1"}),
        ("DELETE", "/nacos/v1/console/namespaces", {"namespaceId": "x"}),
    ],
)
async def test_user_management_and_admin_routes_without_a_token(
    env: Env, method: str, path: str, params: dict[str, str]
) -> None:
    before = dict(env.datums.items())
    answer = await env.call(method, path, params)
    assert answer.status == 403
    assert dict(env.datums.items()) == before


async def test_kv_api_refuses_in_its_own_json_shape(env: Env) -> None:
    answer = await env.call("PUT", "/naraft/v1/kv/k", headers={"Content-Type": "application/json"})
    assert answer.status == 403
    assert await answer.json() == {"error": "user not found!"}


async def test_a_reader_reads_cannot_write_and_sees_no_other_namespace(env: Env) -> None:
    await env.admin(
        "POST", "/nacos/v1/console/namespaces", {"customNamespaceId": "ns1", "namespaceName": "ns1"}
    )
    await env.admin(
        "POST", "/nacos/v1/console/namespaces", {"customNamespaceId": "ns2", "namespaceName": "ns2"}
    )
    admin = await env.login("nacos", ADMIN_PASSWORD)
    for ns in ("ns1", "ns2"):
        answer = await env.call("POST", INSTANCE, {**register(ns), "accessToken": admin})
        assert answer.status == 200, await answer.text()
    token = await reader_of(env, "ns1")
    listed = await env.call(
        "GET",
        f"{INSTANCE}/list",
        {"serviceName": "svc", "namespaceId": "ns1", "accessToken": token},
    )
    assert listed.status == 200
    assert len((await listed.json())["hosts"]) == 1
    before = dict(env.datums.items())
    for params in (register("ns1", port="81"), register("ns2", port="81")):
        answer = await env.call("POST", INSTANCE, {**params, "accessToken": token})
        assert (answer.status, await answer.text()) == (403, "authorization failed!")
    for path in (f"{INSTANCE}/list", "/nacos/v1/ns/service/list"):
        answer = await env.call(
            "GET",
            path,
            {
                "serviceName": "svc",
                "namespaceId": "ns2",
                "pageNo": "1",
                "pageSize": "10",
                "accessToken": token,
            },
        )
        assert answer.status == 403
    # a grouped service name names its group; the permission still covers it
    answer = await env.call(
        "GET",
        f"{INSTANCE}/list",
        {"serviceName": "DEFAULT_GROUP@@svc", "namespaceId": "ns1", "accessToken": token},
    )
    assert answer.status == 200
    assert dict(env.datums.items()) == before
    # a write permission lets the same user write there
    await env.admin(
        "POST", "/nacos/v1/auth/permissions", {"role": "reader", "resource": "ns1", "action": "rw"}
    )
    answer = await env.call("POST", INSTANCE, {**register("ns1", port="82"), "accessToken": token})
    assert answer.status == 200
    # ... and taking it away works at once (the cache follows applied auth entries)
    await env.admin(
        "DELETE",
        "/nacos/v1/auth/permissions",
        {"role": "reader", "resource": "ns1", "action": "rw"},
    )
    answer = await env.call("POST", INSTANCE, {**register("ns1", port="83"), "accessToken": token})
    assert answer.status == 403


async def test_deleting_a_user_voids_its_tokens(env: Env) -> None:
    token = await reader_of(env, "public", "rw")
    await env.admin("DELETE", "/nacos/v1/auth/users", {"username": "alice"})
    answer = await env.call("POST", INSTANCE, {**register(), "accessToken": token})
    assert (answer.status, await answer.text()) == (403, "user not found!")


async def test_users_roles_permissions_shapes(env: Env) -> None:
    await reader_of(env, "ns1")
    users = await env.admin("GET", "/nacos/v1/auth/users", {"pageNo": "1", "pageSize": "10"})
    assert users == {"totalCount": 2, "pageNumber": 1, "pagesAvailable": 1,
                     "pageItems": [{"username": "alice"}, {"username": "nacos"}]}  # fmt: skip
    assert await env.admin("GET", "/nacos/v1/auth/users/search", {"username": "ali"}) == ["alice"]
    roles = await env.admin("GET", "/nacos/v1/auth/roles", {"username": "alice"})
    assert roles["pageItems"] == [{"role": "reader", "username": "alice"}]
    perms = await env.admin("GET", "/nacos/v1/auth/permissions", {"role": "reader"})
    assert perms["pageItems"] == [{"role": "reader", "resource": "ns1", "action": "r"}]
    created = await env.admin(
        "POST", "/nacos/v1/auth/users", {"username": "carol", "password": "c"}
    )
    assert created == {"code": 200, "message": "create user ok!", "data": None}
    token = await env.login("nacos", ADMIN_PASSWORD)
    again = await env.call(
        "POST", "/nacos/v1/auth/users", {"username": "carol", "password": "c", "accessToken": token}
    )
    assert (again.status, await again.text()) == (400, "user 'carol' already exist!")
    gone = await env.call(
        "DELETE", "/nacos/v1/auth/users", {"username": "nacos", "accessToken": token}
    )
    assert (gone.status, await gone.text()) == (400, "cannot delete admin: nacos")


async def test_a_user_changes_its_own_password_but_no_one_elses(env: Env) -> None:
    token = await reader_of(env, "ns1")
    mine = await env.call(
        "PUT",
        "/nacos/v1/auth/users",
        {"username": "alice", "newPassword": "new-pw", "accessToken": token},
    )
    assert mine.status == 200
    await env.login("alice", "new-pw")
    theirs = await env.call(
        "PUT",
        "/nacos/v1/auth/users",
        {"username": "nacos", "newPassword": "x", "accessToken": token},
    )
    assert theirs.status == 403
    await env.login("nacos", ADMIN_PASSWORD)


async def test_failed_logins_are_limited_per_source(env: Env) -> None:
    for _ in range(3):
        answer = await env.call(
            "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": "bad"}
        )
        assert (answer.status, await answer.text()) == (403, "unknown user!")
    # the right password is refused too until the minute is over
    answer = await env.call(
        "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": ADMIN_PASSWORD}
    )
    assert answer.status == 403
    assert "too many failed logins" in await answer.text()
    env.clock.now += 61
    await env.login("nacos", ADMIN_PASSWORD)


def signed(
    path: str, identity: str, *, secret: bytes = SECRET, body: bytes = b""
) -> dict[str, str]:
    signer = PeerSigner(secret, cluster_id=CLUSTER, self_id=PEER, clock=lambda: int(T0 * 1000))
    return {**signer.headers("POST", path, SELF, body), IDENTITY_HEADER: identity}


async def test_a_forwarded_identity_counts_only_under_a_member_signature(env: Env) -> None:
    await reader_of(env, "public", "rw")
    query = "serviceName=svc&ip=10.0.0.9&port=80"
    path = f"{INSTANCE}?{query}"
    cases = {
        "client-sent": {IDENTITY_HEADER: "nacos"},
        "wrong-secret": signed(path, "alice", secret=b"another-secret-entirely!!"),
        "other-path": signed(f"{INSTANCE}?{query}&weight=2", "alice"),
    }
    before = dict(env.datums.items())
    for name, headers in cases.items():
        answer = await env.client.post(path, headers=headers)
        assert answer.status == 403, name
    assert dict(env.datums.items()) == before
    answer = await env.client.post(path, headers=signed(path, "alice"))
    assert (answer.status, await answer.text()) == (200, "ok")
    # a signed identity is still judged by its own permissions
    await env.admin(
        "DELETE",
        "/nacos/v1/auth/permissions",
        {"role": "reader", "resource": "public", "action": "rw"},
    )
    path2 = f"{INSTANCE}?serviceName=svc&ip=10.0.0.9&port=81"
    answer = await env.client.post(path2, headers=signed(path2, "alice"))
    assert answer.status == 403


async def test_open_routes_need_nothing(env: Env) -> None:
    for path in ("/nacos/v1/ns/health/server", "/naraft/v1/openapi.json", "/metrics"):
        answer = await env.call("GET", path)
        assert answer.status != 403, path


async def test_a_digest_install_is_seen_by_the_next_request(env: Env) -> None:
    """An install replaces datums without applying entries; the node tells the machine."""
    token = await reader_of(env, "public", "rw")
    taken = {k: v for k, v in env.datums.items() if k.startswith("naraft.auth.perm/")}
    for key in taken:
        env.datums.delete(key)  # as an install from a leader without that permission would
    answer = await env.call("POST", INSTANCE, {**register(), "accessToken": token})
    assert answer.status == 200  # not told yet: the snapshot is the last generation's
    env.machine.note_installed()
    answer = await env.call("POST", INSTANCE, {**register(port="81"), "accessToken": token})
    assert answer.status == 403


async def test_the_input_nemesis_forged_credentials_are_all_refused(env: Env) -> None:
    """Every forged-auth probe the chaos campaign draws, against a node with auth on."""
    import random

    from naraft.chaos.inputs import ProbeFactory, ProbeKind, http_exchange

    class Node:
        url = str(env.client.make_url("")).rstrip("/")

    factory = ProbeFactory(random.Random(3), (ProbeKind.FORGED_AUTH,), nodes=1)
    before = dict(env.datums.items())
    statuses = set()
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            statuses.add(await http_exchange(session, Node(), factory.next()))  # type: ignore[arg-type]
    assert statuses <= {"403", "400"}, statuses  # 400: a header over aiohttp's line limit
    assert "403" in statuses
    assert dict(env.datums.items()) == before


async def test_the_namespace_list_shows_a_user_only_its_namespaces(env: Env) -> None:
    for ns in ("ns1", "ns2"):
        await env.admin("POST", "/nacos/v1/console/namespaces",
                        {"customNamespaceId": ns, "namespaceName": ns})  # fmt: skip
    everything = await env.admin("GET", "/nacos/v1/console/namespaces", {})
    assert {n["namespace"] for n in everything["data"]} == {"", "ns1", "ns2"}
    token = await reader_of(env, "ns1:DEFAULT_GROUP:naming/svc")  # one service: enough
    answer = await env.call("GET", "/nacos/v1/console/namespaces", {"accessToken": token})
    assert [n["namespace"] for n in (await answer.json())["data"]] == ["ns1"]
    for ns, status in (("ns1", 200), ("ns2", 403)):
        shown = {"show": "all", "namespaceId": ns, "accessToken": token}
        answer = await env.call("GET", "/nacos/v1/console/namespaces", shown)
        assert answer.status == status


async def test_credentials_on_every_request_as_the_npm_client_sends_them(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`...&username=alice&password=...` on each request, no token (nacos-naming 2.6.3)."""
    from naraft.api import auth as auth_api

    await reader_of(env, "public", "rw")
    checks = []
    real_check = auth_api.check_password

    def counted(password: str, hashed: str) -> bool:
        checks.append(password)
        return real_check(password, hashed)

    monkeypatch.setattr(auth_api, "check_password", counted)
    creds = {"username": "alice", "password": "alice-pw"}
    for port in ("80", "81", "82"):
        answer = await env.call("POST", INSTANCE, {**register(port=port), **creds})
        assert (answer.status, await answer.text()) == (200, "ok")
    assert len(checks) == 1  # bcrypt once; then a keyed digest of the password
    answer = await env.call("POST", INSTANCE, {**register(port="83"), "username": "alice",
                                               "password": "wrong"})  # fmt: skip
    assert (answer.status, await answer.text()) == (403, "unknown user!")
    # a changed password voids the remembered one at once
    await env.admin("PUT", "/nacos/v1/auth/users", {"username": "alice", "newPassword": "new"})
    answer = await env.call("POST", INSTANCE, {**register(port="84"), **creds})
    assert answer.status == 403
    # never on admin routes, whose own parameters carry those names
    answer = await env.call("POST", "/nacos/v1/auth/users",
                            {"username": "nacos", "password": ADMIN_PASSWORD})  # fmt: skip
    assert answer.status == 403


async def test_the_v2_api_refuses_in_its_own_shape_and_takes_tokens(env: Env) -> None:
    before = dict(env.datums.items())
    answer = await env.call("POST", "/nacos/v2/ns/instance", register())
    assert answer.status == 403
    assert await answer.json() == {
        "code": 10001,
        "message": "access denied",
        "data": "user not found!",
    }
    assert dict(env.datums.items()) == before

    token = await reader_of(env, "ns1")
    listing = {"serviceName": "svc", "namespaceId": "ns1", "accessToken": token}
    answer = await env.call("GET", "/nacos/v2/ns/instance/list", listing)
    assert answer.status == 200, await answer.text()
    refused = await env.call(
        "POST", "/nacos/v2/ns/instance", {**register("ns1"), "accessToken": token}
    )
    assert refused.status == 403
    assert (await refused.json())["data"] == "authorization failed!"
    elsewhere = {**listing, "namespaceId": "ns2"}
    answer = await env.call("GET", "/nacos/v2/ns/instance/list", elsewhere)
    assert (answer.status, (await answer.json())["code"]) == (403, 10001)
    admin = await env.login("nacos", ADMIN_PASSWORD)
    answer = await env.call("POST", "/nacos/v2/ns/instance", {**register(), "accessToken": admin})
    assert (answer.status, await answer.json()) == (
        200,
        {"code": 0, "message": "success", "data": "ok"},
    )


@pytest.mark.parametrize("path", ["/nacos/v1/ns/instance", "/nacos/v2/ns/instance"])
async def test_a_permission_is_checked_on_the_namespace_the_write_goes_to(
    env: Env, path: str
) -> None:
    """A writer of ns1 naming ns1 only in a parameter the handler does not read (`tenant`,
    `group`) is checked against the namespace it writes to: public, where it may not."""
    token = await reader_of(env, "ns1", "rw")
    before = dict(env.datums.items())
    for aside in ({"tenant": "ns1"}, {"tenant": "ns1", "group": "G"}):
        params = {**register(""), **aside, "accessToken": token}
        answer = await env.call("POST", path, params)
        assert answer.status == 403, await answer.text()
    assert dict(env.datums.items()) == before
    allowed = await env.call("POST", path, {**register("ns1"), "accessToken": token})
    assert allowed.status == 200, await allowed.text()


@pytest.mark.parametrize(
    ("path", "aside"),
    [
        ("/nacos/v1/cs/configs", {"namespaceId": "ns1"}),  # v1 reads only `tenant`
        ("/nacos/v2/cs/config", {"namespaceId": "", "tenant": "ns2", "groupName": "G"}),
        ("/nacos/v2/cs/config", {"namespaceId": "ns2", "tenant": "ns1"}),  # namespaceId first
    ],
)
async def test_a_config_permission_is_checked_on_the_namespace_written(
    env: Env, path: str, aside: dict[str, str]
) -> None:
    token = await reader_of(env, "ns1", "rw")
    config = {"dataId": "d", "group": "DEFAULT_GROUP", "content": "x", "accessToken": token}
    answer = await env.call("POST", path, {**config, **aside})
    assert answer.status == 403, await answer.text()
    assert env.configs.count() == 0
    v2_allowed = await env.call("POST", "/nacos/v2/cs/config", {**config, "namespaceId": "ns1"})
    assert v2_allowed.status == 200, await v2_allowed.text()
    v1_allowed = await env.call("POST", "/nacos/v1/cs/configs", {**config, "tenant": "ns1"})
    assert v1_allowed.status == 200, await v1_allowed.text()


def config_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        out.writestr("DEFAULT_GROUP/imported", "x")
    return buffer.getvalue()


async def test_config_import_needs_write_on_the_namespace_it_names(env: Env) -> None:
    """An import writes the namespace in `namespace` (not `tenant`), any group: a reader is
    refused, and a writer of ns1 naming ns1 only in `tenant` is checked on ns2."""
    reader = await reader_of(env, "ns1", "r")

    async def upload(token: str, **params: str) -> ClientResponse:
        form = FormData()
        form.add_field("file", config_zip(), filename="x.zip", content_type="application/zip")
        query = {"import": "true", "accessToken": token, **params}
        return await env.client.post("/nacos/v1/cs/configs", params=query, data=form)

    refused = await upload(reader, namespace="ns1")
    assert refused.status == 403, await refused.text()
    await env.admin(
        "POST", "/nacos/v1/auth/permissions", {"role": "reader", "resource": "ns1", "action": "rw"}
    )
    for aside in ({"namespace": "ns2", "tenant": "ns1"}, {"tenant": "ns1", "group": "G"}):
        answer = await upload(reader, **aside)
        assert answer.status == 403, await answer.text()
    assert env.configs.count() == 0
    allowed = await upload(reader, namespace="ns1")
    assert allowed.status == 200, await allowed.text()
    assert (await allowed.json())["data"] == {"succCount": 1, "skipCount": 0}
    export = {"exportV2": "true", "accessToken": reader}
    other = await env.call("GET", "/nacos/v1/cs/configs", {**export, "tenant": "ns2"})
    assert other.status == 403
    own = await env.call("GET", "/nacos/v1/cs/configs", {**export, "tenant": "ns1"})
    assert own.status == 200
    with zipfile.ZipFile(io.BytesIO(await own.read())) as got:
        assert "DEFAULT_GROUP/imported" in got.namelist()


async def test_config_clone_needs_write_on_its_tenant_and_read_on_every_source(
    env: Env,
) -> None:
    """A clone writes any name of its `tenant` (a writer of one group naming that group in
    the query is checked on the whole namespace) and reads configs by id from any namespace
    (each must be readable by the caller, or nothing is written)."""
    for tenant, data_id in (("ns1", "mine"), ("ns2", "secret")):
        config = {"dataId": data_id, "group": "G", "content": data_id, "tenant": tenant}
        await env.admin("POST", "/nacos/v1/cs/configs", config)
    mine, secret = (
        env.configs.get(ConfigKey(tenant, "G", data_id))
        for tenant, data_id in (("ns1", "mine"), ("ns2", "secret"))
    )
    assert mine is not None
    assert secret is not None
    token = await reader_of(env, "ns1:G:*", "rw")

    async def clone(body: list[dict[str, object]], **params: str) -> ClientResponse:
        query = {"clone": "true", "tenant": "ns1", "accessToken": token, **params}
        return await env.client.post("/nacos/v1/cs/configs", params=query, json=body)

    renamed = [{"cfgId": mine.id, "group": "H"}]
    narrow = await clone(renamed, group="G", dataId="mine")
    assert narrow.status == 403, await narrow.text()
    await env.admin(
        "POST", "/nacos/v1/auth/permissions", {"role": "reader", "resource": "ns1", "action": "rw"}
    )
    stolen = await clone([{"cfgId": secret.id}])
    assert stolen.status == 403, await stolen.text()
    refusal = await stolen.text()
    assert f"config id {secret.id}" in refusal
    assert "secret" not in refusal  # the name of a config it may not read stays unknown
    assert env.configs.count() == 2
    allowed = await clone(renamed)
    assert allowed.status == 200, await allowed.text()
    assert (await allowed.json())["data"] == {"succCount": 1, "skipCount": 0}
    copy = env.configs.get(ConfigKey("ns1", "H", "mine"))
    assert copy is not None
    assert copy.content == "mine"


@pytest.mark.parametrize("size", ["²", "\u0661\u0660", "0", "-1", "x"])
async def test_a_page_size_that_is_not_ascii_digits_in_range_is_refused_naming_it(
    env: Env, size: str
) -> None:
    """`'²'.isdigit()` is true and `int('²')` raises: the check must ask for ASCII digits
    (the schemathesis run found the 500)."""
    token = await env.login("nacos", ADMIN_PASSWORD)
    for path in ("/nacos/v1/auth/users", "/nacos/v1/auth/permissions"):
        answer = await env.call(
            "GET", path, {"pageNo": "1", "pageSize": size, "role": "r", "accessToken": token}
        )
        assert answer.status == 400, (path, size, await answer.text())
        assert "pageSize" in await answer.text()
