"""`/nacos/v2/console/namespace…`: Nacos 2.x's `NamespaceControllerV2` over the namespaces
v1's console API keeps: list, show one, create, update, delete, each answering Nacos's
`Result` (writes `true`). Parameters are Nacos 2.x's: `namespaceId` (on create, an optional
custom id), `namespaceName`, `namespaceDesc`. A signed-in user sees the namespaces it may
read, as in v1."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from naraft.api.access import FORBIDDEN, sees_namespace
from naraft.api.context import naming_of
from naraft.api.errors import V2_MISSING_RULE, v2_result
from naraft.api.params import read_params
from naraft.errors import InvalidArgumentError, UnauthorizedError

routes = web.RouteTableDef()

NAMESPACE_PATH: Final = "/nacos/v2/console/namespace"


@routes.get(f"{NAMESPACE_PATH}/list")
async def list_namespaces(request: web.Request) -> web.Response:
    listed = naming_of(request).namespaces()["data"]
    assert isinstance(listed, list)
    return v2_result([n for n in listed if sees_namespace(request, str(n["namespace"]))])


@routes.get(NAMESPACE_PATH)
async def get_namespace(request: web.Request) -> web.Response:
    """One namespace; `namespaceId` is required, blank meaning the public one (shown as "")."""
    params = await read_params(request)
    namespace_id = params.get("namespaceId")
    if namespace_id is None:
        raise InvalidArgumentError("namespace_id", V2_MISSING_RULE)
    if not sees_namespace(request, namespace_id.strip()):
        raise UnauthorizedError(FORBIDDEN)
    return v2_result(naming_of(request).namespace(namespace_id))


@routes.post(NAMESPACE_PATH)
async def create_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).create_namespace(
        custom_id=params.get("namespaceId"),
        show_name=params.get("namespaceName"),
        description=params.get("namespaceDesc"),
        id_field="namespace_id",
    )
    return v2_result(True)


@routes.put(NAMESPACE_PATH)
async def update_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_namespace(
        namespace_id=params.get("namespaceId"),
        show_name=params.get("namespaceName"),
        description=params.get("namespaceDesc"),
        name_field="namespace_name",
    )
    return v2_result(True)


@routes.delete(NAMESPACE_PATH)
async def delete_namespace(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).delete_namespace(params.get("namespaceId"))
    return v2_result(True)
