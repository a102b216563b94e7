"""The console's pages: server-rendered (jinja2), over the same services as the API.

Every form posts to a console route that calls what the API's handler calls
(`NamingService`, `ConfigService`, `AuthService`) with the API's parameter names, so
validation is the API's and so are its error texts. A refused write re-renders its page
with that text and the API's status, and nothing is written; a write that succeeds
redirects (303) to its page with a message saying what happened. On a follower, a write
raises `NotLeaderError` like the API's and the forward middleware replays it on the leader;
pages pass the read barrier first (as the API's `linearizable=true`), so the page a write
redirects to shows it, whichever node renders it.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import time
from collections.abc import Mapping
from dataclasses import replace
from importlib import resources
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web
from multidict import MultiDict

from naraft.api import auth as auth_api
from naraft.api.access import sees_namespace
from naraft.api.admin import NODE, RAFT_BASE, transfer_leader
from naraft.api.auth import AUTH, IDENTITY, Identity
from naraft.api.console.highlight import highlight
from naraft.api.console.session import (
    CONFIG_CLONE_PATH,
    CONFIG_EXPORT_PATH,
    CONFIG_IMPORT_PATH,
    COOKIE_PATH,
    CSRF_COOKIE,
    CSRF_FIELD,
    LOGIN_PATH,
    SESSION_COOKIE,
    csrf_matches,
    expected_csrf,
    new_csrf_cookie,
)
from naraft.api.context import json_response, naming_of
from naraft.api.errors import body_for, status_for
from naraft.api.forward import FORWARD_SESSION, FORWARD_TLS
from naraft.api.members import MEMBERS_NODE, make_change, parse_change, wait_caught_up
from naraft.api.params import Params, raw_instance, read_params
from naraft.api.v1.configs import (
    CONFIG_API,
    MAX_PAGE_SIZE,
    clone_answer,
    config_api_of,
    config_key_of,
    config_params,
    export_configs,
    import_configs,
    policy_of,
    publish,
    search_configs,
    uploaded_fields,
)
from naraft.auth import state as auth_state
from naraft.configs import validate as config_validate
from naraft.errors import InvalidArgumentError, NaraftError, UnauthorizedError
from naraft.naming.model import HealthCheckerType
from naraft.naming.validate import RawCluster, RawService
from naraft.raft import NotLeaderError, Role
from naraft.raft.membership import ChangeKind
from naraft.tls import PLAINTEXT

if TYPE_CHECKING:
    import jinja2

BASE: Final = "/nacos/ui"
HOME: Final = f"{BASE}/services"
PAGE_SIZE: Final = 20
MEMBER_TIMEOUT_SECONDS: Final = 1.0
MEMBER_CATCH_UP_SECONDS: Final = 3.0
"""How long adding a voter waits for the new member to catch up before promoting it (it
stays a learner otherwise): within the forward's deadline, so a form sent to a follower
still gets its answer."""
MAX_MATCHING_EXPORT: Final = config_validate.MAX_IDS
LAST_SEEN: Final = web.AppKey("console_last_seen", dict[str, float])
"""Member id -> monotonic time of its last answer to this node's console."""

_STATIC: Final = {"console.js": "application/javascript", "console.css": "text/css"}


@functools.cache
def _templates() -> jinja2.Environment:
    """The templates, loaded at the first page: a node whose console nobody opens never
    imports jinja2 (about 2 MiB)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("naraft.api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _is_refusal(error: Exception) -> bool:
    """An error the API answers with a 4xx: the caller's input, shown on the page."""
    status = status_for(error)
    return status is not None and 400 <= status < 500


def _render(
    request: web.Request, template: str, *, status: int = 200, **values: object
) -> web.Response:
    csrf = expected_csrf(request)
    new_cookie = None
    if csrf is None:
        csrf = new_cookie = new_csrf_cookie()
    service = request.app.get(AUTH)
    identity = request.get(IDENTITY)
    body = (
        _templates()
        .get_template(template)
        .render(
            base=BASE,
            csrf=csrf,
            csrf_field=CSRF_FIELD,
            auth_on=service is not None and service.enabled,
            user=identity.username if isinstance(identity, Identity) else None,
            admin=isinstance(identity, Identity) and identity.admin,
            message=request.query.get("msg", "")[:300],
            configs_served=CONFIG_API in request.app,
            **values,
        )
    )
    response = web.Response(status=status, text=body, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    if new_cookie is not None:
        response.set_cookie(
            CSRF_COOKIE, new_cookie, path=COOKIE_PATH, httponly=True, samesite="Strict"
        )
    return response


def _done(path: str, params: Mapping[str, str], message: str) -> web.HTTPSeeOther:
    query = urlencode({**{k: v for k, v in params.items() if v}, "msg": message})
    return web.HTTPSeeOther(f"{path}?{query}")


async def _form(request: web.Request, *, config: bool = False) -> Params:
    """A console POST's fields, after its CSRF token is checked."""
    params = await (config_params(request) if config else read_params(request))
    if not csrf_matches(request, params.get(CSRF_FIELD)):
        raise web.HTTPForbidden(
            text="the form's CSRF token does not match this session: reload the page"
        )
    return params


def _page_no(params: Params) -> int:
    text = (params.get("pageNo") or "1").strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 7 else 1


def _pages(count: int, page_no: int, size: int) -> dict[str, int]:
    last = max(1, -(-count // size))
    return {"page": min(page_no, last), "last": last, "count": count}


# ------------------------------------------------------------------ entry and login


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/nacos/")


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound(HOME)


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = _STATIC.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text="no such file")
    data = resources.files("naraft.api.console").joinpath("static", name).read_bytes()
    response = web.Response(body=data, content_type=content_type)
    response.headers["Cache-Control"] = "max-age=300"
    return response


def _next_of(params: Params) -> str:
    target = (params.get("next") or "").strip()
    # only a console path of this node: never an open redirect
    if target.startswith(f"{BASE}/") and "//" not in target and "\\" not in target:
        return target
    return HOME


async def login_page(request: web.Request) -> web.Response:
    params = await read_params(request)
    return _render(request, "login.html", next=_next_of(params), error="", username="")


async def login(request: web.Request) -> web.Response:
    params = await read_params(request)
    service = request.app.get(AUTH)
    target = _next_of(params)
    if service is None or not service.enabled:
        raise web.HTTPSeeOther(target)
    username = (params.get("username") or "").strip()
    try:
        if not username or not params.get("password"):
            raise UnauthorizedError("user not found!")
        token, _identity = await service.login(
            username, params.get("password") or "", request.remote or "unknown"
        )
    except NaraftError as error:
        if not _is_refusal(error):
            raise
        return _render(
            request,
            "login.html",
            status=403,
            next=target,
            error=body_for(error),
            username=username,
        )
    answer = web.HTTPSeeOther(target)
    answer.set_cookie(
        SESSION_COOKIE,
        token,
        path=COOKIE_PATH,
        max_age=service.token_ttl_seconds,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise answer


async def logout(request: web.Request) -> web.Response:
    answer = web.HTTPSeeOther(LOGIN_PATH)
    answer.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    raise answer


# ------------------------------------------------------------------------ cluster


async def cluster_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    return _render(
        request, "cluster.html", status=status, error=error, members=await _members(request)
    )


async def cluster_transfer(request: web.Request) -> web.Response:
    """Leadership transfer: the API's own handler (`POST .../raft/transfer`, `to` blank:
    the leader picks), its refusal shown in words; a follower forwards it as the API's."""
    await _form(request)
    answer = await transfer_leader(request)
    try:
        data = orjson.loads(answer.body if isinstance(answer.body, bytes) else b"{}")
    except orjson.JSONDecodeError:
        data = {}
    if answer.status != 200:
        return await cluster_page(
            request, error=str(data.get("error", "refused")), status=answer.status
        )
    moved = f"leadership moved from {data.get('previous')} to {data.get('leader')}"
    raise _done(f"{BASE}/cluster", {}, moved)


def _json_answer(answer: web.Response) -> dict[str, object]:
    """The JSON body of an API handler's answer (empty when it is not an object)."""
    try:
        data = orjson.loads(answer.body if isinstance(answer.body, bytes) else b"{}")
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


async def cluster_member_change(request: web.Request) -> web.Response:
    """Add (a learner, or a voter: a learner promoted once caught up, as `naraft member
    add` does), promote or remove a member, by the API's own code (`POST
    /naraft/v1/members`); a refusal is shown in its words. Run on the leader: a follower
    forwards the form there, as the API's route."""
    params = await _form(request)
    node = request.app.get(MEMBERS_NODE)
    if node is None:
        return await cluster_page(request, error="this node takes no member changes", status=404)
    status = node.status
    if status.role is not Role.LEADER and status.leader is not None:
        raise NotLeaderError(status.leader)  # the forward middleware sends it to the leader
    action = (params.get("action") or "").strip()
    member = (params.get("id") or "").strip()
    role = (params.get("role") or "voter").strip()
    if action == "add" and role not in ("voter", "learner"):
        return await cluster_page(request, error="role: must be voter or learner", status=400)
    change = parse_change(member, action)
    if isinstance(change, web.Response):
        return await cluster_page(
            request, error=str(_json_answer(change).get("error")), status=change.status
        )
    membership = status.membership
    known_learner = membership is not None and member in membership.learners
    if action == "add" and membership is not None and member in membership.voters:
        return await cluster_page(request, error=f"{member} is a voter already", status=409)
    if action == "add" and known_learner and role == "learner":
        return await cluster_page(request, error=f"{member} is a learner already", status=409)
    data: dict[str, object] = {}
    if action != "add" or not known_learner:
        answer = await make_change(node, change)
        if answer.status != 200:
            error = str(_json_answer(answer).get("error", "refused"))
            return await cluster_page(request, error=error, status=answer.status)
        data = _json_answer(answer)
    if action == "add" and role == "voter":
        if not await wait_caught_up(node, member, MEMBER_CATCH_UP_SECONDS):
            return await cluster_page(
                request,
                error=f"{member} is a learner but has not caught up within "
                f"{MEMBER_CATCH_UP_SECONDS:g} s (is it running with --join?): promote it "
                "once its lag is 0",
                status=409,
            )
        answer = await make_change(node, replace(change, kind=ChangeKind.PROMOTE))
        data = _json_answer(answer)
        if answer.status != 200:
            error = f"{member} is a learner; promoting it was refused: {data.get('error')}"
            return await cluster_page(request, error=error, status=answer.status)
    voters = data.get("voters")
    listed = ", ".join(str(v) for v in voters) if isinstance(voters, list) else "?"
    message = {
        "add": f"{member} is a voter" if role == "voter" else f"{member} is a learner",
        "promote": f"{member} is a voter",
        "remove": f"{member} was removed",
    }[action]
    raise _done(f"{BASE}/cluster", {}, f"{message}; voters are {listed}")


async def cluster_members(request: web.Request) -> web.Response:
    return json_response({"members": await _members(request)})


async def _member_state(request: web.Request, member: str) -> dict[str, object] | None:
    session = request.app.get(FORWARD_SESSION)
    if session is None:
        return None
    tls = request.app.get(FORWARD_TLS, PLAINTEXT)
    try:
        async with session.get(
            f"{tls.url(member)}{RAFT_BASE}/state",
            timeout=aiohttp.ClientTimeout(total=MEMBER_TIMEOUT_SECONDS),
            ssl=tls.ssl,
            server_hostname=tls.server_hostname,
        ) as answer:
            if answer.status != 200:
                return None
            data = await answer.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _catching_up(state: Mapping[str, object] | None) -> str | None:
    """The phase of a digest catch-up under way (installing the leader's state), or None."""
    progress = state.get("catchUp") if state else None
    phase = progress.get("phase") if isinstance(progress, dict) else None
    return phase if isinstance(phase, str) and phase != "idle" else None


def _index(state: Mapping[str, object], name: str) -> int:
    value = state.get(name)
    return value if isinstance(value, int) else 0


async def _members(request: web.Request) -> list[dict[str, object]]:
    """Each member's Raft state as it answers it, read now (unreachable: None)."""
    node = request.app.get(NODE)
    if node is None:
        return []
    members = sorted(node.members)
    membership = node.status.membership
    states = await asyncio.gather(*(_member_state(request, m) for m in members))
    seen = request.app.get(LAST_SEEN, {})
    now = time.monotonic()
    top = max((_index(s, "commitIndex") for s in states if s is not None), default=0)
    rows = []
    for member, state in zip(members, states, strict=True):
        if state is not None:
            seen[member] = now
        last = seen.get(member)
        rows.append(
            {
                "id": member,
                "self": member == node.status.id,
                "kind": (
                    "learner"
                    if membership is not None and member in membership.learners
                    else "voter"
                ),
                "reachable": state is not None,
                "role": state.get("role", "?") if state else "unreachable",
                "term": state.get("term") if state else None,
                "leader": state.get("leader") if state else None,
                "commitIndex": state.get("commitIndex") if state else None,
                "appliedIndex": state.get("appliedIndex") if state else None,
                "lastLogIndex": state.get("lastLogIndex") if state else None,
                "lag": top - _index(state, "appliedIndex") if state else None,
                "diskFull": bool(state.get("diskFull")) if state else False,
                "catchingUp": _catching_up(state),
                "lastContact": None if last is None else round(now - last, 1),
            }
        )
    return rows


# ----------------------------------------------------------------------- services


async def services_page(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await naming.read_barrier()  # a page shows every acknowledged write, its own included
    page_no = _page_no(params)
    query = {
        "namespaceId": (params.get("namespaceId") or "").strip(),
        "groupNameParam": (params.get("groupNameParam") or "").strip(),
        "serviceNameParam": (params.get("serviceNameParam") or "").strip(),
    }
    error = ""
    found: dict[str, object] | list[dict[str, object]] = {"count": 0, "serviceList": []}
    try:
        found = naming.catalog_services(
            namespace_id=query["namespaceId"],
            group_name=query["groupNameParam"],
            service_name=query["serviceNameParam"],
            page_no=str(page_no),
            page_size=str(PAGE_SIZE),
        )
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        error = body_for(failure)
    assert isinstance(found, dict)
    count = found["count"]
    assert isinstance(count, int)
    if page_no > 1 and page_no > _pages(count, page_no, PAGE_SIZE)["last"]:
        page_no = _pages(count, page_no, PAGE_SIZE)["last"]
    return _render(
        request,
        "services.html",
        status=400 if error else 200,
        error=error,
        query=query,
        services=found["serviceList"],
        paging=_pages(count, page_no, PAGE_SIZE),
        page_query=urlencode(query),
        namespaces=_namespace_choices(request),
    )


def _namespace_choices(request: web.Request) -> list[tuple[str, str]]:
    listed = naming_of(request).namespaces()["data"]
    assert isinstance(listed, list)
    return [
        (str(n["namespace"]), str(n["namespaceShowName"]))
        for n in listed
        if sees_namespace(request, str(n["namespace"]))
    ]


def _service_query(params: Params) -> dict[str, str]:
    return {
        "namespaceId": (params.get("namespaceId") or "").strip(),
        "groupName": (params.get("groupName") or "").strip(),
        "serviceName": (params.get("serviceName") or "").strip(),
    }


async def service_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await naming.read_barrier()
    query = _service_query(params)
    page_no = _page_no(params)
    raw = raw_instance(params)
    detail = naming.catalog_service(
        raw_service_of(query["namespaceId"], query["groupName"], query["serviceName"])
    )
    instances = naming.catalog_instances(
        namespace_id=raw.namespace_id,
        group_name=raw.group_name,
        service_name=raw.service_name,
        cluster_name=None,
        page_no=str(page_no),
        page_size=str(PAGE_SIZE),
    )
    count = instances["count"]
    assert isinstance(count, int)
    return _render(
        request,
        "service.html",
        status=status,
        error=error,
        query=query,
        detail=detail,
        instances=instances["list"],
        paging=_pages(count, page_no, PAGE_SIZE),
        page_query=urlencode(query),
        checker_types=[t.value for t in HealthCheckerType],
    )


def raw_service_of(namespace: str, group: str, name: str) -> RawService:
    return RawService(namespace_id=namespace, group_name=group, service_name=name)


async def instance_action(request: web.Request) -> web.Response:
    """Edit weight, enable or disable (the API's PATCH /instance), or deregister (its
    DELETE /instance), for one instance."""
    params = await _form(request)
    naming = naming_of(request)
    action = params.get("action")
    query = _service_query(params)
    where = f"{params.get('ip')}:{params.get('port')}"
    try:
        if action == "deregister":
            await naming.deregister_instance(raw_instance(params))
            message = f"deregistered {where}"
        elif action in ("weight", "enable", "disable"):
            raw = raw_instance(params)
            if action == "weight":
                raw = replace(raw, enabled=None)
            else:
                raw = replace(raw, weight=None, enabled="true" if action == "enable" else "false")
            await naming.patch_instance(raw)
            message = {
                "weight": f"set the weight of {where} to {(params.get('weight') or '').strip()}",
                "enable": f"enabled {where}",
                "disable": f"disabled {where}",
            }[action]
        else:
            raise web.HTTPBadRequest(text="action must be weight, enable, disable or deregister")
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        status = status_for(failure) or 400
        return await service_page(request, error=body_for(failure), status=status)
    raise _done(f"{BASE}/service", query, message)


async def cluster_update(request: web.Request) -> web.Response:
    """One cluster row of the service page: its health checker, check port, port flag and
    metadata, by the API's cluster update (`PUT /nacos/v1/ns/cluster`). A checker whose
    type is unchanged keeps the fields the page does not show (an HTTP checker's headers and
    code, a MYSQL one's credentials); the HTTP path is the page's."""
    params = await _form(request)
    naming = naming_of(request)
    query = _service_query(params)
    name = (params.get("clusterName") or "").strip()
    kind = (params.get("checker") or "").strip().upper()
    try:
        detail = naming.catalog_service(
            raw_service_of(query["namespaceId"], query["groupName"], query["serviceName"])
        )
        clusters = detail["clusters"]
        assert isinstance(clusters, list)
        current: dict[str, object] = next(
            (c["healthChecker"] for c in clusters if c["name"] == name), {}
        )
        checker = {**current, "type": kind} if current.get("type") == kind else {"type": kind}
        if kind == "HTTP":
            checker["path"] = (params.get("path") or "").strip()
        flag = params.get("useInstancePort4Check") == "true"
        raw = RawCluster(
            namespace_id=query["namespaceId"],
            group_name=query["groupName"],
            service_name=query["serviceName"],
            cluster_name=name,
            check_port=params.get("checkPort"),
            use_instance_port="true" if flag else "false",
            health_checker=orjson.dumps(checker).decode(),
            metadata=params.get("metadata") or "",
        )
        await naming.update_cluster(raw)
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        status = status_for(failure) or 400
        return await service_page(request, error=body_for(failure), status=status)
    raise _done(f"{BASE}/service", query, f"updated cluster {name}")


async def service_get(request: web.Request) -> web.Response:
    try:
        return await service_page(request)
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return _render(
            request, "error.html", status=status_for(failure) or 400, error=body_for(failure)
        )


# ------------------------------------------------------------------------ configs


def _config_query(params: Params) -> dict[str, str]:
    return {
        "tenant": (params.get("tenant") or "").strip(),
        "dataId": (params.get("dataId") or "").strip(),
        "group": (params.get("group") or "").strip(),
    }


def _search_of(params: Params) -> str:
    return "accurate" if params.get("search") == "accurate" else "blur"


def _search_params(query: Mapping[str, str], search: str, page_no: int, size: int) -> Params:
    """The config search API's parameters for the page's search: `blur` matches a part of
    the data ID and group (`*` wildcards as given), `accurate` the whole of them."""
    pattern = {
        "dataId": query["dataId"] or ("*" if search == "blur" else ""),
        "group": query["group"] or ("*" if search == "blur" else ""),
    }
    if search == "blur":
        pattern = {k: v if "*" in v else f"*{v}*" for k, v in pattern.items()}
    return Params(
        MultiDict(
            {**pattern, "tenant": query["tenant"], "pageNo": str(page_no), "pageSize": str(size)}
        )
    )


async def configs_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    if CONFIG_API not in request.app:
        raise web.HTTPNotFound(text="this node serves no config API")
    params = await read_params(request)
    query = _config_query(params)
    search = _search_of(params)
    page_no = _page_no(params)
    found: list[object] = []
    total = 0
    try:
        records, total, _, _ = await search_configs(
            config_api_of(request), _search_params(query, search, page_no, PAGE_SIZE), search
        )
        found = list(records)
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        error, status = error or body_for(failure), 400
    return _render(
        request,
        "configs.html",
        status=status,
        error=error,
        query=query,
        search=search,
        configs=found,
        paging=_pages(total, page_no, PAGE_SIZE),
        page_query=urlencode({**query, "search": search}),
        namespaces=_namespace_choices(request),
        policies=("ABORT", "SKIP", "OVERWRITE"),
        export_path=CONFIG_EXPORT_PATH,
        import_path=CONFIG_IMPORT_PATH,
        clone_path=CONFIG_CLONE_PATH,
    )


async def _export_ids(request: web.Request, params: Params, scope: str) -> str | None:
    """The ids (comma-separated) an export of `scope` takes: None for the whole namespace,
    the ticked rows' (`id`) for `selected`, the search's matches for `matching`."""
    if scope == "all":
        return None
    if scope == "selected":
        ticked = [v.strip() for v in request.query.getall("id", []) if v.strip()]
        if not ticked:
            raise InvalidArgumentError(
                "id", "at least one", message="id: tick at least one config to export"
            )
        return ",".join(ticked[: MAX_MATCHING_EXPORT + 1])
    if scope != "matching":
        raise InvalidArgumentError(
            "scope", "all, matching or selected", message="scope: must be all, matching or selected"
        )
    api = config_api_of(request)
    query, search = _config_query(params), _search_of(params)
    ids: list[str] = []
    page_no = 1
    while True:
        records, total, _, _ = await search_configs(
            api, _search_params(query, search, page_no, MAX_PAGE_SIZE), search
        )
        if total > MAX_MATCHING_EXPORT:
            raise InvalidArgumentError(
                "search",
                f"at most {MAX_MATCHING_EXPORT} matches",
                message=f"{total} configs match the search, more than the "
                f"{MAX_MATCHING_EXPORT} an export of matches takes: narrow the search or "
                "export the whole namespace",
            )
        ids.extend(str(r.id) for r in records)
        if not records or len(ids) >= total:
            break
        page_no += 1
    if not ids:
        raise InvalidArgumentError(
            "search", "a match", message="no config matches the search: nothing to export"
        )
    return ",".join(ids)


async def config_export(request: web.Request) -> web.StreamResponse:
    """The console's zip of the namespace shown (`scope`: `all`, the search's `matching`
    configs, or the `selected` rows), written by the API's export (`GET
    /nacos/v1/cs/configs?exportV2=true`, or `export=true` with `format=v1`)."""
    if CONFIG_API not in request.app:
        raise web.HTTPNotFound(text="this node serves no config API")
    params = await read_params(request)
    try:
        ids = await _export_ids(request, params, (params.get("scope") or "all").strip())
        export = {"tenant": (params.get("tenant") or "").strip()}
        if ids is not None:
            export["ids"] = ids
        return await export_configs(
            config_api_of(request), Params(MultiDict(export)), v2=params.get("format") != "v1"
        )
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await configs_page(
            request, error=body_for(failure), status=status_for(failure) or 400
        )


def _field_text(fields: Mapping[str, bytes], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else value[:1024].decode("utf-8", "replace")


async def config_import(request: web.Request) -> web.Response:
    """A zip uploaded (multipart: `file`, `policy`, the CSRF token) into the namespace the
    query string names (`tenant`, the one the permission was checked on), by the API's
    import (`POST /nacos/v1/cs/configs?import=true`); its counts, or its refusal, shown."""
    if CONFIG_API not in request.app:
        raise web.HTTPNotFound(text="this node serves no config API")
    fields = await uploaded_fields(request)
    params = await read_params(request)  # (a form sent without a file may be urlencoded)
    if not csrf_matches(request, _field_text(fields, CSRF_FIELD) or params.get(CSRF_FIELD)):
        raise web.HTTPForbidden(
            text="the form's CSRF token does not match this session: reload the page"
        )
    tenant = (params.get("tenant") or "").strip()
    if not fields.get("file"):
        return await configs_page(
            request, error="file: choose the zip to import (a Nacos console export)", status=400
        )
    imported = {"namespace": tenant, "policy": _field_text(fields, "policy") or "ABORT"}
    try:
        answer = await import_configs(request, Params(MultiDict(imported)))
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await configs_page(
            request, error=body_for(failure), status=status_for(failure) or 400
        )
    return await _copied(request, answer, tenant, ("import", "the zip's", "imported"))


async def _copied(
    request: web.Request, answer: web.Response, tenant: str, words: tuple[str, str, str]
) -> web.Response:
    """An import's or clone's RestResult shown: its counts on the configs page of `tenant`,
    or its refusal. `words`: the operation, whose configs, what was done."""
    what, whose, done = words
    result = _json_answer(answer)
    data = result.get("data")
    counts = data if isinstance(data, dict) else {}
    if result.get("code") != 200:
        return await configs_page(
            request, error=f"{what} refused: {result.get('message')}", status=400
        )
    failed = counts.get("failData")
    if isinstance(failed, list) and failed:
        names = ", ".join(f"{f.get('group')}/{f.get('dataId')}" for f in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        return await configs_page(
            request,
            error=f"policy ABORT: {len(failed)} of {whose} configs exist already "
            f"({names}{more}); nothing was {done}",
            status=409,
        )
    message = f"{done} {counts.get('succCount', 0)}, skipped {counts.get('skipCount', 0)}, failed 0"
    raise _done(f"{BASE}/configs", {"tenant": tenant}, message)


def _ticked_ids(values: list[str]) -> set[int]:
    """The config ids ticked (`id`), at most `MAX_IDS`; anything but an id is passed over."""
    ids = {
        int(v)
        for v in values[: config_validate.MAX_IDS]
        if v.isascii() and v.isdigit() and len(v) <= 19  # int() of 5,000 digits raises
    }
    return {i for i in ids if i < 1 << 63}


async def clone_page(request: web.Request) -> web.Response:
    """The ticked configs of the namespace shown (`tenant`; ids of other namespaces are
    passed over, as the export's), each with the name its copy takes, the namespace to copy
    into and what to do with configs that exist there: Nacos's clone dialog."""
    if CONFIG_API not in request.app:
        raise web.HTTPNotFound(text="this node serves no config API")
    params = await read_params(request)
    tenant = config_validate.request_tenant(params.get("tenant"))
    ids = _ticked_ids(request.query.getall("id", []))
    api = config_api_of(request)
    await api.service.read_barrier()
    chosen = sorted(
        (r for r in api.service.state.configs() if r.key.tenant == tenant and r.id in ids),
        key=lambda record: record.id,
    )
    if not chosen:
        return await configs_page(
            request, error="id: tick at least one config to clone", status=400
        )
    return _render(
        request,
        "clone.html",
        tenant=tenant,
        chosen=chosen,
        namespaces=_namespace_choices(request),
        policies=("ABORT", "SKIP", "OVERWRITE"),
        clone_path=CONFIG_CLONE_PATH,
    )


async def config_clone(request: web.Request) -> web.Response:
    """The clone dialog's form: each `cfgId` copied into `tenant` (the namespace chosen, the
    one the write permission was checked on) as `dataId-<id>` in `group-<id>`, by the API's
    clone (`POST /nacos/v1/cs/configs?clone=true`); its counts, or its refusal, shown."""
    if CONFIG_API not in request.app:
        raise web.HTTPNotFound(text="this node serves no config API")
    params = await _form(request)
    form = await request.post()
    items: list[object] = [
        {"cfgId": i, "dataId": form.get(f"dataId-{i}"), "group": form.get(f"group-{i}")}
        for i in form.getall("cfgId", [])
        if isinstance(i, str)
    ]
    tenant = (params.get("tenant") or "").strip()
    try:
        sources = config_validate.clone_items(items)
        answer = await clone_answer(request, tenant, policy_of(params.get("policy")), sources)
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await configs_page(
            request, error=body_for(failure), status=status_for(failure) or 400
        )
    return await _copied(request, answer, tenant, ("clone", "the copies'", "cloned"))


async def config_page(
    request: web.Request, *, error: str = "", status: int = 200, draft: str | None = None
) -> web.Response:
    params = await config_params(request)
    query = _config_query(params)
    api = config_api_of(request)
    record = None
    if query["dataId"]:
        key = config_key_of(params, params.get("tenant"))
        await api.service.read_barrier()
        record = api.service.state.get(key)
    return _render(
        request,
        "config.html",
        status=status,
        error=error,
        query=query,
        record=record,
        draft=draft if draft is not None else (record.content if record is not None else ""),
        draft_type=(params.get("type") or (record.type if record is not None else "text")),
        highlighted=highlight(record.content, record.type) if record is not None else "",
        types=sorted(config_validate.CONFIG_TYPES),
    )


def line_diff(old: str, new: str) -> list[tuple[str, str]]:
    """(kind, line) pairs of a unified diff: kind is `add`, `del`, `hunk` or `same`."""
    lines = []
    for line in difflib.unified_diff(
        old.splitlines(), new.splitlines(), "current", "new", lineterm="", n=3
    ):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        lines.append((kind, line))
    return lines


async def config_preview(request: web.Request) -> web.Response:
    """The edit's diff against the current version, before anything is written; the
    publish it leads to carries the current MD5, so it replaces exactly what was shown."""
    params = await _form(request, config=True)
    api = config_api_of(request)
    query = _config_query(params)
    # a textarea sends CRLF line breaks (HTML's form encoding); configs are kept with LF,
    # as Nacos's console and clients send them
    content = _lf(params.get("content"))
    try:
        raw = config_validate.RawPublish(
            data_id=params.get("dataId"),
            group=params.get("group"),
            tenant=config_validate.request_tenant(params.get("tenant")),
            content=content,
            type=params.get("type"),
        )
        api.service.parse_publish(raw)  # the API's checks, nothing proposed
        await api.service.read_barrier()
        record = api.service.state.get(config_key_of(params, params.get("tenant")))
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await config_page(
            request, error=body_for(failure), status=status_for(failure) or 400, draft=content
        )
    return _render(
        request,
        "preview.html",
        query=query,
        record=record,
        content=content,
        type=params.get("type") or "text",
        highlighted=highlight(content, params.get("type")),
        diff=line_diff(record.content if record is not None else "", content),
    )


def _lf(content: str | None) -> str:
    return (content or "").replace("\r\n", "\n")


async def config_publish(request: web.Request) -> web.Response:
    form = await _form(request, config=True)
    params = form.with_value("content", _lf(form.get("content")))  # (forms send CRLF)
    query = _config_query(params)
    try:
        await publish(request, params, params.get("tenant"), route="console.publish")
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await config_page(
            request,
            error=body_for(failure),
            status=status_for(failure) or 400,
            draft=params.get("content") or "",
        )
    raise _done(f"{BASE}/config", query, f"published {query['dataId']}")


async def config_delete(request: web.Request) -> web.Response:
    params = await _form(request, config=True)
    query = _config_query(params)
    api = config_api_of(request)
    try:
        key = config_key_of(params, params.get("tenant"))
        await api.service.delete(key, src_ip=request.remote or "")
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await config_page(request, error=body_for(failure), status=400)
    raise _done(f"{BASE}/configs", {"tenant": query["tenant"]}, f"deleted {query['dataId']}")


async def history_page(request: web.Request) -> web.Response:
    params = await config_params(request)
    query = _config_query(params)
    api = config_api_of(request)
    key = config_key_of(params, params.get("tenant"))
    await api.service.read_barrier()
    records = api.service.state.history_of(key)[:200]
    return _render(request, "history.html", query=query, history=records)


async def history_diff(request: web.Request) -> web.Response:
    """Two versions side by side as a diff: `nid` (older) and `nid2` (newer; blank: the
    current content)."""
    params = await config_params(request)
    query = _config_query(params)
    api = config_api_of(request)
    key = config_key_of(params, params.get("tenant"))
    await api.service.read_barrier()
    state = api.service.state

    def version(field: str) -> tuple[str, str]:
        text = (params.get(field) or "").strip()
        if not text:
            current = state.get(key)
            return "current", current.content if current is not None else ""
        record = state.history_record(config_validate.long_id(field, text))
        if record is None or record.key != key:
            raise web.HTTPNotFound(text=f"no version {text} of this config")
        return f"version {record.nid}", record.content

    old_name, old = version("nid")
    new_name, new = version("nid2")
    return _render(
        request,
        "diff.html",
        query=query,
        old_name=old_name,
        new_name=new_name,
        diff=line_diff(old, new),
    )


async def config_rollback(request: web.Request) -> web.Response:
    """Publish a history version's content again (the API's publish, through the service)."""
    params = await _form(request, config=True)
    query = _config_query(params)
    api = config_api_of(request)
    key = config_key_of(params, params.get("tenant"))
    nid = config_validate.long_id("nid", params.get("nid"))
    await api.service.read_barrier()
    record = api.service.state.history_record(nid)
    if record is None or record.key != key:
        raise web.HTTPNotFound(text=f"no version {nid} of this config")
    current = api.service.state.get(key)
    raw = config_validate.RawPublish(
        data_id=key.data_id,
        group=key.group,
        tenant=key.tenant,
        content=record.content,
        app_name=record.app_name,
        type=current.type if current is not None else None,
    )
    await api.service.publish(raw, src_ip=request.remote or "")
    raise _done(f"{BASE}/config", query, f"rolled {query['dataId']} back to version {nid}")


# --------------------------------------------------------------------- namespaces


async def namespaces_page(
    request: web.Request, *, error: str = "", status: int = 200
) -> web.Response:
    await naming_of(request).read_barrier()
    listed = naming_of(request).namespaces()["data"]
    assert isinstance(listed, list)
    visible = [n for n in listed if sees_namespace(request, str(n["namespace"]))]
    return _render(request, "namespaces.html", status=status, error=error, namespaces=visible)


async def namespaces_action(request: web.Request) -> web.Response:
    """Create, edit or delete a namespace: the API's `/console/namespaces` calls."""
    params = await _form(request)
    naming = naming_of(request)
    action = params.get("action")
    try:
        if action == "create":
            created = await naming.create_namespace(
                custom_id=params.get("customNamespaceId"),
                show_name=params.get("namespaceName"),
                description=params.get("namespaceDesc"),
            )
            message = f"created namespace {created}"
        elif action == "update":
            await naming.update_namespace(
                namespace_id=params.get("namespaceId"),
                show_name=params.get("namespaceShowName"),
                description=params.get("namespaceDesc"),
            )
            message = f"saved namespace {params.get('namespaceId')}"
        elif action == "delete":
            await naming.delete_namespace(params.get("namespaceId"))
            message = f"deleted namespace {params.get('namespaceId')}"
        else:
            raise web.HTTPBadRequest(text="action must be create, update or delete")
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await namespaces_page(
            request, error=body_for(failure), status=status_for(failure) or 400
        )
    raise _done(f"{BASE}/namespaces", {}, message)


# -------------------------------------------------------- users, roles, permissions

_AUTH_ACTIONS: Final = {
    "create_user": auth_api.user_create,
    "delete_user": auth_api.user_delete,
    "add_role": auth_api.role_add,
    "delete_role": auth_api.role_delete,
    "add_permission": auth_api.permission_add,
    "delete_permission": auth_api.permission_delete,
}


async def users_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    service = request.app.get(AUTH)
    if service is None or not service.enabled:
        return _render(
            request, "error.html", status=404, error="auth is off: there are no users to manage"
        )
    await naming_of(request).read_barrier()  # (the one replica's barrier: auth state too)
    return _render(
        request,
        "users.html",
        status=status,
        error=error,
        users=[u.username for u in auth_state.users(service.datums)],
        roles=[(b.role, b.username) for b in auth_state.role_bindings(service.datums)],
        permissions=[
            (p.role, p.resource, p.action) for p in auth_state.permissions(service.datums, None)
        ],
    )


async def users_action(request: web.Request) -> web.Response:
    """The auth API's writes (`/nacos/v1/auth/users`, `/roles`, `/permissions`), by the
    functions its handlers call; the message is the API's."""
    params = await _form(request)
    # `op`, since the permission API's own `action` (r, w, rw) travels in the same form
    action = _AUTH_ACTIONS.get(params.get("op") or "")
    if action is None:
        raise web.HTTPBadRequest(text=f"op must be one of {', '.join(_AUTH_ACTIONS)}")
    try:
        message = await action(request, params)
    except NaraftError as failure:
        if not _is_refusal(failure):
            raise
        return await users_page(request, error=body_for(failure), status=status_for(failure) or 400)
    raise _done(f"{BASE}/users", {}, message)


def console_routes() -> list[web.RouteDef]:
    return [
        web.get("/", root, allow_head=True),
        web.get("/nacos", root),
        web.get("/nacos/", home),
        web.get("/nacos/index.html", root),  # Nacos's own console address, as users bookmark it
        web.get(LOGIN_PATH, login_page),
        web.post(LOGIN_PATH, login),
        web.post(f"{BASE}/logout", logout),
        web.get(f"{BASE}/static/{{name}}", static),
        web.get(f"{BASE}/cluster", cluster_page),
        web.get(f"{BASE}/cluster/members", cluster_members),
        web.post(f"{BASE}/cluster/transfer", cluster_transfer),
        web.post(f"{BASE}/cluster/members", cluster_member_change),
        web.get(f"{BASE}/services", services_page),
        web.get(f"{BASE}/service", service_get),
        web.post(f"{BASE}/instance", instance_action),
        web.post(f"{BASE}/service/cluster", cluster_update),
        web.get(f"{BASE}/configs", configs_page),
        web.get(f"{BASE}/config", config_page),
        web.post(f"{BASE}/config/preview", config_preview),
        web.post(f"{BASE}/config", config_publish),
        web.post(f"{BASE}/config/delete", config_delete),
        web.get(f"{BASE}/config/history", history_page),
        web.get(f"{BASE}/config/diff", history_diff),
        web.post(f"{BASE}/config/rollback", config_rollback),
        web.get(CONFIG_EXPORT_PATH, config_export),
        web.post(CONFIG_IMPORT_PATH, config_import),
        web.get(CONFIG_CLONE_PATH, clone_page),
        web.post(CONFIG_CLONE_PATH, config_clone),
        web.get(f"{BASE}/namespaces", namespaces_page),
        web.post(f"{BASE}/namespaces", namespaces_action),
        web.get(f"{BASE}/users", users_page),
        web.post(f"{BASE}/users", users_action),
    ]


CONFIG_FORM_PATHS: Final = (
    f"{BASE}/config/preview",
    f"{BASE}/config",
    f"{BASE}/config/delete",
    f"{BASE}/config/rollback",
    CONFIG_IMPORT_PATH,
)
"""Console routes whose forms carry a config's content or a zip of configs: the config body
limit applies (the API's import has the same)."""
