"""`/nacos/v1/ns/catalog/…`: the catalog Nacos's console reads (services with counts, a
service's clusters, a cluster's instances), with Nacos's shapes; naraft's console reads the
same `NamingService` methods."""

from __future__ import annotations

from aiohttp import web

from naraft.api.context import json_response, naming_of
from naraft.api.params import raw_service, read_params

routes = web.RouteTableDef()

BASE = "/nacos/v1/ns/catalog"


@routes.get(f"{BASE}/services")
async def catalog_services(request: web.Request) -> web.Response:
    params = await read_params(request)
    answer = naming_of(request).catalog_services(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupNameParam"),
        service_name=params.get("serviceNameParam"),
        page_no=params.get("pageNo"),
        page_size=params.get("pageSize"),
        with_instances=params.get("withInstances"),
    )
    return json_response(answer)


@routes.get(f"{BASE}/service")
async def catalog_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    return json_response(naming_of(request).catalog_service(raw_service(params)))


@routes.get(f"{BASE}/rt/service")
async def catalog_rt(request: web.Request) -> web.Response:
    params = await read_params(request)
    return json_response(naming_of(request).catalog_rt(raw_service(params)))


@routes.get(f"{BASE}/instances")
async def catalog_instances(request: web.Request) -> web.Response:
    params = await read_params(request)
    answer = naming_of(request).catalog_instances(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        cluster_name=params.get("clusterName"),
        page_no=params.get("pageNo"),
        page_size=params.get("pageSize"),
    )
    return json_response(answer)
