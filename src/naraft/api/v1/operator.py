"""`/nacos/v1/ns/operator…` and `/nacos/v1/ns/health…`: switches, metrics, servers, push
state, log levels, the Distro views (the leader is every service's responsible member),
health; the members as Nacos 1.4's core API shows them (`/nacos/v1/core/cluster/…`); and
the server state Nacos's console reads (`/nacos/v1/console/server/state`). Every
`/operator/…` route also answers at `/nacos/v1/ns/ops/…`, as Nacos maps its operator
controller at both."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from aiohttp import web

from naraft import __version__
from naraft.api.context import json_response, maybe_read_barrier, naming_of, ok
from naraft.api.health import not_ready
from naraft.api.params import raw_instance, raw_service, read_params
from naraft.errors import UnavailableError
from naraft.logs import set_log_level
from naraft.naming.push import AckTable, PushTimings, push_state_view
from naraft.naming.validate import flag
from naraft.naming.views import health_checkers_view

routes = web.RouteTableDef()

BASE = "/nacos/v1/ns"
OPERATOR: Final = f"{BASE}/operator"
OPS: Final = f"{BASE}/ops"  # Nacos's second name for the operator routes
CORE_CLUSTER: Final = "/nacos/v1/core/cluster"
CORE_NODES: Final = f"{CORE_CLUSTER}/nodes"
SERVER_STATE: Final = "/nacos/v1/console/server/state"
HEALTH_CHECKERS: Final = f"{BASE}/health/checkers"
MEMINFO: Final = Path("/proc/meminfo")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """One cluster member as `/operator/servers` shows it (Nacos 1.4 `Member`)."""

    ip: str
    port: int
    state: str = "UP"
    extend_info: Mapping[str, object] = field(default_factory=dict)
    is_self: bool = False  # the node answering


class ServerDirectory(Protocol):
    """The cluster's members, as the node knows them."""

    def servers(self) -> Sequence[ServerInfo]: ...


SERVERS: Final = web.AppKey("servers", ServerDirectory)


class PushStats(Protocol):
    """The node's UDP pushes (`naraft.naming.udp.UdpPusher`)."""

    def push_state(self, *, detail: bool, reset: bool) -> Mapping[str, object]: ...


PUSH_STATS: Final = web.AppKey("push_stats", PushStats)


@routes.get(f"{BASE}/operator/switches")
async def get_switches(request: web.Request) -> web.Response:
    return json_response(naming_of(request).switches())


@routes.put(f"{BASE}/operator/switches")
async def update_switches(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_switch(
        entry=params.get("entry"), value=params.get("value"), debug=params.get("debug")
    )
    return ok()


@routes.get(f"{BASE}/operator/distro/server")
async def distro_server(request: web.Request) -> web.Response:
    """Nacos's `GET /distro/server`: the member responsible for the service. Nacos's Distro
    spreads services over its members; in naraft the leader takes every write and runs
    the beat sweep, so it is the responsible member of every service. 404 for a missing
    service (`linearizable=true` reads through the read barrier first), 503 while no leader
    is known."""
    params = await read_params(request)
    naming = naming_of(request)
    await maybe_read_barrier(naming, params)
    naming.get_service(raw_service(params))
    me = self_member(request)
    leader = me.extend_info.get("leader")
    if leader is None and len(members_of(request)) == 1:
        leader = member_address(me)
    if not isinstance(leader, str):
        raise UnavailableError("no leader known: no member is responsible now")
    return json_response({"responsibleServer": leader})


@routes.get(f"{BASE}/operator/distro/status")
async def distro_status(request: web.Request) -> web.Response:
    """Nacos's `GET /distro/status`: with `action=view` (the default) the members as
    `/operator/servers` shows them, under `status`; any other action answers `{}`."""
    params = await read_params(request)
    if (params.get("action") or "view") != "view":
        return json_response({})
    return json_response({"status": [member_view(m) for m in members_of(request)]})


@routes.get(f"{BASE}/operator/push/state")
async def push_state(request: web.Request) -> web.Response:
    """Nacos's push counts since the node started (`naraft.naming.push.push_state_view`);
    an app without a pusher (in-process tests) has pushed nothing."""
    params = await read_params(request)
    detail = flag("detail", params.get("detail"), False)
    reset = flag("reset", params.get("reset"), False)
    stats = request.app.get(PUSH_STATS)
    if stats is None:
        return json_response(push_state_view(AckTable(PushTimings()), detail=detail, reset=reset))
    return json_response(stats.push_state(detail=detail, reset=reset))


@routes.put(f"{BASE}/operator/log")
async def log_level(request: web.Request) -> web.Response:
    """Nacos's `PUT /operator/log`: this node's level for one log until it restarts."""
    params = await read_params(request)
    set_log_level(params.get("logName"), params.get("logLevel"))
    return ok()


def _memory_used_ratio() -> float:
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return 0.0
    fields = {line.split(":")[0]: line.split()[1] for line in lines if ":" in line}
    try:
        total, available = int(fields["MemTotal"]), int(fields["MemAvailable"])
    except (KeyError, ValueError, IndexError):
        return 0.0
    return round(1 - available / total, 4) if total > 0 else 0.0


def system_load() -> dict[str, float]:
    """cpu (load per core, capped at 1), load (1-minute average), mem (used fraction)."""
    load = os.getloadavg()[0]
    cpu = min(load / (os.cpu_count() or 1), 1.0)
    return {"cpu": round(cpu, 4), "load": round(load, 4), "mem": _memory_used_ratio()}


@routes.get(f"{BASE}/operator/metrics")
async def metrics(request: web.Request) -> web.Response:
    """`status` is DOWN while the node is not ready (no leader, no quorum, far behind:
    `naraft.api.health`), whatever the `overriddenServerStatus` switch says."""
    answer = {**naming_of(request).metrics(), **system_load()}
    reason = not_ready(request)
    if reason is not None:
        answer["status"] = "DOWN"
        answer["reason"] = reason
    return json_response(answer)


def _local_port(request: web.Request) -> int:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return request.url.port or 8848


def member_address(server: ServerInfo) -> str:
    return f"{server.ip}:{server.port}"


def member_view(server: ServerInfo) -> dict[str, object]:
    return {
        "ip": server.ip,
        "port": server.port,
        "state": server.state,
        "extendInfo": dict(server.extend_info),
        "address": member_address(server),
        "failAccessCnt": 0,
    }


def members_of(request: web.Request) -> Sequence[ServerInfo]:
    directory = request.app.get(SERVERS)
    if directory is None:
        return (_this_node(request),)
    return directory.servers()


def _this_node(request: web.Request) -> ServerInfo:
    """The answering node as the request reached it."""
    return ServerInfo(ip=request.url.host or "127.0.0.1", port=_local_port(request), is_self=True)


def _rest_result(data: object) -> web.Response:
    """Nacos's `RestResult` of a success."""
    return json_response({"code": 200, "message": None, "data": data})


@routes.get(f"{BASE}/operator/servers")
async def servers(request: web.Request) -> web.Response:
    params = await read_params(request)
    members = members_of(request)
    if flag("healthy", params.get("healthy"), False):
        members = [m for m in members if m.state == "UP"]
    return json_response({"servers": [member_view(m) for m in members]})


@routes.get(CORE_NODES)
async def core_nodes(request: web.Request) -> web.Response:
    """Nacos 1.4's `GET /v1/core/cluster/nodes`: the members by address, in its
    `RestResult`; with `keyword`, those whose address is it or starts with it."""
    params = await read_params(request)
    keyword = params.get("keyword") or ""
    keyword = keyword if keyword.strip() else ""  # blank: every member, as Nacos
    members = sorted(members_of(request), key=member_address)
    return _rest_result([member_view(m) for m in members if member_address(m).startswith(keyword)])


@routes.get(f"{CORE_CLUSTER}/simple/nodes")
async def core_simple_nodes(request: web.Request) -> web.Response:
    """Nacos 1.4's `GET /v1/core/cluster/simple/nodes`: every member's `ip:port`."""
    return _rest_result(sorted(member_address(m) for m in members_of(request)))


def self_member(request: web.Request) -> ServerInfo:
    found = next((m for m in members_of(request) if m.is_self), None)
    # not among the members it knows: a node waiting to be added
    return _this_node(request) if found is None else found


@routes.get(f"{CORE_CLUSTER}/self")
async def core_self(request: web.Request) -> web.Response:
    """Nacos 1.4's `GET /v1/core/cluster/self`: the answering member."""
    return _rest_result(member_view(self_member(request)))


@routes.get(f"{CORE_CLUSTER}/health")
async def core_health(request: web.Request) -> web.Response:
    """Nacos 1.4's `GET /v1/core/cluster/health`: the answering member's state, `UP` while
    it is ready (`naraft.api.health`), else `DOWN`; always 200, as Nacos answers."""
    return _rest_result("DOWN" if not_ready(request) is not None else "UP")


@routes.get(SERVER_STATE)
async def server_state(request: web.Request) -> web.Response:
    """Nacos 1.4's `GET /v1/console/server/state`, which its console reads first: one
    member is `standalone`, more a `cluster`; naraft serves naming and config alike (no
    `function_mode`), and names its own version."""
    mode = "standalone" if len(members_of(request)) == 1 else "cluster"
    return json_response(
        {"standalone_mode": mode, "function_mode": None, "version": f"naraft-{__version__}"}
    )


@routes.put(f"{BASE}/health/instance")
@routes.put(f"{BASE}/health")
async def update_health(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).set_instance_health(
        raw_instance(params), params.first("healthy", "valid")
    )
    return ok()


@routes.get(HEALTH_CHECKERS)
async def health_checkers(request: web.Request) -> web.Response:
    """Nacos's `GET /health/checkers`: each checker type with its fields' defaults."""
    del request
    return json_response(health_checkers_view())


@routes.get(f"{BASE}/health/server")
async def server_health(request: web.Request) -> web.Response:
    """Nacos's greeting while the node is ready; 503 saying DOWN and why otherwise."""
    reason = not_ready(request)
    if reason is not None:
        return web.json_response(
            {"msg": f"server is DOWN now: {reason}", "status": "DOWN"}, status=503
        )
    return json_response(naming_of(request).health_message(_local_port(request)))


def _add_ops_aliases() -> None:
    for route in list(routes):
        if isinstance(route, web.RouteDef) and route.path.startswith(f"{OPERATOR}/"):
            routes.route(route.method, OPS + route.path.removeprefix(OPERATOR))(route.handler)


_add_ops_aliases()
