"""Nacos 2.x's operator, health and cluster routes of its v2 Open API, over what v1 serves:

- `GET`/`PUT /nacos/v2/ns/operator/switches` (also under `/nacos/v2/ns/ops`): the switches,
  and one switch set (`entry`, `value`), answering `"ok"`;
- `GET /nacos/v2/ns/operator/metrics` (and `/ops/metrics`): Nacos's `MetricsInfoVo`, only the
  status by default (`onlyStatus=true`, as Nacos);
- `PUT /nacos/v2/ns/health/instance`: a persistent instance's health, as v1's;
- `GET /nacos/v2/core/cluster/node/self`, `/node/list` (`address` prefix, `state`),
  `/node/self/health`: the members as Nacos's `Member`s, and this one's state.

Answers are Nacos's `Result`; errors come from the v2 table in `naraft.api.errors`.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from naraft.api.context import naming_of
from naraft.api.errors import v2_result
from naraft.api.health import not_ready
from naraft.api.params import raw_instance, read_params
from naraft.api.v1.operator import (
    member_address,
    member_view,
    members_of,
    self_member,
    system_load,
)
from naraft.errors import InvalidArgumentError
from naraft.naming.validate import flag

routes = web.RouteTableDef()

NS_BASE: Final = "/nacos/v2/ns"
OPERATOR: Final = f"{NS_BASE}/operator"
OPS: Final = f"{NS_BASE}/ops"  # Nacos maps the v2 operator controller at both
CLUSTER: Final = "/nacos/v2/core/cluster"
NODE_STATES: Final = ("STARTING", "UP", "SUSPICIOUS", "DOWN", "ISOLATION")  # Nacos NodeState
METRICS_FIELDS: Final = (  # Nacos 2.x's MetricsInfoVo, in its order
    "status",
    "serviceCount",
    "instanceCount",
    "subscribeCount",
    "clientCount",
    "connectionBasedClientCount",
    "ephemeralIpPortClientCount",
    "persistentIpPortClientCount",
    "responsibleClientCount",
    "cpu",
    "load",
    "mem",
)


def _status(request: web.Request, switched: object) -> object:
    """DOWN while the node is not ready, whatever the `overriddenServerStatus` switch says."""
    return "DOWN" if not_ready(request) is not None else switched


async def switches(request: web.Request) -> web.Response:
    return v2_result(naming_of(request).switches())


async def update_switch(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).update_switch(
        entry=params.get("entry"), value=params.get("value"), debug=params.get("debug")
    )
    return v2_result("ok")


async def metrics(request: web.Request) -> web.Response:
    """`MetricsInfoVo`: with `onlyStatus=false` the registry's sizes and the machine's load
    too. The counts of Nacos 2.x's clients (connections, ip:port clients) stay null: naraft
    keeps instances, not Nacos's client objects."""
    params = await read_params(request)
    only_status = flag("only_status", params.get("onlyStatus"), True)
    naming = naming_of(request).metrics()
    answer: dict[str, object] = dict.fromkeys(METRICS_FIELDS)
    answer["status"] = _status(request, naming["status"])
    if not only_status:
        answer["serviceCount"] = naming["serviceCount"]
        answer["instanceCount"] = naming["instanceCount"]
        answer.update(system_load())
    return v2_result(answer)


for _base in (OPERATOR, OPS):
    routes.get(f"{_base}/switches")(switches)
    routes.put(f"{_base}/switches")(update_switch)
    routes.get(f"{_base}/metrics")(metrics)


@routes.put(f"{NS_BASE}/health/instance")
async def update_health(request: web.Request) -> web.Response:
    params = await read_params(request)
    await naming_of(request).set_instance_health(raw_instance(params), params.get("healthy"))
    return v2_result("ok")


@routes.get(f"{CLUSTER}/node/self")
async def node_self(request: web.Request) -> web.Response:
    return v2_result(member_view(self_member(request)))


@routes.get(f"{CLUSTER}/node/list")
async def node_list(request: web.Request) -> web.Response:
    """The members whose address starts with `address` (blank: all) and, with `state`,
    in that Nacos `NodeState` (any case)."""
    params = await read_params(request)
    address = (params.get("address") or "").strip()
    state = (params.get("state") or "").strip().upper()
    if state and state not in NODE_STATES:
        raise InvalidArgumentError(
            "state", f"is one of {', '.join(NODE_STATES)}", message=f"Illegal state: {state[:32]}"
        )
    members = [
        m
        for m in members_of(request)
        if member_address(m).startswith(address) and (not state or m.state == state)
    ]
    return v2_result([member_view(m) for m in members])


@routes.get(f"{CLUSTER}/node/self/health")
async def node_self_health(request: web.Request) -> web.Response:
    """This member's state: `UP` while it is ready (`naraft.api.health`), else `DOWN`."""
    return v2_result("DOWN" if not_ready(request) is not None else "UP")
