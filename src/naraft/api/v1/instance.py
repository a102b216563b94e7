"""`/nacos/v1/ns/instance…`: register, deregister, update, patch, detail, list, beat, statuses,
batch metadata."""

from __future__ import annotations

from aiohttp import web

from naraft.api.context import json_response, maybe_read_barrier, naming_of, ok
from naraft.api.params import client_agent, raw_instance, raw_metadata_batch, read_params
from naraft.naming.commands import MetadataAction

routes = web.RouteTableDef()

BASE = "/nacos/v1/ns/instance"


@routes.post(BASE)
async def register_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).register_instance(raw_instance(params))
    return ok()


@routes.delete(BASE)
async def deregister_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).deregister_instance(raw_instance(params))
    return ok()


@routes.put(BASE)
async def update_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_instance(raw_instance(params), client_agent(request))
    return ok()


@routes.patch(BASE)
async def patch_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).patch_instance(raw_instance(params))
    return ok()


async def _metadata_batch(request: web.Request, action: MetadataAction) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    return json_response(await naming.update_metadata(raw_metadata_batch(params), action))


@routes.put(f"{BASE}/metadata/batch")
async def merge_metadata(request: web.Request) -> web.Response:
    return await _metadata_batch(request, MetadataAction.MERGE)


@routes.delete(f"{BASE}/metadata/batch")
async def remove_metadata(request: web.Request) -> web.Response:
    return await _metadata_batch(request, MetadataAction.REMOVE)


@routes.get(BASE)
async def get_instance(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    return json_response(naming.get_instance(raw_instance(params)))


@routes.get(f"{BASE}/list")
async def list_instances(request: web.Request) -> web.Response:
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    answer = naming.list_instances(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        clusters=params.get("clusters"),
        healthy_only=params.get("healthyOnly"),
        udp_port=params.get("udpPort"),
        client_ip=params.get("clientIP"),
        app=params.get("app"),
        client=client_agent(request),
        encoded_hosts=True,
    )
    return json_response(answer)


@routes.put(f"{BASE}/beat")
async def beat(request: web.Request) -> web.Response:
    params = await read_params(request)
    answer = await naming_of(request).beat(
        namespace_id=params.get("namespaceId"),
        group_name=params.get("groupName"),
        service_name=params.get("serviceName"),
        beat=params.get("beat"),
        cluster_name=params.first("clusterName", "cluster"),
        ip=params.get("ip"),
        port=params.get("port"),
    )
    return json_response(answer)


@routes.get(f"{BASE}/statuses")
async def instance_statuses(request: web.Request) -> web.Response:
    params = await read_params(request)
    return json_response(naming_of(request).instance_statuses(params.get("key")))
