"""`/nacos/v1/cs/*`: the Nacos 1.x config Open API, as a plain route table.

`CONFIG_ROUTES` lists every route with the permission it needs (`action` r or w on the
resource `namespace:group:dataId`, read from the request by `resource_of`), so an auth
layer can check each without knowing the handlers. Shapes, defaults and statuses follow
Nacos 1.4.8's `ConfigController`, `ConfigServletInner`, `HistoryController`,
`ListenerController` and `LongPollingService` (docs/nacos-compat.md#config).

Reads go through the read barrier (a follower forwards them to the leader), so a read that
starts after an acknowledged publish sees it on every node. Long polls are held by the node
they reach (`ListenerHub`) and never forwarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from functools import partial
from typing import Final, Literal

from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import parse_content_disposition

from naraft.api.auth import may_read
from naraft.api.context import json_response
from naraft.api.edge import GuardedHandler, HeldResponse
from naraft.api.errors import spring_error
from naraft.api.params import Params, read_params
from naraft.configs import archive, validate
from naraft.configs.archive import ArchiveError, ArchiveLimits, ExportItem
from naraft.configs.listeners import ListenerHub, encode_changed, parse_listening
from naraft.configs.model import ConfigKey, ConfigRecord, HistoryRecord
from naraft.configs.service import ConfigService, ImportItemError, ImportOutcome, SamePolicy
from naraft.configs.state import ConfigState
from naraft.configs.validate import RawPublish
from naraft.errors import InvalidArgumentError, NaraftError, UnauthorizedError, UnsupportedError

BASE: Final = "/nacos/v1/cs"
CONFIGS_PATH: Final = f"{BASE}/configs"
CONFIG_LISTENER_PATH: Final = f"{BASE}/configs/listener"
LISTENER_PATH: Final = f"{BASE}/listener"
HISTORY_PATH: Final = f"{BASE}/history"
HISTORY_PREVIOUS_PATH: Final = f"{BASE}/history/previous"
MAX_PAGE_SIZE: Final = 500  # Nacos caps history pages at 500; naraft caps config pages too
POLL_ERROR_DELAY_SECONDS: Final = 2.0
"""A failed long poll (one sent with `Long-Pulling-Timeout`) is answered after this long, the
Java client's penalty time: the npm client retries a failed request at once, so an instant
error would make it spin."""
LONG_POLL_HEADER: Final = "Long-Pulling-Timeout"
NO_HANGUP_HEADER: Final = "Long-Pulling-Timeout-No-Hangup"

_CONTENT_TYPES: Final = {
    "json": "application/json;charset=UTF-8",
    "xml": "text/xml;charset=UTF-8",
    "html": "text/html;charset=UTF-8",
}


@dataclass(slots=True, kw_only=True)
class ConfigApi:
    """What the config routes need: the service, this node's listener hub, and a counter
    of requests by route (`count(route_name)`)."""

    service: ConfigService
    hub: ListenerHub
    count: Callable[[str], None] = field(default=lambda _route: None)


CONFIG_API: Final = web.AppKey("config_api", ConfigApi)


def config_api_of(request: web.Request) -> ConfigApi:
    return request.app[CONFIG_API]


async def config_params(request: web.Request) -> Params:
    """Parameters with the config limit on a value (content) instead of the naming one."""
    limit = config_api_of(request).service.settings.max_body_bytes
    return await read_params(request, max_value_chars=limit)


def _key(params: Params) -> ConfigKey:
    return config_key_of(params, params.get("tenant"))


def config_key_of(params: Params, tenant: str | None) -> ConfigKey:
    """The config `params` name (`dataId`, `group`) in the namespace `tenant`."""
    return validate.config_key(
        params.get("dataId"), params.get("group"), validate.request_tenant(tenant)
    )


def _true() -> web.Response:
    return json_response(True)


def _ms_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def config_info(record: ConfigRecord, *, with_content: bool = True) -> dict[str, object]:
    """Nacos's `ConfigInfo` (its id as text, as Nacos serializes it); without the content,
    `content` and `md5` are null."""
    key = record.key
    return {
        "id": str(record.id),
        "dataId": key.data_id,
        "group": key.group,
        "content": record.content if with_content else None,
        "md5": record.md5 if with_content else None,
        "tenant": key.tenant,
        "appName": record.app_name,
        "type": record.type,
    }


def _config_all_info(record: ConfigRecord) -> dict[str, object]:
    return {
        **config_info(record),
        "createTime": record.create_ms,
        "modifyTime": record.modify_ms,
        "createUser": record.src_user or None,
        "createIp": record.src_ip or None,
        "desc": record.desc or None,
        "use": None,
        "effect": None,
        "schema": None,
        "configTags": record.config_tags or None,
    }


def history_info(record: HistoryRecord, *, with_content: bool) -> dict[str, object]:
    key = record.key
    return {
        "id": str(record.nid),
        "lastId": -1,
        "dataId": key.data_id,
        "group": key.group,
        "tenant": key.tenant,
        "appName": record.app_name,
        "md5": record.md5 if with_content else None,
        "content": record.content if with_content else None,
        "srcIp": record.src_ip,
        "srcUser": record.src_user or None,
        "opType": record.op_type,
        "createdTime": _ms_iso(record.created_ms),
        "lastModifiedTime": _ms_iso(record.created_ms),
    }


def page_of(
    items: list[dict[str, object]], total: int, page_no: int, page_size: int
) -> dict[str, object]:
    """Nacos's `Page`."""
    return {
        "totalCount": total,
        "pageNumber": page_no,
        "pagesAvailable": (total + page_size - 1) // page_size,
        "pageItems": items,
    }


def _no_cache(response: web.Response) -> web.Response:
    response.headers["Pragma"] = "no-cache"
    response.headers["Expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    response.headers["Cache-Control"] = "no-cache,no-store"
    return response


def refuse_gray(request: web.Request, params: Params) -> None:
    """501 for a gray (beta) or tag config request. As in Nacos, `beta` selects the gray
    config only as `beta=true`; any other value is an ordinary request."""
    if _flag(params, "beta") or request.headers.get("betaIps", "").strip():
        raise UnsupportedError(validate.UNSUPPORTED_GRAY)
    tag = params.get("tag")
    if tag is not None and tag.strip():
        raise UnsupportedError(validate.UNSUPPORTED_TAG)


# --------------------------------------------------------------------------- /configs


async def get_configs(request: web.Request) -> web.Response:
    """Get one config's content, its detail (`show=all`) or a page (`search=`)."""
    params = await config_params(request)
    api = config_api_of(request)
    if _flag(params, "export") or _flag(params, "exportV2"):
        return await export_configs(api, params, v2=_flag(params, "exportV2"))
    refuse_gray(request, params)
    search = params.get("search")
    if search is not None:
        api.count("configs.search")
        return await _search(api, params, search)
    key = _key(params)
    await api.service.read_barrier()
    record = api.service.state.get(key)
    if params.get("show") == "all":
        api.count("configs.detail")
        return json_response(None) if record is None else json_response(_config_all_info(record))
    api.count("configs.get")
    if record is None:
        return _no_cache(web.Response(status=404, text="config data not exist\n"))
    response = web.Response(text=record.content)
    response.headers["Content-Type"] = _CONTENT_TYPES.get(record.type, "text/plain;charset=UTF-8")
    response.headers["Config-Type"] = record.type
    response.headers["Content-MD5"] = record.md5
    response.headers["Last-Modified"] = formatdate(record.modify_ms / 1000, usegmt=True)
    return _no_cache(response)


def _matches(pattern: str, value: str, *, blur: bool) -> bool:
    """Blank matches everything; with `blur`, `*` is a wildcard (Nacos's LIKE)."""
    if not pattern:
        return True
    if not blur or "*" not in pattern:
        return pattern == value
    parts = pattern.split("*")
    if not value.startswith(parts[0]) or not value.endswith(parts[-1]):
        return False
    at = len(parts[0])
    end = len(value) - len(parts[-1])
    for part in parts[1:-1]:
        found = value.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return at <= end


async def _search(api: ConfigApi, params: Params, search: str) -> web.Response:
    found, total, page_no, page_size = await search_configs(api, params, search)
    items = [config_info(r) for r in found]
    return json_response(page_of(items, total, page_no, page_size))


async def search_configs(
    api: ConfigApi, params: Params, search: str
) -> tuple[list[ConfigRecord], int, int, int]:
    """`search=accurate|blur` over `dataId`, `group` (`*` wildcards when blur), `tenant`,
    `appName`, `config_tags`: (the page's records, the total, pageNo, pageSize). The
    config search API and the console's both run it."""
    if search not in ("accurate", "blur"):
        raise InvalidArgumentError(
            "search", "accurate or blur", message=f"invalid search : {search}"
        )
    blur = search == "blur"
    data_id = params.get("dataId")
    group = params.get("group")
    if data_id is None:
        raise InvalidArgumentError(
            "dataId", "is required", message="Required String parameter 'dataId' is not present"
        )
    if group is None:
        raise InvalidArgumentError(
            "group", "is required", message="Required String parameter 'group' is not present"
        )
    page_no = validate.page("pageNo", params.get("pageNo"), None, 1 << 20)
    page_size = validate.page("pageSize", params.get("pageSize"), None, MAX_PAGE_SIZE)
    tenant = validate.request_tenant(params.get("tenant"))
    app_name = (params.get("appName") or "").strip()
    tags = [
        t for t in (params.get("config_tags") or params.get("configTags") or "").split(",") if t
    ]
    await api.service.read_barrier()
    found = [
        record
        for record in api.service.state.configs()
        if record.key.tenant == tenant
        and _matches(data_id.strip(), record.key.data_id, blur=blur)
        and _matches(group.strip(), record.key.group, blur=blur)
        and (not app_name or _matches(app_name, record.app_name, blur=blur))
        and (not tags or any(t in record.config_tags.split(",") for t in tags))
    ]
    start = (page_no - 1) * page_size
    return found[start : start + page_size], len(found), page_no, page_size


async def publish_config(request: web.Request) -> web.Response:
    params = await config_params(request)
    if is_import(params):
        return await import_configs(request, params)
    if is_clone(params):
        return await clone_configs(request, params)
    await publish(request, params, params.get("tenant"))
    return _true()


async def publish(
    request: web.Request, params: Params, tenant: str | None, route: str = "configs.publish"
) -> None:
    """Publish the config `params` name in namespace `tenant` (v1 and v2 alike), counted
    under `route`."""
    refuse_gray(request, params)
    api = config_api_of(request)
    api.count(route)
    raw = RawPublish(
        data_id=params.get("dataId"),
        group=params.get("group"),
        tenant=validate.request_tenant(tenant),
        content=params.get("content"),
        app_name=params.get("appName"),
        type=params.get("type"),
        desc=params.get("desc"),
        config_tags=params.first("config_tags", "configTags"),
        cas_md5=params.first("casMd5") or request.headers.get("casMd5"),
    )
    await api.service.publish(raw, src_ip=request.remote or "")


async def delete_config(request: web.Request) -> web.Response:
    params = await config_params(request)
    api = config_api_of(request)
    if params.get("delType") == "ids":
        api.count("configs.delete_ids")
        ids = validate.ids(params.get("ids"))
        await api.service.delete_ids(ids, src_ip=request.remote or "")
        return json_response({"code": 200, "message": None, "data": True})
    refuse_gray(request, params)
    api.count("configs.delete")
    await api.service.delete(_key(params), src_ip=request.remote or "")
    return _true()


# ------------------------------------------------------------------ export and import

EXPORT_FILE_PREFIX: Final = "nacos_config_export_"  # Nacos's name, then yyyyMMddHHmmss.zip
MAX_UPLOAD_PARTS: Final = 16


def _flag(params: Params, name: str) -> bool:
    return (params.get(name) or "").strip().lower() == "true"


def is_import(params: Params) -> bool:
    """Whether a `POST /configs` is an import (`import=true`); its namespace is then the
    `namespace` parameter, not `tenant` (the access middleware checks that one)."""
    return _flag(params, "import")


def is_clone(params: Params) -> bool:
    """Whether a `POST /configs` is a clone (`clone=true`, Nacos's only clone route): it
    writes any group and dataId of its `tenant`."""
    return _flag(params, "clone")


async def export_configs(api: ConfigApi, params: Params, *, v2: bool) -> web.Response:
    """`GET /configs?export=true` (format 1) or `?exportV2=true` (format 2): the configs of
    `tenant` matching `dataId` (`*` a wildcard), `group`, `appName` and `ids`, all given
    filters together (Nacos takes `ids` alone and in any namespace; naraft keeps the
    namespace the permission was checked on), as the console's zip."""
    api.count("configs.export_v2" if v2 else "configs.export")
    tenant = validate.request_tenant(params.get("tenant"))
    data_id = (params.get("dataId") or "").strip()
    group = (params.get("group") or "").strip()
    app_name = (params.get("appName") or "").strip()
    ids_text = params.get("ids")
    ids = set(validate.ids(ids_text)) if ids_text is not None and ids_text.strip() else None
    limits = ArchiveLimits.for_content(api.service.settings.max_content_bytes)
    await api.service.read_barrier()
    items: list[ExportItem] = []
    total = 0
    for record in api.service.state.configs():
        key = record.key
        if (
            key.tenant != tenant
            or not _matches(data_id, key.data_id, blur=True)
            or (group and key.group != group)
            or (app_name and record.app_name != app_name)
            or (ids is not None and record.id not in ids)
        ):
            continue
        total += len(record.content.encode("utf-8", "surrogatepass"))
        if len(items) >= limits.max_entries or total > limits.max_total_bytes:
            raise InvalidArgumentError(
                "export",
                "within the import limits",
                message=f"the export would hold over {limits.max_entries} configs or "
                f"{limits.max_total_bytes} bytes, more than an import takes: narrow it with "
                "group, dataId, appName or ids",
            )
        items.append(
            ExportItem(
                group=key.group,
                data_id=key.data_id,
                content=record.content,
                app_name=record.app_name,
                type=record.type,
                desc=record.desc,
            )
        )
    body = await asyncio.to_thread(archive.write_archive, items, v2=v2)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%d%H%M%S")
    response = web.Response(body=body, content_type="application/zip")
    response.headers["Content-Disposition"] = f"attachment;filename={EXPORT_FILE_PREFIX}{stamp}.zip"
    return response


def _import_answer(code: int, message: str, data: dict[str, object]) -> web.Response:
    """Nacos's `RestResult`: answered 200 whatever the code (the console reads `code`)."""
    return json_response({"code": code, "message": message, "data": data})


def policy_of(value: str | None) -> SamePolicy:
    if value is None or not value.strip():
        return SamePolicy.ABORT
    try:
        return SamePolicy(value.strip().upper())
    except ValueError:
        raise InvalidArgumentError(
            "policy", "ABORT, SKIP or OVERWRITE", message=f"invalid policy : {value[:40]}"
        ) from None


async def _uploaded_file(request: web.Request) -> bytes | None:
    """The `file` part of a multipart/form-data body (None: no such part)."""
    return (await uploaded_fields(request)).get("file")


async def uploaded_fields(request: web.Request) -> dict[str, bytes]:
    """The named parts of a multipart/form-data body (empty: not such a body; the first of
    a name counts, and at most `MAX_UPLOAD_PARTS` parts are looked at). The body is read
    whole (bounded by the config routes' body limit) and kept, so that a request forwarded
    to the leader carries it."""
    mime = parse_mimetype(request.headers.get("Content-Type", ""))
    boundary = mime.parameters.get("boundary", "")
    if (mime.type, mime.subtype) != ("multipart", "form-data") or not 0 < len(boundary) <= 200:
        return {}
    body = await request.read()
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    fields: dict[str, bytes] = {}
    for part in body.split(delimiter, MAX_UPLOAD_PARTS + 1)[1 : MAX_UPLOAD_PARTS + 1]:
        head, separator, payload = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        for line in head.split(b"\r\n"):
            name, colon, value = line.decode("latin-1").partition(":")
            if colon and name.strip().lower() == "content-disposition":
                _kind, disposition = parse_content_disposition(value.strip())
                field = disposition.get("name")
                if field is not None and field not in fields:
                    fields[field] = payload[:-2] if payload.endswith(b"\r\n") else payload
    return fields


def _outcome_answer(outcome: ImportOutcome, done: str) -> web.Response:
    """An import's or clone's outcome: `done` when it wrote, else the ABORT conflict."""
    message = done
    if outcome.fail_data:
        message = (
            f"policy ABORT: {len(outcome.fail_data)} configs exist already (failData); "
            "nothing was written"
        )
    return _import_answer(200, message, _outcome_data(outcome))


def _outcome_data(outcome: ImportOutcome) -> dict[str, object]:
    data: dict[str, object] = {
        "succCount": outcome.succ_count,
        "skipCount": len(outcome.skip_data),
    }
    if outcome.fail_data:
        data["failData"] = [{"dataId": k.data_id, "group": k.group} for k in outcome.fail_data]
    if outcome.skip_data:
        data["skipData"] = [{"dataId": k.data_id, "group": k.group} for k in outcome.skip_data]
    return data


async def import_configs(request: web.Request, params: Params) -> web.Response:
    """`POST /configs?import=true&namespace=&policy=ABORT|SKIP|OVERWRITE` with the zip in the
    multipart field `file`: Nacos's `importAndPublishConfig`. A zip refused, or a config in
    it that a publish would refuse, writes nothing and is answered in Nacos's shape with
    its result code and a message naming the problem; ABORT writes nothing when any config
    exists (listed in `failData`)."""
    api = config_api_of(request)
    api.count("configs.import")
    tenant = validate.request_tenant(params.get("namespace"))
    policy = policy_of(params.get("policy"))
    await api.service.read_barrier()  # a follower forwards the request before reading it
    upload = await _uploaded_file(request)
    if upload is None:
        return _import_answer(
            archive.DATA_EMPTY, "no zip in the multipart field 'file'", {"succCount": 0}
        )
    limits = ArchiveLimits.for_content(api.service.settings.max_content_bytes)
    try:
        items = await asyncio.to_thread(archive.read_archive, upload, limits)
    except ArchiveError as error:
        return _import_answer(error.code, str(error), {"succCount": 0})
    if not items:
        return _import_answer(archive.DATA_EMPTY, "the zip holds no config", {"succCount": 0})
    try:
        outcome = await api.service.import_configs(
            items, tenant, policy, src_ip=request.remote or ""
        )
    except ImportItemError as error:
        return _import_answer(archive.DATA_VALIDATION_FAILED, str(error), {"succCount": 0})
    return _outcome_answer(
        outcome, f"imported {outcome.succ_count}, skipped {len(outcome.skip_data)}"
    )


async def clone_configs(request: web.Request, params: Params) -> web.Response:
    """`POST /configs?clone=true&tenant=&policy=ABORT|SKIP|OVERWRITE` with the JSON list
    `[{"cfgId", "dataId", "group"}]`: Nacos's `cloneConfig`, copying configs by id into
    `tenant` under new names (or their own). Answered as an import is (`_import_answer`):
    nothing chosen 100006, no such configs 100005, a name a publish would refuse 100003,
    each writing nothing. Every source must be readable by the caller (403 otherwise)."""
    policy = policy_of(params.get("policy"))
    await config_api_of(request).service.read_barrier()  # a follower forwards it unread
    sources = validate.clone_sources(await request.read())
    return await clone_answer(request, params.get("tenant"), policy, sources)


async def clone_answer(
    request: web.Request,
    tenant_param: str | None,
    policy: SamePolicy,
    sources: tuple[validate.CloneSource, ...],
) -> web.Response:
    """A clone of `sources` into the namespace `tenant_param` names (the API's and the
    console's), in Nacos's RestResult."""
    api = config_api_of(request)
    api.count("configs.clone")
    tenant = validate.request_tenant(tenant_param)
    if not sources:
        return _import_answer(
            archive.NO_SELECTED_CONFIG, "no config chosen to clone", {"succCount": 0}
        )

    def readable(key: ConfigKey) -> bool:
        return may_read(request, key.tenant, key.group, "config", key.data_id)

    try:
        outcome = await api.service.clone_configs(
            sources, tenant, policy, readable=readable, src_ip=request.remote or ""
        )
    except ImportItemError as error:
        return _import_answer(archive.DATA_VALIDATION_FAILED, str(error), {"succCount": 0})
    if outcome is None:
        return _import_answer(
            archive.DATA_EMPTY, "no config has the ids chosen to clone", {"succCount": 0}
        )
    return _outcome_answer(outcome, "Clone Completed Successfully")


# -------------------------------------------------------------------------- listeners


def _poll_timeout_ms(request: web.Request) -> int | None:
    text = request.headers.get(LONG_POLL_HEADER)
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise InvalidArgumentError(
            LONG_POLL_HEADER, "milliseconds", message=f"invalid {LONG_POLL_HEADER} : {text[:20]}"
        )
    return int(text)


_POLL_HEADERS: Final = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Pragma", "no-cache"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Cache-Control", "no-cache,no-store"),
)


def _poll_body(changed: list[ConfigKey]) -> str:
    return encode_changed(changed) + "\n" if changed else ""


async def listen(request: web.Request) -> web.StreamResponse:
    """Long polling: answer the changed configs at once, when one changes, or empty at the
    end of the hold. An error is answered after `POLL_ERROR_DELAY_SECONDS`. A poll that
    waits takes its connection out of aiohttp (`naraft.api.edge.HeldConnection`) when the
    server is naraft's own; in a bare aiohttp server it waits in its handler."""
    api = config_api_of(request)
    api.count("configs.listener")
    try:
        params = await config_params(request)
        hub = api.hub
        md5s = parse_listening(params.get("Listening-Configs"), hub.max_keys)
        timeout_ms = _poll_timeout_ms(request)
        no_hangup = request.headers.get(NO_HANGUP_HEADER, "").strip().lower() == "true"
        changed = hub.changed(md5s)
        if not changed and timeout_ms is not None and not no_hangup:
            protocol = request.protocol
            if isinstance(protocol, GuardedHandler) and protocol.can_hand_over(request):
                return _hold(request, protocol, hub, md5s, timeout_ms)
            changed = await hub.poll(md5s, timeout_ms, request.remote or "")
    except NaraftError:
        if LONG_POLL_HEADER in request.headers:  # a long-polling client: slow its retries
            await asyncio.sleep(POLL_ERROR_DELAY_SECONDS)
        raise
    body = _poll_body(changed)
    response = web.Response(text=body, headers=dict(_POLL_HEADERS))
    if timeout_ms is None:  # short polling: old clients read the answer from headers
        response.headers["Probe-Modify-Response-New"] = body.strip()
    return response


def _hold(
    request: web.Request,
    protocol: GuardedHandler,
    hub: ListenerHub,
    md5s: Mapping[ConfigKey, str],
    timeout_ms: int,
) -> HeldResponse:
    """Hold the poll in the hub (TooManyPollsError first, if the node holds its limit),
    then hand its connection over; the hub's answer is written to it directly."""

    def deliver(changed: list[ConfigKey]) -> None:
        connection.answer(200, _POLL_HEADERS, _poll_body(changed).encode())

    poll = hub.hold(md5s, timeout_ms, request.remote or "", deliver)
    connection = protocol.hand_over(request)
    connection.on_lost = partial(hub.release, poll)
    return HeldResponse(connection)


async def listener_status(request: web.Request) -> web.Response:
    """`GET /configs/listener?dataId&group[&tenant]`: this node's polls on the config
    (client address → the MD5 it holds)."""
    params = await config_params(request)
    api = config_api_of(request)
    api.count("configs.listener_status")
    group = validate.group_or_default(params.get("group"))
    key = validate.config_key(
        params.get("dataId"), group, validate.request_tenant(params.get("tenant"))
    )
    return json_response(
        {"collectStatus": 200, "lisentersGroupkeyStatus": api.hub.listeners_of(key)}
    )


async def listener_by_ip(request: web.Request) -> web.Response:
    """`GET /listener?ip=`: what the client at `ip` listens to on this node (groupKey →
    MD5), as Nacos's `ListenerController`."""
    params = await config_params(request)
    api = config_api_of(request)
    api.count("listener")
    ip = params.get("ip")
    if ip is None or not ip.strip():
        raise InvalidArgumentError(
            "ip", "is required", message="Required String parameter 'ip' is not present"
        )
    return json_response(
        {"collectStatus": 200, "lisentersGroupkeyStatus": api.hub.listened_by(ip.strip())}
    )


# ---------------------------------------------------------------------------- history


def check_owner(record: HistoryRecord, params: Params) -> None:
    if record.key.data_id != params.get("dataId") or record.key.group != params.get("group"):
        raise UnauthorizedError("Please check dataId and group.")


def history_page(state: ConfigState, key: ConfigKey, params: Params) -> dict[str, object]:
    """A page (`pageNo`, `pageSize`) of `key`'s history, newest first, without contents."""
    page_no = validate.page("pageNo", params.get("pageNo"), 1, 1 << 20)
    page_size = validate.page("pageSize", params.get("pageSize"), 100, MAX_PAGE_SIZE)
    records = state.history_of(key)
    start = (page_no - 1) * page_size
    items = [history_info(r, with_content=False) for r in records[start : start + page_size]]
    return page_of(items, len(records), page_no, page_size)


async def history(request: web.Request) -> web.Response:
    """`?search=accurate`: a page of a config's history (newest first, no contents);
    else `?nid=`: one record with its content (empty when there is none)."""
    params = await config_params(request)
    api = config_api_of(request)
    await api.service.read_barrier()
    state = api.service.state
    if params.get("search") == "accurate":
        api.count("history.search")
        key = _key(params)
        return json_response(history_page(state, key, params))
    api.count("history.detail")
    nid = validate.long_id("nid", params.get("nid"))
    record = state.history_record(nid)
    if record is None:
        return web.Response(text="")
    check_owner(record, params)
    return json_response(history_info(record, with_content=True))


async def history_previous(request: web.Request) -> web.Response:
    """`?id=` (a config's id): its newest history record, or empty."""
    params = await config_params(request)
    api = config_api_of(request)
    api.count("history.previous")
    config_id = validate.long_id("id", params.get("id"))
    await api.service.read_barrier()
    record = api.service.state.previous_history(config_id)
    if record is None:
        return web.Response(text="")
    check_owner(record, params)
    return json_response(history_info(record, with_content=True))


# ------------------------------------------------------------------ the rest of /cs

_UNSUPPORTED_PATHS: Final = {
    "capacity": "config capacity management is not supported by naraft",
    "ops": "the config ops endpoints (Derby SQL, dumps) are not served by naraft",
    "communication": "config cluster communication endpoints are not served by naraft",
    "datum": "aggregated (datumId) configs are not supported by naraft",
}


async def other_cs_path(request: web.Request) -> web.Response:
    """Any other `/nacos/v1/cs/...` path: 501 for Nacos features naraft does not serve,
    else Nacos's (Spring's) not-found JSON, never a bare 404."""
    head = request.match_info.get("tail", "").split("/", 1)[0]
    if (reason := _UNSUPPORTED_PATHS.get(head)) is not None:
        raise UnsupportedError(reason)
    return spring_error(
        404,
        "no such config API path (naraft serves /nacos/v1/cs/configs, /configs/listener, "
        "/listener, /history, /history/previous)",
        request.path,
    )


# -------------------------------------------------------------------- the route table

Action = Literal["r", "w"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ConfigRoute:
    """One route and the permission it needs: `action` on the config resource
    (`namespace:group:dataId`, see `resource_of`); None: no config permission (the
    not-found answer for unknown paths)."""

    method: str
    path: str
    handler: Handler
    action: Action | None


CONFIG_ROUTES: Final[tuple[ConfigRoute, ...]] = (
    ConfigRoute("GET", CONFIGS_PATH, get_configs, "r"),
    ConfigRoute("POST", CONFIGS_PATH, publish_config, "w"),
    ConfigRoute("DELETE", CONFIGS_PATH, delete_config, "w"),
    ConfigRoute("POST", CONFIG_LISTENER_PATH, listen, "r"),
    ConfigRoute("GET", CONFIG_LISTENER_PATH, listener_status, "r"),
    ConfigRoute("GET", LISTENER_PATH, listener_by_ip, "r"),
    ConfigRoute("GET", HISTORY_PATH, history, "r"),
    ConfigRoute("GET", HISTORY_PREVIOUS_PATH, history_previous, "r"),
    ConfigRoute("*", BASE + "/{tail:.*}", other_cs_path, None),
)


def resource_of(params: Params) -> str:
    """The resource a config request names, `namespace:group:dataId` (Nacos's
    `ConfigResourceParser`: blank parts stay empty)."""
    tenant = params.get("tenant") or ""
    return f"{tenant}:{params.get('group') or ''}:{params.get('dataId') or ''}"


def config_routes() -> list[web.RouteDef]:
    return [web.route(r.method, r.path, r.handler) for r in CONFIG_ROUTES]
