"""`/nacos/v1/console/namespaces`: list, show, check an id (`checkNamespaceIdExist=true`),
create, update, delete (answers `true`)."""

from __future__ import annotations

from aiohttp import web

from naraft.api.access import FORBIDDEN, sees_namespace
from naraft.api.context import json_response, naming_of
from naraft.api.params import read_params
from naraft.errors import UnauthorizedError

routes = web.RouteTableDef()

BASE = "/nacos/v1/console/namespaces"


def _true() -> web.Response:
    """Nacos's console answers writes with the JSON boolean `true`."""
    return json_response(True)


@routes.get(BASE)
async def get_namespaces(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    if params.get("checkNamespaceIdExist") == "true":
        # Nacos's console asks before it creates a namespace with a custom id: a boolean
        return json_response(naming.namespace_exists(params.get("customNamespaceId")))
    if params.get("show") == "all":
        if not sees_namespace(request, (params.get("namespaceId") or "").strip()):
            raise UnauthorizedError(FORBIDDEN)
        return json_response(naming.namespace(params.get("namespaceId")))
    listed = naming.namespaces()
    data = listed["data"]
    assert isinstance(data, list)
    listed["data"] = [n for n in data if sees_namespace(request, str(n["namespace"]))]
    return json_response(listed)


@routes.post(BASE)
async def create_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).create_namespace(
        custom_id=params.get("customNamespaceId"),
        show_name=params.get("namespaceName"),
        description=params.get("namespaceDesc"),
    )
    return _true()


@routes.put(BASE)
async def update_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_namespace(
        namespace_id=params.first("namespace", "namespaceId"),
        show_name=params.get("namespaceShowName"),
        description=params.get("namespaceDesc"),
    )
    return _true()


@routes.delete(BASE)
async def delete_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).delete_namespace(params.get("namespaceId"))
    return _true()
