"""Liveness and readiness, on Nacos's console paths, and the rule behind them.

- `GET /nacos/v1/console/health/liveness`: 200 `OK` whenever the process answers (Nacos
  answers the same: a live process that cannot recover is for the supervisor to restart).
- `GET /nacos/v1/console/health/readiness`: 200 `OK` only while this node is part of a
  working cluster; else 503 and one line naming the reason. Nacos answers 500 with "Naming
  is not in readiness"; naraft keeps Nacos's text as the prefix and answers 503, the status
  load balancers and Kubernetes read as "not now".

A node is ready when (`readiness_reason`):
- it knows a leader, and has heard from it within one election timeout (a follower), or has
  heard from a majority of the members within one election timeout (the leader: the same
  test CheckQuorum makes, measured on the shell's clock, so that a lone leader is unready
  before it steps down);
- its applied index is at most `READY_MAX_LAG_ENTRIES` behind the commit index it knows.

`/nacos/v1/ns/health/server` and `/operator/metrics` read the same rule (DOWN without it).
Both endpoints are public health routes: they say nothing about the data.

- `GET /nacos/v1/cs/health`: Nacos's config health, which answers `UP` as text; naraft's
  config lives in the same Raft log as everything else, so it answers `UP` when ready by
  the same rule, else 503 `DOWN: <reason>` (Nacos answers 200 `DOWN:…` about its database).
- `GET /nacos/actuator/health`: Spring Boot's health endpoint, which a default Nacos
  serves and load balancers are often pointed at: 200 `{"status": "UP"}` when ready by the
  same rule, else 503 `{"status": "DOWN", "reason": ...}` (Spring's status codes; Nacos's own
  would say UP while its Raft has no leader, the case a balancer most needs to see).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import orjson
from aiohttp import web

from naraft.raft import NodeId, Role, Status

HEALTH_BASE: Final = "/nacos/v1/console/health"
LIVENESS_PATH: Final = f"{HEALTH_BASE}/liveness"
READINESS_PATH: Final = f"{HEALTH_BASE}/readiness"
READY_MAX_LAG_ENTRIES: Final = 1000
"""How far the applied index may trail the known commit index on a ready node."""
NOT_READY_PREFIX: Final = "Naming is not in readiness"
CONFIG_HEALTH_PATH: Final = "/nacos/v1/cs/health"
ACTUATOR_BASE: Final = "/nacos/actuator"
ACTUATOR_HEALTH_PATH: Final = f"{ACTUATOR_BASE}/health"


class HealthView(Protocol):
    """What the health endpoints need of the node."""

    def readiness(self) -> str | None:
        """Why this node is not ready, in one line; None when it is."""
        ...


HEALTH: Final = web.AppKey("health", HealthView)


def readiness_reason(
    status: Status,
    *,
    silent_for: Callable[[NodeId], float],
    election_seconds: float,
    max_lag: int = READY_MAX_LAG_ENTRIES,
) -> str | None:
    """The one-line reason `status` is not ready, or None (see the module docstring)."""
    timeout = f"{election_seconds:g} s"
    if status.role is Role.LEADER:
        members = len(status.peers) + 1
        heard = 1 + sum(1 for peer in status.peers if silent_for(peer) < election_seconds)
        if heard <= members // 2:
            return f"leader without a quorum: heard from {heard} of {members} members in {timeout}"
    elif status.leader is None:
        return f"no leader known ({status.role.value}, term {status.term})"
    elif silent_for(status.leader) >= election_seconds:
        return f"no word from the leader {status.leader} in {timeout}"
    lag = status.commit_index - status.applied_index
    if lag > max_lag:
        return (
            f"applied index {status.applied_index} is {lag} entries behind "
            f"the commit index {status.commit_index}"
        )
    return None


def health_of(request: web.Request) -> HealthView | None:
    return request.app.get(HEALTH)


def not_ready(request: web.Request) -> str | None:
    """The node's reason for being unready; None when ready or when no node is wired (an
    application built over a bare NamingService, as in handler tests)."""
    view = health_of(request)
    return None if view is None else view.readiness()


async def liveness(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def readiness(request: web.Request) -> web.Response:
    reason = not_ready(request)
    if reason is None:
        return web.Response(text="OK")
    return web.Response(status=503, text=f"{NOT_READY_PREFIX}: {reason}")


async def config_health(request: web.Request) -> web.Response:
    reason = not_ready(request)
    if reason is None:
        return web.Response(text="UP")
    return web.Response(status=503, text=f"DOWN: {reason}")


async def actuator_health(request: web.Request) -> web.Response:
    reason = not_ready(request)
    if reason is None:
        return web.Response(body=b'{"status":"UP"}', content_type="application/json")
    body = orjson.dumps({"status": "DOWN", "reason": reason})
    return web.Response(status=503, body=body, content_type="application/json")


def health_routes() -> list[web.RouteDef]:
    return [
        web.get(LIVENESS_PATH, liveness),
        web.get(READINESS_PATH, readiness),
        web.get(ACTUATOR_HEALTH_PATH, actuator_health),
        web.get(CONFIG_HEALTH_PATH, config_health),
    ]
