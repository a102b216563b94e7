"""The console in process: its session cookie is honoured on console routes only, its forms
need the session's CSRF token, and they write through the API's services with the API's
errors (tests/e2e/test_console.py drives it in a browser)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.test_auth import ADMIN_PASSWORD, Env

from naraft.api.console.session import SESSION_COOKIE

UI = "/nacos/ui"


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


async def sign_in(env: Any) -> str:
    """Signs the test client in through the login form; returns the page's CSRF token."""
    answer = await env.client.post(
        f"{UI}/login",
        data={"username": "nacos", "password": ADMIN_PASSWORD, "next": f"{UI}/namespaces"},
        allow_redirects=False,
    )
    assert answer.status == 303
    assert answer.headers["Location"] == f"{UI}/namespaces"
    cookie = answer.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    page = await env.client.get(f"{UI}/namespaces")
    assert page.status == 200
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


async def test_root_and_nacos_lead_to_the_console(env: Any) -> None:
    first = await env.client.get("/", allow_redirects=False)
    assert (first.status, first.headers["Location"]) == (302, "/nacos/")
    home = await env.client.get("/nacos/", allow_redirects=False)
    assert home.headers["Location"] == f"{UI}/services"


async def test_a_page_without_a_session_sends_to_the_login_page(env: Any) -> None:
    answer = await env.client.get(f"{UI}/services?namespaceId=x", allow_redirects=False)
    assert answer.status == 303
    location = answer.headers["Location"]
    assert location.startswith(f"{UI}/login?next=")
    assert "/nacos/ui/services" in location


async def test_wrong_password_shows_the_apis_message_and_sets_no_cookie(env: Any) -> None:
    answer = await env.client.post(
        f"{UI}/login", data={"username": "nacos", "password": "nope"}, allow_redirects=False
    )
    assert answer.status == 403
    assert SESSION_COOKIE not in answer.cookies
    assert 'role="alert"' in await answer.text()


async def test_the_session_cookie_is_not_accepted_by_the_api(env: Any) -> None:
    await sign_in(env)
    page = await env.client.get(f"{UI}/services")
    assert page.status == 200
    api = await env.client.get("/nacos/v1/ns/service/list", params={"pageNo": 1, "pageSize": 10})
    assert api.status == 403


async def test_a_form_without_the_csrf_token_writes_nothing(env: Any) -> None:
    csrf = await sign_in(env)
    before = dict(env.datums.items())
    form = {"action": "create", "customNamespaceId": "team-a", "namespaceName": "Team A"}
    refused = await env.client.post(f"{UI}/namespaces", data=form, allow_redirects=False)
    forged = await env.client.post(
        f"{UI}/namespaces", data={**form, "csrf": "0" * 64}, allow_redirects=False
    )
    assert (refused.status, forged.status) == (403, 403)
    assert dict(env.datums.items()) == before
    done = await env.client.post(
        f"{UI}/namespaces", data={**form, "csrf": csrf}, allow_redirects=False
    )
    assert done.status == 303
    assert "created+namespace+team-a" in done.headers["Location"]


async def test_bad_form_input_shows_the_apis_error_and_writes_nothing(env: Any) -> None:
    csrf = await sign_in(env)
    api = await env.call(
        "POST",
        "/nacos/v1/console/namespaces",
        {"customNamespaceId": "bad id!", "namespaceName": "x", "accessToken": await token(env)},
    )
    api_text = await api.text()
    before = dict(env.datums.items())
    form = {"action": "create", "customNamespaceId": "bad id!", "namespaceName": "x"}
    page = await env.client.post(f"{UI}/namespaces", data={**form, "csrf": csrf})
    assert api.status == page.status == 400
    assert api_text in await page.text()
    assert dict(env.datums.items()) == before


async def token(env: Any) -> str:
    answer = await env.call(
        "POST", "/nacos/v1/auth/login", {"username": "nacos", "password": ADMIN_PASSWORD}
    )
    data = await answer.json()
    return str(data["accessToken"])


async def test_login_never_redirects_off_the_console(env: Any) -> None:
    answer = await env.client.post(
        f"{UI}/login",
        data={"username": "nacos", "password": ADMIN_PASSWORD, "next": "//evil.example/x"},
        allow_redirects=False,
    )
    assert answer.headers["Location"] == f"{UI}/services"


async def test_config_edit_previews_a_diff_then_publishes_with_the_shown_md5(env: Any) -> None:
    csrf = await sign_in(env)
    key = {"dataId": "app.yaml", "group": "G", "tenant": ""}
    first = await env.client.post(
        f"{UI}/config", data={**key, "content": "a: 1\n", "csrf": csrf}, allow_redirects=False
    )
    assert first.status == 303
    preview = await env.client.post(
        f"{UI}/config/preview", data={**key, "content": "a: 2\n", "csrf": csrf}
    )
    text = await preview.text()
    assert '<span class="del">-a: 1</span>' in text
    assert '<span class="add">+a: 2</span>' in text
    md5 = re.search(r'name="casMd5" value="([0-9a-f]+)"', text)
    assert md5 is not None
    # someone else publishes in between: the reviewed publish is refused (409) and kept out
    await env.client.post(f"{UI}/config", data={**key, "content": "a: 3\n", "csrf": csrf})
    stale = await env.client.post(
        f"{UI}/config", data={**key, "content": "a: 2\n", "casMd5": md5.group(1), "csrf": csrf}
    )
    assert stale.status == 409
    assert env.configs.get(env_key(key)).content == "a: 3\n"


def env_key(key: dict[str, str]) -> Any:
    from naraft.configs.model import ConfigKey

    return ConfigKey(data_id=key["dataId"], group=key["group"], tenant=key["tenant"])


async def test_the_services_page_pages_10000_services_server_side() -> None:
    """10,000 services: the page renders one page of them, found by a search, quickly."""
    from tests.api.conftest import Env as NamingEnv

    from naraft.api import make_app
    from naraft.naming.validate import RawInstance

    environment = NamingEnv()
    for n in range(10_000):
        raw = RawInstance(service_name=f"svc-{n:05d}", ip="10.0.0.1", port="80")
        await environment.naming.register_instance(raw)
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(environment.naming))
    )
    await client.start_server()
    try:
        timings = []
        for query in ("", "?pageNo=400", "?serviceNameParam=svc-0999"):
            started = time.perf_counter()
            answer = await client.get(f"{UI}/services{query}")
            timings.append(time.perf_counter() - started)
            text = await answer.text()
            assert answer.status == 200, text
            if not query:
                assert "10000 in all" in text
        assert "svc-09990" in text
        assert text.count('<tr><td><a href="/nacos/ui/service?') == 10
        assert max(timings) < 1.0, timings  # about 0.07-0.12 s here; generous for a shared CI
    finally:
        await client.close()


async def test_users_roles_and_permissions_through_the_auth_apis_functions(env: Any) -> None:
    csrf = await sign_in(env)

    async def post(**form: str) -> Any:
        return await env.client.post(
            f"{UI}/users", data={**form, "csrf": csrf}, allow_redirects=False
        )

    made = await post(op="create_user", username="alice", password="alice-pw")
    assert made.status == 303
    assert "create+user+ok" in made.headers["Location"]
    assert (await post(op="add_role", role="readers", username="alice")).status == 303
    granted = await post(op="add_permission", role="readers", resource="public:*:*", action="r")
    assert granted.status == 303
    page = await (await env.client.get(f"{UI}/users")).text()
    assert "alice" in page
    assert "public:*:*" in page
    # the API's own error for a bad action, and nothing written
    before = dict(env.datums.items())
    bad = await post(op="add_permission", role="readers", resource="public:*:*", action="x")
    assert bad.status == 400
    api = await env.call(
        "POST",
        "/nacos/v1/auth/permissions",
        {
            "role": "readers",
            "resource": "public:*:*",
            "action": "x",
            "accessToken": await token(env),
        },
    )
    assert api.status == 400
    assert await api.text() in await bad.text()
    assert dict(env.datums.items()) == before


async def test_with_auth_off_forms_use_a_double_submit_cookie() -> None:
    """No session to bind to: the page sets a random CSRF cookie that forms must repeat."""
    from tests.api.conftest import Env as NamingEnv

    from naraft.api import make_app
    from naraft.api.console.session import CSRF_COOKIE

    environment = NamingEnv()
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(environment.naming))
    )
    await client.start_server()
    try:
        page = await client.get(f"{UI}/namespaces")
        assert page.status == 200
        cookie = page.cookies[CSRF_COOKIE].value
        assert f'value="{cookie}"' in await page.text()
        form = {"action": "create", "customNamespaceId": "team-b", "namespaceName": "B"}
        refused = await client.post(f"{UI}/namespaces", data=form, allow_redirects=False)
        assert refused.status == 403
        assert environment.state.namespace("team-b") is None
        done = await client.post(
            f"{UI}/namespaces", data={**form, "csrf": cookie}, allow_redirects=False
        )
        assert done.status == 303
        assert environment.state.namespace("team-b") is not None
    finally:
        await client.close()
