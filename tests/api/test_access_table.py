"""No route is open by accident: every route of a node's real application (built by
`naraft.node`'s wiring) is a peer route or has a rule in the one access table, and every
rule names a route that exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp import web

from naraft.api.access import ACCESS, Level, rule_for
from naraft.api.app import PEER_PATHS
from naraft.config_sources import build_config
from naraft.node import DB_FILE, _load_tls, _open, _wire
from naraft.transport.auth import SECRET_ENV_VAR


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    config = build_config(
        {
            "id": "127.0.0.1:7001",
            "peers": ("127.0.0.1:7001", "127.0.0.1:7002"),
            "data-dir": tmp_path,
        },
        {SECRET_ENV_VAR: "a-secret-long-enough-for-the-test"},
    )
    executor = ThreadPoolExecutor(max_workers=1)
    opened = _open(tmp_path / DB_FILE, config.id)
    try:
        yield _wire(config, opened, executor, _load_tls(config)).app
    finally:
        opened.store.close()
        executor.shutdown()


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        assert route.resource is not None
        found.add((route.method, route.resource.canonical))
    return found


async def test_every_route_is_classified(app: web.Application) -> None:
    peer = app[PEER_PATHS]
    assert peer, "the node registers its peer routes apart"
    unclassified = sorted(
        (method, path)
        for method, path in routes_of(app)
        if path not in peer and rule_for(method, path) is None
    )
    assert unclassified == [], "routes without an access rule (add them to api/access.py)"


async def test_every_rule_names_a_real_route(app: web.Application) -> None:
    assert sorted(set(ACCESS) - routes_of(app)) == []


async def test_peer_routes_are_not_client_routes(app: web.Application) -> None:
    assert not {path for _, path in ACCESS} & app[PEER_PATHS]


def test_the_open_list_is_short_and_deliberate() -> None:
    open_routes = sorted(path for (_, path), rule in ACCESS.items() if rule.level is Level.OPEN)
    assert open_routes == [
        "/",  # redirects to the console
        "/metrics",
        "/nacos",
        "/nacos/",
        "/nacos/actuator/health",  # Spring Boot's probe, as a default Nacos serves it
        "/nacos/actuator/prometheus",  # /metrics, where Nacos's scrape configs look
        "/nacos/index.html",  # Nacos's console address: a redirect to naraft's
        "/nacos/ui/login",  # the console's sign-in (GET and POST)
        "/nacos/ui/login",
        "/nacos/ui/logout",  # clears the session cookie
        "/nacos/ui/static/{name}",  # the console's script and stylesheet
        "/nacos/v1/auth/login",
        "/nacos/v1/auth/users/login",
        "/nacos/v1/console/health/liveness",  # probes: liveness and readiness say no data
        "/nacos/v1/console/health/readiness",
        "/nacos/v1/console/server/state",  # Nacos's console reads it before sign-in
        "/nacos/v1/core/cluster/health",  # a probe: UP or DOWN
        "/nacos/v1/cs/health",  # the config probe: UP or DOWN
        "/nacos/v1/cs/{tail}",  # unknown and unsupported config paths: an error, no data
        "/nacos/v1/ns/health/server",
        "/nacos/v1/ns/raft/leader",
        "/nacos/v1/ns/raft/peer",
        "/nacos/v1/ns/raft/state",
        "/naraft/v1/openapi.json",
        "/naraft/v1/version",  # the build's version, as /metrics's build info
    ]
