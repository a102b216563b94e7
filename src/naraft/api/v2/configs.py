"""`/nacos/v2/cs/config` and `/nacos/v2/cs/history…`: Nacos 2.x's `ConfigControllerV2` and
`HistoryControllerV2` over the same `ConfigService` as v1 (`naraft.api.v1.configs`):
a config (get, publish, delete), its history (a page, one record, the newest one of a
config id) and a namespace's configs.

The namespace is `namespaceId` (`tenant` is read when it is absent, as Nacos's deprecated
alias); `public` is the default namespace, as in v1. Reads pass the read barrier like v1's;
answers are Nacos's `Result`, a missing config or history record 404 with
RESOURCE_NOT_FOUND. `V2_CONFIG_ROUTES` gives each route its permission, as v1's table does.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from naraft.api.errors import RESOURCE_NOT_FOUND, V2_MISSING_RULE, v2_result
from naraft.api.params import Params
from naraft.api.v1.configs import (
    ConfigRoute,
    check_owner,
    config_api_of,
    config_info,
    config_key_of,
    config_params,
    history_info,
    history_page,
    publish,
    refuse_gray,
)
from naraft.configs import validate
from naraft.errors import InvalidArgumentError, UnauthorizedError

CS_BASE: Final = "/nacos/v2/cs"
CONFIG_PATH: Final = f"{CS_BASE}/config"
HISTORY_PATH: Final = f"{CS_BASE}/history"
HISTORY_LIST_PATH: Final = f"{CS_BASE}/history/list"
HISTORY_PREVIOUS_PATH: Final = f"{CS_BASE}/history/previous"
HISTORY_CONFIGS_PATH: Final = f"{CS_BASE}/history/configs"


def namespace_of(params: Params) -> str | None:
    """The namespace a v2 config request names (the access check reads it here too)."""
    return params.first("namespaceId", "tenant")


async def get_config(request: web.Request) -> web.Response:
    params = await config_params(request)
    refuse_gray(request, params)
    api = config_api_of(request)
    api.count("v2.config.get")
    key = config_key_of(params, namespace_of(params))
    await api.service.read_barrier()
    record = api.service.state.get(key)
    if record is None:
        return v2_result("config data not exist", RESOURCE_NOT_FOUND, 404)
    return v2_result(record.content)


async def publish_config(request: web.Request) -> web.Response:
    params = await config_params(request)
    await publish(request, params, namespace_of(params), "v2.config.publish")
    return v2_result(True)


async def delete_config(request: web.Request) -> web.Response:
    params = await config_params(request)
    refuse_gray(request, params)
    api = config_api_of(request)
    api.count("v2.config.delete")
    key = config_key_of(params, namespace_of(params))
    await api.service.delete(key, src_ip=request.remote or "")
    return v2_result(True)


async def history_list(request: web.Request) -> web.Response:
    params = await config_params(request)
    api = config_api_of(request)
    api.count("v2.history.list")
    key = config_key_of(params, namespace_of(params))
    await api.service.read_barrier()
    return v2_result(history_page(api.service.state, key, params))


async def history_detail(request: web.Request) -> web.Response:
    params = await config_params(request)
    api = config_api_of(request)
    api.count("v2.history.detail")
    key = config_key_of(params, namespace_of(params))  # Nacos 2.x requires dataId and group
    nid = validate.long_id("nid", params.get("nid"))
    await api.service.read_barrier()
    record = api.service.state.history_record(nid)
    if record is None or record.key.tenant != key.tenant:
        return v2_result(
            f"certain config history for nid = {nid} not exist", RESOURCE_NOT_FOUND, 404
        )
    check_owner(record, params)
    return v2_result(history_info(record, with_content=True))


async def history_previous(request: web.Request) -> web.Response:
    """`?id=` (a config's id) with its `dataId`, `group` and namespace: the config's newest
    history record with its content; `data` null when it has none (as Nacos). A record of
    another config than the one named is refused, as Nacos checks it."""
    params = await config_params(request)
    api = config_api_of(request)
    api.count("v2.history.previous")
    key = config_key_of(params, namespace_of(params))
    config_id = validate.long_id("id", params.get("id"))
    await api.service.read_barrier()
    record = api.service.state.previous_history(config_id)
    if record is None:
        return v2_result(None)
    if record.key.tenant != key.tenant:
        raise UnauthorizedError("Please check dataId, group or namespaceId.")
    check_owner(record, params)
    return v2_result(history_info(record, with_content=True))


async def history_configs(request: web.Request) -> web.Response:
    """`?namespaceId=` (required; `public` or blank: the default one): every config of the
    namespace, without contents (Nacos's `ConfigInfoWrapper`s), by id."""
    params = await config_params(request)
    api = config_api_of(request)
    api.count("v2.history.configs")
    raw = params.get("namespaceId")
    if raw is None:
        raise InvalidArgumentError("namespace_id", V2_MISSING_RULE)
    tenant = validate.request_tenant(raw)
    await api.service.read_barrier()
    return v2_result(
        [
            {**config_info(r, with_content=False), "lastModified": r.modify_ms}
            for r in api.service.state.configs()
            if r.key.tenant == tenant
        ]
    )


V2_CONFIG_ROUTES: Final[tuple[ConfigRoute, ...]] = (
    ConfigRoute("GET", CONFIG_PATH, get_config, "r"),
    ConfigRoute("POST", CONFIG_PATH, publish_config, "w"),
    ConfigRoute("DELETE", CONFIG_PATH, delete_config, "w"),
    ConfigRoute("GET", HISTORY_LIST_PATH, history_list, "r"),
    ConfigRoute("GET", HISTORY_PATH, history_detail, "r"),
    ConfigRoute("GET", HISTORY_PREVIOUS_PATH, history_previous, "r"),
    ConfigRoute("GET", HISTORY_CONFIGS_PATH, history_configs, "r"),
)


def v2_config_routes() -> list[web.RouteDef]:
    return [web.route(r.method, r.path, r.handler) for r in V2_CONFIG_ROUTES]
