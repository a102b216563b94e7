"""make_app: the route table of the Nacos v1 naming API, over one NamingService."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api.context import NAMING
from naraft.api.errors import Handler, error_middleware
from naraft.api.v1 import instance, namespace, operator, service
from naraft.api.v1.operator import SERVERS, ServerDirectory
from naraft.naming.service import NamingService

MAX_BODY_BYTES: Final = 1024 * 1024  # parameters only; Nacos clients send empty bodies


def _body_limit(max_body_bytes: int) -> Middleware:
    @web.middleware
    async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_body_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes, actual_size=length)
        return await handler(request)

    return body_limit_middleware


def make_app(
    naming: NamingService,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    servers: ServerDirectory | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    middlewares: Iterable[Middleware] = (),
) -> web.Application:
    """The client-facing application. `extra_routes` adds other layers' endpoints (raft,
    admin, auth); `servers` feeds `/operator/servers` (default: this node alone);
    `middlewares` run inside the error and body-limit ones (forwarding to the leader)."""
    app = web.Application(
        middlewares=[error_middleware, _body_limit(max_body_bytes), *middlewares],
        client_max_size=max_body_bytes,
    )
    app[NAMING] = naming
    if servers is not None:
        app[SERVERS] = servers
    for module in (instance, service, operator, namespace):
        app.router.add_routes(module.routes)
    app.router.add_routes(list(extra_routes))
    return app
