"""The console in process: its session cookie is honoured on console routes only, its forms
need the session's CSRF token, and they write through the API's services with the API's
errors (tests/e2e/test_console.py drives it in a browser)."""

from __future__ import annotations

import html
import io
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from markupsafe import Markup
from tests.api.test_auth import ADMIN_PASSWORD, Env, user_holding

from naraft.api.app import MAX_BODY_BYTES
from naraft.api.console.highlight import MAX_HIGHLIGHT_CHARS, highlight
from naraft.api.console.session import SESSION_COOKIE
from naraft.api.members import MEMBERS_NODE
from naraft.configs import archive
from naraft.raft import NodeId, Role, SnapshotMeta
from naraft.raft.core import PeerStatus, Status
from naraft.raft.membership import Membership
from naraft.raft.progress import ProgressState
from naraft.raft.types import Index, Term

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
    nacos_console = await env.client.get("/nacos/index.html", allow_redirects=False)
    assert (nacos_console.status, nacos_console.headers["Location"]) == (302, "/nacos/")


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
    """10,000 services: each answer carries one page of them, chosen by page number or search.

    How fast the page renders is a benchmark's business; this test shows the work is bounded:
    the body holds one page of rows and stays small whichever page is asked for.
    """
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
        pages = {}
        rows = {"": 20, "?pageNo=400": 20, "?serviceNameParam=svc-0999": 10}
        for query, expected in rows.items():
            answer = await client.get(f"{UI}/services{query}")
            text = await answer.text()
            assert answer.status == 200, text
            assert text.count('<tr><td><a href="/nacos/ui/service?') == expected, query
            assert len(text.encode()) < 64 * 1024, (query, len(text))
            pages[query] = text
        assert "10000 in all" in pages[""]
        assert "svc-00000" in pages[""]
        assert "svc-00020" not in pages[""]
        assert "svc-07980" in pages["?pageNo=400"]
        assert "svc-00000" not in pages["?pageNo=400"]
        assert "svc-09990" in pages["?serviceNameParam=svc-0999"]
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


# ------------------------------------------------------------ config export and import


async def sign_in_as(env: Any, username: str, password: str) -> str:
    """Signs the test client in as `username`; the CSRF token of its session's forms."""
    answer = await env.client.post(
        f"{UI}/login", data={"username": username, "password": password}, allow_redirects=False
    )
    assert answer.status == 303, await answer.text()
    page = await env.client.get(f"{UI}/cluster")
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


async def publish_three(env: Any, csrf: str) -> None:
    for data_id, group, content, kind in (
        ("app.yaml", "G", "a: 1\n", "yaml"),
        ("db.properties", "G", "url=x\n", "properties"),
        ("other.json", "H", '{"b": 2}', "json"),
    ):
        done = await env.client.post(
            f"{UI}/config",
            data={
                "dataId": data_id,
                "group": group,
                "content": content,
                "type": kind,
                "csrf": csrf,
            },
            allow_redirects=False,
        )
        assert done.status == 303, await done.text()


def zip_items(body: bytes) -> dict[tuple[str, str], tuple[str, str | None]]:
    items = archive.read_archive(body, archive.ArchiveLimits.for_content(1 << 20))
    return {(i.group, i.data_id): (i.content, i.type) for i in items}


async def test_export_downloads_the_zip_the_apis_exporter_writes(env: Any) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    page = await (await env.client.get(f"{UI}/configs")).text()
    assert 'action="/nacos/ui/config/export"' in page
    answer = await env.client.get(f"{UI}/config/export", params={"tenant": "", "scope": "all"})
    assert answer.status == 200, await answer.text()
    assert answer.content_type == "application/zip"
    assert answer.headers["Content-Disposition"].startswith(
        "attachment;filename=nacos_config_export_"
    )
    api = await env.call(
        "GET", "/nacos/v1/cs/configs", {"exportV2": "true", "accessToken": await token(env)}
    )
    every = zip_items(await answer.read())
    assert every == zip_items(await api.read())
    assert every[("G", "app.yaml")] == ("a: 1\n", "yaml")
    assert len(every) == 3
    # the search's matches (group contains G), in the Nacos 1 format
    matching = await env.client.get(
        f"{UI}/config/export", params={"scope": "matching", "group": "G", "format": "v1"}
    )
    assert matching.status == 200, await matching.text()
    assert set(zip_items(await matching.read())) == {("G", "app.yaml"), ("G", "db.properties")}
    # the ticked rows
    ids = re.findall(r'name="id" value="(\d+)"', page)
    assert len(ids) == 3
    picked = await env.client.get(
        f"{UI}/config/export", params=[("scope", "selected"), ("id", ids[0]), ("id", ids[2])]
    )
    assert picked.status == 200
    assert len(zip_items(await picked.read())) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scope": "some"}, "scope: must be all, matching or selected"),
        ({"scope": "selected"}, "id: tick at least one config"),
        ({"scope": "selected", "id": "x1"}, "invalid ids"),
        ({"scope": "matching", "dataId": "nothing-like-this"}, "no config matches"),
    ],
)
async def test_a_bad_export_shows_the_field_on_the_configs_page(
    env: Any, params: dict[str, str], field: str
) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    answer = await env.client.get(f"{UI}/config/export", params=params)
    assert answer.status == 400
    assert answer.content_type == "text/html"
    assert field in await answer.text()


async def test_export_needs_read_on_the_whole_namespace(env: Any) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    await user_holding(env, "public:G:app.yaml", "r")  # one config, not the namespace
    env.client.session.cookie_jar.clear()
    await sign_in_as(env, "alice", "alice-pw")
    narrow = await env.client.get(
        f"{UI}/config/export",
        params={"scope": "selected", "id": "1", "group": "G", "dataId": "app.yaml"},
        allow_redirects=False,
    )
    assert narrow.status == 403
    await env.admin(
        "POST",
        "/nacos/v1/auth/permissions",
        {"role": "reader", "resource": "public", "action": "r"},
    )
    wide = await env.client.get(f"{UI}/config/export", params={"scope": "all"})
    assert wide.status == 200
    assert len(zip_items(await wide.read())) == 3


def message_of(answer: Any) -> str:
    """The message a form's 303 carries to the page it leads to."""
    assert answer.status == 303
    return parse_qs(urlsplit(answer.headers["Location"]).query)["msg"][0]


def export_zip(*configs: tuple[str, str, str]) -> bytes:
    items = [archive.ExportItem(group=g, data_id=d, content=c) for g, d, c in configs]
    return archive.write_archive(items, v2=True)


async def upload(env: Any, body: bytes | None, csrf: str | None, policy: str = "ABORT") -> Any:
    form = FormData()
    if csrf is not None:
        form.add_field("csrf", csrf)
    form.add_field("policy", policy)
    if body is not None:
        form.add_field(
            "file", io.BytesIO(body), filename="export.zip", content_type="application/zip"
        )
    return await env.client.post(
        f"{UI}/config/import", params={"tenant": ""}, data=form, allow_redirects=False
    )


async def test_import_writes_through_the_apis_import_and_shows_the_counts(env: Any) -> None:
    csrf = await sign_in(env)
    body = export_zip(("G", "a.yaml", "a: 1\n"), ("G", "b.yaml", "b: 1\n"))
    done = await upload(env, body, csrf)
    assert done.status == 303, await done.text()
    assert message_of(done) == "imported 2, skipped 0, failed 0"
    assert env.configs.get(env_key({"dataId": "a.yaml", "group": "G", "tenant": ""})) is not None
    # again with ABORT: both exist, nothing is written, the page names them
    before = dict(env.datums.items())
    again = await upload(env, export_zip(("G", "a.yaml", "changed"), ("G", "c.yaml", "c")), csrf)
    assert again.status == 409
    text = await again.text()
    assert "policy ABORT: 1 of the zip&#39;s configs exist already (G/a.yaml)" in text
    assert dict(env.datums.items()) == before
    skipped = await upload(
        env, export_zip(("G", "a.yaml", "x"), ("G", "c.yaml", "c")), csrf, "SKIP"
    )
    assert message_of(skipped) == "imported 1, skipped 1, failed 0"
    over = await upload(env, export_zip(("G", "a.yaml", "new: 2\n")), csrf, "OVERWRITE")
    assert over.status == 303
    assert env.configs.get(env_key({"dataId": "a.yaml", "group": "G", "tenant": ""})).content == (
        "new: 2\n"
    )


@pytest.mark.parametrize(
    ("body", "policy", "status", "shown"),
    [
        (b"not a zip at all", "ABORT", 400, "import refused:"),
        (None, "ABORT", 400, "file: choose the zip"),
        (b"", "ABORT", 400, "file: choose the zip"),
        ("good", "MAYBE", 400, "invalid policy : MAYBE"),
    ],
)
async def test_a_bad_import_shows_the_problem_and_writes_nothing(
    env: Any, body: bytes | str | None, policy: str, status: int, shown: str
) -> None:
    csrf = await sign_in(env)
    before = dict(env.datums.items())
    upload_body = export_zip(("G", "a.yaml", "a")) if body == "good" else body
    assert not isinstance(upload_body, str)
    answer = await upload(env, upload_body, csrf, policy)
    assert answer.status == status
    assert shown in await answer.text()
    assert dict(env.datums.items()) == before


async def test_import_needs_the_csrf_token_and_write_on_the_namespace(env: Any) -> None:
    csrf = await sign_in(env)
    await user_holding(env, "public:G:*", "rw")  # a group, not the namespace
    before = dict(env.datums.items())
    body = export_zip(("G", "a.yaml", "a"))
    assert (await upload(env, body, None)).status == 403
    assert (await upload(env, body, "0" * 64)).status == 403
    env.client.session.cookie_jar.clear()
    alice = await sign_in_as(env, "alice", "alice-pw")
    assert (await upload(env, body, alice)).status == 403
    assert dict(env.datums.items()) == before
    assert csrf != alice


async def test_the_import_body_has_the_config_limit_not_the_client_one(env: Any) -> None:
    """A zip bigger than the client body limit (the kv API's) is taken, as the API's."""
    csrf = await sign_in(env)
    body = export_zip(("G", "big.txt", secrets.token_urlsafe(MAX_BODY_BYTES * 3 // 2)))
    assert len(body) > MAX_BODY_BYTES
    answer = await upload(env, body, csrf)
    assert message_of(answer) == "imported 1, skipped 0, failed 0"


# -------------------------------------------------------------------- highlighting


def config_ids(env: Any, *names: str) -> list[int]:
    ids = []
    for name in names:
        group, data_id = name.split("/")
        record = env.configs.get(env_key({"dataId": data_id, "group": group, "tenant": ""}))
        assert record is not None
        ids.append(record.id)
    return ids


async def clone(env: Any, fields: list[tuple[str, str]]) -> Any:
    return await env.client.post(f"{UI}/config/clone", data=fields, allow_redirects=False)


async def test_clone_shows_the_ticked_configs_then_copies_them_through_the_apis_clone(
    env: Any,
) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    app, other = config_ids(env, "G/app.yaml", "H/other.json")
    listing = await env.client.get(f"{UI}/configs")
    assert 'formaction="/nacos/ui/config/clone"' in await listing.text()
    dialog = await env.client.get(
        f"{UI}/config/clone", params=[("tenant", ""), ("id", str(app)), ("id", str(other))]
    )
    assert dialog.status == 200, await dialog.text()
    page = await dialog.text()
    assert f'name="dataId-{app}" value="app.yaml"' in page
    assert f'name="group-{other}" value="H"' in page
    fields = [
        ("csrf", csrf),
        ("tenant", "ns1"),
        ("policy", "ABORT"),
        ("cfgId", str(app)),
        (f"dataId-{app}", "app-copy.yaml"),
        (f"group-{app}", "COPIES"),
        ("cfgId", str(other)),
        (f"dataId-{other}", "other.json"),
        (f"group-{other}", "H"),
    ]
    done = await clone(env, fields)
    assert message_of(done) == "cloned 2, skipped 0, failed 0"
    assert urlsplit(done.headers["Location"]).query.startswith("tenant=ns1")
    copy = env.configs.get(env_key({"dataId": "app-copy.yaml", "group": "COPIES", "tenant": "ns1"}))
    assert copy is not None
    assert (copy.content, copy.type) == ("a: 1\n", "yaml")
    before = dict(env.datums.items())
    again = await clone(env, fields)  # ABORT: both exist now
    assert again.status == 409
    assert "policy ABORT: 2 of the copies&#39; configs exist already" in await again.text()
    assert dict(env.datums.items()) == before
    skipped = await clone(env, [(k, "SKIP" if k == "policy" else v) for k, v in fields])
    assert message_of(skipped) == "cloned 0, skipped 2, failed 0"


@pytest.mark.parametrize(
    ("change", "status", "shown"),
    [
        ({"dataId": "bad name!"}, 400, "clone refused: config G/bad name! to clone"),
        ({"policy": "MAYBE"}, 400, "invalid policy : MAYBE"),
        ({"csrf": "forged"}, 403, "CSRF"),
        ({"cfgId": "x"}, 400, "cfgId must be a config id"),
    ],
)
async def test_a_bad_clone_shows_the_problem_and_writes_nothing(
    env: Any, change: dict[str, str], status: int, shown: str
) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    (app,) = config_ids(env, "G/app.yaml")
    values = {"csrf": csrf, "tenant": "ns1", "policy": "ABORT", "cfgId": str(app), **change}
    fields = [*values.items(), (f"dataId-{app}", values.get("dataId", "x")), (f"group-{app}", "G")]
    before = dict(env.datums.items())
    answer = await clone(env, fields)
    assert answer.status == status
    assert shown in await answer.text()
    assert dict(env.datums.items()) == before


async def test_the_clone_dialog_shows_only_the_namespace_asked_for(env: Any) -> None:
    csrf = await sign_in(env)
    await publish_three(env, csrf)
    (app,) = config_ids(env, "G/app.yaml")
    elsewhere = await env.client.get(f"{UI}/config/clone", params={"tenant": "ns1", "id": app})
    assert elsewhere.status == 400
    assert "tick at least one config to clone" in await elsewhere.text()
    junk = await env.client.get(
        f"{UI}/config/clone", params=[("tenant", ""), ("id", "9" * 5_000), ("id", "x")]
    )
    assert junk.status == 400  # passed over, not a 500


async def test_content_is_coloured_by_type_and_never_markup(env: Any) -> None:
    csrf = await sign_in(env)
    hostile = '<script>alert("x")</script><img src=x onerror="alert(1)">'
    for data_id, kind, content in (
        ("page.html", "html", hostile),
        ("broken.json", "json", '{"a": <script>alert(1)</script>, "b": [1, tru'),
        ("app.yaml", "yaml", "a: <script>\n  b: [1, 'x'\n# note\n"),
        ("x.properties", "properties", "k=<b>v</b>\n# c"),
        ("plain.txt", "text", hostile),
    ):
        done = await env.client.post(
            f"{UI}/config",
            data={"dataId": data_id, "group": "G", "content": content, "type": kind, "csrf": csrf},
            allow_redirects=False,
        )
        assert done.status == 303, await done.text()
        page = await env.client.get(f"{UI}/config", params={"dataId": data_id, "group": "G"})
        assert page.status == 200
        text = await page.text()
        current = text[
            text.index('id="current"') : text.index("</pre>", text.index('id="current"'))
        ]
        for tag in ("<script", "<img", "<b>"):
            assert tag not in current
        assert (
            "&lt;script&gt;" in current
            or "&lt;script</span>" in current
            or ("&lt;b&gt;" in current)
        )
        if kind != "text":
            assert '<span class="hl-' in current
    # the review page colours the new content too
    preview = await env.client.post(
        f"{UI}/config/preview",
        data={
            "dataId": "page.html",
            "group": "G",
            "content": hostile,
            "type": "html",
            "csrf": csrf,
        },
    )
    text = await preview.text()
    assert '<span class="hl-tag">&lt;script</span>' in text
    assert "<script>alert" not in text


def test_the_highlighter_escapes_every_token_and_tolerates_broken_input() -> None:
    coloured = highlight('{"k<": "v&", "n": -1.5e3, "t": true}', "json")
    assert isinstance(coloured, Markup)
    assert '<span class="hl-key">&#34;k&lt;&#34;</span>' in coloured
    assert '<span class="hl-str">&#34;v&amp;&#34;</span>' in coloured
    assert '<span class="hl-num">-1.5e3</span>' in coloured
    assert '<span class="hl-lit">true</span>' in coloured
    broken = highlight('{"unterminated: [1, ', "json")
    assert "unterminated" in broken
    xml = highlight('<a x="1">t &amp; <!-- <b> --></a>', "xml")
    assert '<span class="hl-attr">x</span>' in xml
    assert '<span class="hl-com">&lt;!-- &lt;b&gt; --&gt;</span>' in xml
    yaml = highlight("key: value # note\n- item: 1", "yaml")
    assert '<span class="hl-key">key</span>' in yaml
    assert '<span class="hl-com"># note</span>' in yaml
    # whatever the input, stripping the spans and unescaping gives the content back
    for kind in ("json", "yaml", "xml", "html", "properties", "text", None, "nonsense"):
        for content in ('<a b="c">&</a>', "a: 'x\n  - [", 'k = "v\\\n', "\x00<\n>"):
            shown = re.sub(r'<span class="hl-\w+">|</span>', "", str(highlight(content, kind)))
            assert html.unescape(shown) == content, (kind, content)
    # past the limit: escaped only (0.1-0.3 s to colour 128 KiB here; no clock asserted, the
    # machine is shared)
    big = "<x>" * (MAX_HIGHLIGHT_CHARS // 3 + 1)
    assert highlight(big, "xml") == big.replace("<", "&lt;").replace(">", "&gt;")
    assert '<span class="hl-' in highlight("<x>" * (MAX_HIGHLIGHT_CHARS // 3 - 1), "xml")


# ------------------------------------------------------------------ member changes


class FakeMembers:
    """A leader's membership by the core's own rules (`Membership.changed`); a learner is
    caught up when `caught_up` says so."""

    def __init__(self) -> None:
        self.membership = Membership.of(["127.0.0.1:7001"])
        self.caught_up = True
        self.clustered = True
        self.changes: list[object] = []

    @property
    def status(self) -> Any:
        match = Index(10 if self.caught_up else 0)
        return Status(
            id=NodeId("127.0.0.1:7001"),
            role=Role.LEADER,
            term=Term(2),
            voted_for=None,
            leader=NodeId("127.0.0.1:7001"),
            commit_index=Index(10),
            applied_index=Index(10),
            last_index=Index(10),
            last_term=Term(2),
            persisted_index=Index(10),
            snapshot=SnapshotMeta(index=Index(0), term=Term(0)),
            peers={
                m: PeerStatus(
                    match_index=match,
                    next_index=Index(11),
                    state=ProgressState.REPLICATE,
                    recent_active=True,
                )
                for m in self.membership.members
                if m != "127.0.0.1:7001"
            },
            membership=self.membership,
        )

    async def propose_membership(self, change: Any) -> object:
        self.membership = self.membership.changed(change)
        self.changes.append(change)
        return self.membership

    async def wait_for_status(self, holds: Any, timeout_seconds: float) -> Any:
        status = self.status
        return status if holds(status) else None


@pytest.fixture
async def members_env() -> AsyncIterator[tuple[Env, FakeMembers]]:
    environment = Env()
    fake = FakeMembers()
    environment.app[MEMBERS_NODE] = fake
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(environment.app))
    await client.start_server()
    environment.client = client
    try:
        yield environment, fake
    finally:
        await client.close()


async def test_members_are_added_promoted_and_removed_from_the_cluster_page(
    members_env: tuple[Env, FakeMembers],
) -> None:
    env, fake = members_env
    csrf = await sign_in(env)
    page = await (await env.client.get(f"{UI}/cluster")).text()
    assert "Add member (host:port)" in page

    async def post(**form: str) -> Any:
        return await env.client.post(
            f"{UI}/cluster/members", data={**form, "csrf": csrf}, allow_redirects=False
        )

    learner = await post(action="add", id="127.0.0.1:7002", role="learner")
    assert learner.status == 303, await learner.text()
    assert message_of(learner).startswith("127.0.0.1:7002 is a learner; voters are 127.0.0.1:7001")
    assert fake.membership.learners == {"127.0.0.1:7002"}
    promoted = await post(action="promote", id="127.0.0.1:7002")
    assert message_of(promoted).startswith("127.0.0.1:7002 is a voter")
    voter = await post(action="add", id="127.0.0.1:7003")  # voter: learner, then promoted
    assert voter.status == 303
    assert fake.membership.voters == {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
    removed = await post(action="remove", id="127.0.0.1:7003")
    assert message_of(removed).startswith("127.0.0.1:7003 was removed")
    assert "127.0.0.1:7003" not in fake.membership.members


async def test_a_voter_that_does_not_catch_up_stays_a_learner_and_the_page_says_so(
    members_env: tuple[Env, FakeMembers],
) -> None:
    env, fake = members_env
    csrf = await sign_in(env)
    fake.caught_up = False
    answer = await env.client.post(
        f"{UI}/cluster/members", data={"action": "add", "id": "127.0.0.1:7002", "csrf": csrf}
    )
    assert answer.status == 409
    assert "127.0.0.1:7002 is a learner but has not caught up" in await answer.text()
    assert fake.membership.learners == {"127.0.0.1:7002"}
    fake.caught_up = True  # added again as a voter: only the promotion is left to do
    again = await env.client.post(
        f"{UI}/cluster/members",
        data={"action": "add", "id": "127.0.0.1:7002", "csrf": csrf},
        allow_redirects=False,
    )
    assert again.status == 303
    assert fake.membership.voters == {"127.0.0.1:7001", "127.0.0.1:7002"}


@pytest.mark.parametrize(
    ("form", "status", "shown"),
    [
        ({"action": "remove", "id": "127.0.0.1:7001"}, 409, "127.0.0.1:7001 is the last voter"),
        ({"action": "remove", "id": "127.0.0.1:7999"}, 409, "127.0.0.1:7999 is not a member"),
        ({"action": "promote", "id": "127.0.0.1:7999"}, 409, "is not a learner: add it first"),
        ({"action": "add", "id": "127.0.0.1:7001"}, 409, "127.0.0.1:7001 is a voter already"),
        ({"action": "add", "id": "no-port"}, 400, "id: must be host:port, not &#39;no-port&#39;"),
        ({"action": "add", "id": "127.0.0.1:99999"}, 400, "id: port must be 1..65535"),
        ({"action": "add", "id": ""}, 400, "id: must be host:port"),
        ({"action": "evict", "id": "127.0.0.1:7002"}, 400, "action: must be one of"),
        ({"action": "add", "id": "127.0.0.1:7002", "role": "boss"}, 400, "role: must be"),
    ],
)
async def test_a_refused_member_change_is_shown_on_the_page(
    members_env: tuple[Env, FakeMembers], form: dict[str, str], status: int, shown: str
) -> None:
    env, fake = members_env
    csrf = await sign_in(env)
    before = fake.membership
    answer = await env.client.post(f"{UI}/cluster/members", data={**form, "csrf": csrf})
    text = await answer.text()
    assert answer.status == status, text
    assert answer.content_type == "text/html"
    assert 'role="alert"' in text
    assert shown in text
    assert "Traceback" not in text
    assert fake.membership == before


async def test_member_changes_need_the_csrf_token_and_the_admin(
    members_env: tuple[Env, FakeMembers],
) -> None:
    env, fake = members_env
    await sign_in(env)
    form = {"action": "add", "id": "127.0.0.1:7002", "role": "learner"}
    refused = await env.client.post(f"{UI}/cluster/members", data=form, allow_redirects=False)
    assert refused.status == 403
    await user_holding(env, "public", "rw")  # may write everything in public; not an admin
    env.client.session.cookie_jar.clear()
    alice = await sign_in_as(env, "alice", "alice-pw")
    not_admin = await env.client.post(
        f"{UI}/cluster/members", data={**form, "csrf": alice}, allow_redirects=False
    )
    assert not_admin.status == 403
    assert fake.changes == []
