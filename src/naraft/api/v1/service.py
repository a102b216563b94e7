"""`/nacos/v1/ns/service…`: service CRUD, list, names, subscribers; `/nacos/v1/ns/cluster`:
a service's cluster update."""

from __future__ import annotations

from aiohttp import web

from naraft.api.context import json_response, maybe_read_barrier, naming_of, ok
from naraft.api.params import raw_cluster, raw_service, read_params

routes = web.RouteTableDef()

BASE = "/nacos/v1/ns/service"
CLUSTER_PATH = "/nacos/v1/ns/cluster"


@routes.post(BASE)
async def create_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).create_service(raw_service(params))
    return ok()


@routes.put(BASE)
async def update_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_service(raw_service(params))
    return ok()


@routes.put(CLUSTER_PATH)
async def update_cluster(request: web.Request) -> web.Response:
    """Nacos's `ClusterController.update`: `ok`."""
    params = await read_params(request)
    await naming_of(request).update_cluster(raw_cluster(params))
    return ok()


@routes.delete(BASE)
async def delete_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).delete_service(raw_service(params))
    return ok()


@routes.get(BASE)
async def get_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    return json_response(naming.get_service(raw_service(params)))


@routes.get(f"{BASE}/list")
async def list_services(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    answer = naming.list_services(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        page_no=params.get("pageNo"),
        page_size=params.get("pageSize"),
    )
    return json_response(answer)


@routes.get(f"{BASE}/names")
async def service_names(request: web.Request) -> web.Response:
    params = await read_params(request)
    answer = naming_of(request).service_names(
        namespace_id=params.get("namespaceId"), expr=params.get("expr")
    )
    return json_response(answer)


@routes.get(f"{BASE}/subscribers")
async def subscribers(request: web.Request) -> web.Response:
    params = await read_params(request)
    answer = naming_of(request).subscribers(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        page_no=params.get("pageNo"),
        page_size=params.get("pageSize"),
    )
    return json_response(answer)
