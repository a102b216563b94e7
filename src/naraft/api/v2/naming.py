"""`/nacos/v2/ns/instance…` and `/nacos/v2/ns/service…`: Nacos 2.x's `InstanceControllerV2`
and `ServiceControllerV2` over the same `NamingService` as v1.

The parameters are v1's (read by `naraft.api.params`); what differs is the answer, Nacos's
`Result` (`{"code": 0, "message": "success", "data": ...}`), the errors (`ErrorCode`s, in
`naraft.api.errors`), a strict `PUT /instance` (the instance must exist) and grouped
service names in instance lists. The beat answers its object bare, as Nacos's does.
Writes reach the leader as v1's do (the forward middleware replays the request).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from naraft.api.context import maybe_read_barrier, naming_of
from naraft.api.errors import v2_result
from naraft.api.params import (
    client_agent,
    raw_instance,
    raw_metadata_batch,
    raw_service,
    read_params,
)
from naraft.api.v1 import instance as v1_instance
from naraft.naming.commands import MetadataAction

routes = web.RouteTableDef()

NS_BASE: Final = "/nacos/v2/ns"
INSTANCE_PATH: Final = f"{NS_BASE}/instance"
SERVICE_PATH: Final = f"{NS_BASE}/service"
DEFAULT_PAGE_SIZE: Final = "20"

_LIST_KEYS: Final = (
    "name",
    "groupName",
    "clusters",
    "cacheMillis",
    "hosts",
    "lastRefTime",
    "checksum",
    "allIPs",
    "valid",
)
"""The fields of Nacos 2.x's `ServiceInfo` that v1's list answer has under the same name."""


def _ok() -> web.Response:
    return v2_result("ok")


# ------------------------------------------------------------------------- instances


@routes.post(INSTANCE_PATH)
async def register_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).register_instance(raw_instance(params))
    return _ok()


@routes.delete(INSTANCE_PATH)
async def deregister_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).deregister_instance(raw_instance(params))
    return _ok()


@routes.put(INSTANCE_PATH)
async def update_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    raw = raw_instance(params)
    await naming_of(request).update_instance(raw, client_agent(request), strict=True)
    return _ok()


async def _metadata_batch(request: web.Request, action: MetadataAction) -> web.Response:
    """`{"updated": [...]}` as v1 answers it, in a `Result` (Nacos 2.x's
    `InstanceMetadataBatchResult` holds the same strings)."""
    params = await read_params(request)
    return v2_result(await naming_of(request).update_metadata(raw_metadata_batch(params), action))


@routes.put(f"{INSTANCE_PATH}/metadata/batch")
async def merge_metadata(request: web.Request) -> web.Response:
    return await _metadata_batch(request, MetadataAction.MERGE)


@routes.delete(f"{INSTANCE_PATH}/metadata/batch")
async def remove_metadata(request: web.Request) -> web.Response:
    return await _metadata_batch(request, MetadataAction.REMOVE)


@routes.get(INSTANCE_PATH)
async def get_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    detail = naming.get_instance(raw_instance(params))
    detail["serviceName"] = detail.pop("service")
    return v2_result(detail)


@routes.get(f"{INSTANCE_PATH}/list")
async def list_instances(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    listed = naming.list_instances(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        clusters=params.first("clusterName", "clusters"),
        healthy_only=params.get("healthyOnly"),
        app=params.get("app"),
        client=client_agent(request),
        grouped_names=True,
        encoded_hosts=True,  # v2_result encodes with orjson
    )
    data = {name: listed[name] for name in _LIST_KEYS}
    data["reachProtectionThreshold"] = listed["reachProtectThreshold"]
    return v2_result(data)


# The beat is v1's, parameters and bare answer alike.
routes.put(f"{INSTANCE_PATH}/beat")(v1_instance.beat)


# -------------------------------------------------------------------------- services


@routes.post(SERVICE_PATH)
async def create_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).create_service(raw_service(params))
    return _ok()


@routes.put(SERVICE_PATH)
async def update_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_service(raw_service(params))
    return _ok()


@routes.delete(SERVICE_PATH)
async def delete_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).delete_service(raw_service(params))
    return _ok()


@routes.get(SERVICE_PATH)
async def get_service(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    view = naming.get_service(raw_service(params))
    clusters = view["clusters"]
    assert isinstance(clusters, list)
    return v2_result(
        {
            "namespace": view["namespaceId"],
            "groupName": view["groupName"],
            "serviceName": view["name"],
            "clusterMap": {
                c["name"]: {
                    "clusterName": c["name"],
                    "healthChecker": c["healthChecker"],
                    "metadata": c["metadata"],
                }
                for c in clusters
            },
            "metadata": view["metadata"],
            "protectThreshold": view["protectThreshold"],
            "selector": view["selector"],
        }
    )


@routes.get(f"{SERVICE_PATH}/list")
async def list_services(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    listed = naming.list_services(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        page_no=params.get("pageNo") or "1",  # Nacos 2.x's defaults
        page_size=params.get("pageSize") or DEFAULT_PAGE_SIZE,
    )
    return v2_result({"count": listed["count"], "services": listed["doms"]})
