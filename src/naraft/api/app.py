"""make_app: the route table of the Nacos v1 and v2 naming APIs, over one NamingService.

Client and peer traffic share one port but not their limits: the client body limit
(`MAX_BODY_BYTES`, checked on Content-Length by a middleware and by `client_max_size` on
reads) never applies to the routes given as `peer_routes`, whose handlers read the stream
themselves under the peer limits (`naraft.transport`: 64 MiB per Raft batch by default).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api import auth as auth_api
from naraft.api.access import access_middleware
from naraft.api.admin import MAX_KV_BODY_BYTES, RAFT_BASE
from naraft.api.auth import AUTH, AuthService
from naraft.api.console.pages import CONFIG_FORM_PATHS, LAST_SEEN, console_routes
from naraft.api.context import NAMING
from naraft.api.edge import edge_middleware, input_middleware
from naraft.api.errors import EDGE_PEER_CERTIFICATE_REQUIRED, Handler, error_middleware
from naraft.api.forward import FORWARDED_HEADER
from naraft.api.health import health_routes
from naraft.api.v1 import catalog, instance, namespace, operator, service
from naraft.api.v1.beats import BEATS_PATH
from naraft.api.v1.configs import CONFIG_API, ConfigApi, config_routes
from naraft.api.v1.operator import SERVERS, ServerDirectory
from naraft.api.v2 import namespaces as v2_namespaces
from naraft.api.v2 import naming as v2_naming
from naraft.api.v2 import operator as v2_operator
from naraft.api.v2.configs import v2_config_routes
from naraft.naming.service import NamingService
from naraft.tls import PEER_CA_FLAG, has_peer_certificate
from naraft.transport.server import track_streams
from naraft.transport.signing import PeerVerifier

logger = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = (
    MAX_KV_BODY_BYTES  # the kv API's largest write; Nacos clients send parameters
)
MAX_PARAMS: Final = 256  # query plus form; Nacos's own endpoints take fewer than 20
SENDER_HEADER: Final = "X-Naraft-Sender"
PEER_PATHS: Final = web.AppKey("peer_paths", set[str])
"""The canonical paths of the peer routes: outside the client limits and the access table."""


def is_peer_request(request: web.BaseRequest) -> bool:
    """Whether a request says it is peer traffic: a peer route naming its sender. The
    connection gate counts such connections apart from clients' (the handlers check the
    signature; a forged claim only moves a connection under the peers' own cap)."""
    if SENDER_HEADER not in request.headers:
        return False
    path = request.path
    return path.startswith(RAFT_BASE + "/") or path == BEATS_PATH


def _body_limit(
    max_body_bytes: int, peer_resources: Collection[str], own_limits: Mapping[str, int]
) -> Middleware:
    """The client body limit; routes in `own_limits` (canonical path → bytes: the config
    routes, whose content may be 10 MiB) have their own, also for reading the body."""

    @web.middleware
    async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        limit = max_body_bytes
        resource = request.match_info.route.resource
        own = own_limits.get(resource.canonical) if resource is not None else None
        length = request.content_length
        if own is not None:
            limit = own
            if length is None or length > max_body_bytes:  # (a small body needs no clone)
                request = request.clone(client_max_size=own)
        if length is not None and length > limit and not _is_peer(request, peer_resources):
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        return await handler(request)

    return body_limit_middleware


def _peer_certificate(peer_resources: Collection[str]) -> Middleware:
    """Peer TLS: peer routes, and writes a member forwarded, only on a connection that
    presented a certificate the peer CA signed (the listener verified it at the handshake;
    clients connect without one). The signature checks behind it stay as they are."""

    @web.middleware
    async def peer_certificate(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = _is_peer(request, peer_resources) or FORWARDED_HEADER in request.headers
        if peer and not has_peer_certificate(request.transport):
            logger.info(
                "refused %s %s from %s: no peer certificate",
                request.method,
                request.path,
                request.remote,
            )
            answer = web.Response(
                status=EDGE_PEER_CERTIFICATE_REQUIRED,
                text="peer traffic needs a client certificate signed by this cluster's"
                f" peer CA ({PEER_CA_FLAG})",
            )
            answer.force_close()
            return answer
        return await handler(request)

    return peer_certificate


def _is_peer(request: web.Request, peer_resources: Collection[str]) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in peer_resources


def make_app(
    naming: NamingService,
    *,
    extra_routes: Iterable[web.AbstractRouteDef] = (),
    peer_routes: Iterable[web.RouteDef] = (),
    servers: ServerDirectory | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_params: int = MAX_PARAMS,
    middlewares: Iterable[Middleware] = (),
    observe: Middleware | None = None,
    configs: ConfigApi | None = None,
    peer_certificate_required: bool = False,
    auth: AuthService | None = None,
    identity_verifier: PeerVerifier | None = None,
) -> web.Application:
    """The client-facing application. `extra_routes` adds other layers' endpoints (raft,
    admin, auth); `peer_routes` adds the peer endpoints, outside the client body limit;
    `servers` feeds `/operator/servers` (default: this node alone); `configs` serves the
    config API (`/nacos/v1/cs/*`, `/nacos/v2/cs/*`, with its own body limit); `middlewares` run
    inside the error and body-limit ones (forwarding to the leader). Outermost,
    `edge_middleware` keeps the connection limits of `naraft.api.edge`; `observe` (request
    metrics and the access log, `naraft.api.observe`) runs right inside it, so that it sees
    every answer as the client gets it; with `peer_certificate_required` (peer TLS), peer
    traffic needs a peer certificate. `auth` adds the auth API, and the access middleware
    (`naraft.api.access`) enforces its rules on every client route; `identity_verifier`
    checks identities forwarded by followers."""
    peer_resources: set[str] = set()  # canonical paths, filled once the routes are added
    own_limits: dict[str, int] = {}  # canonical path -> body limit, for the config routes
    app = web.Application(
        middlewares=[
            edge_middleware(is_peer_request),
            *([observe] if observe is not None else []),
            *([_peer_certificate(peer_resources)] if peer_certificate_required else []),
            error_middleware,
            _body_limit(max_body_bytes, peer_resources, own_limits),
            input_middleware(max_params),
            access_middleware(peer_resources, identity_verifier),
            *middlewares,
        ],
        client_max_size=max_body_bytes,
    )
    app[NAMING] = naming
    app[PEER_PATHS] = peer_resources
    if auth is not None:
        app[AUTH] = auth
        app.router.add_routes(auth_api.routes)
    if servers is not None:
        app[SERVERS] = servers
    v2_modules = (v2_naming, v2_operator, v2_namespaces)
    for module in (instance, service, catalog, operator, namespace, *v2_modules):
        app.router.add_routes(module.routes)
    app.router.add_routes(health_routes())
    app[LAST_SEEN] = {}
    app.router.add_routes(console_routes())
    app.router.add_routes(list(extra_routes))
    if configs is not None:
        app[CONFIG_API] = configs
        for route in app.router.add_routes([*config_routes(), *v2_config_routes()]):
            if route.resource is not None:
                own_limits[route.resource.canonical] = configs.service.settings.max_body_bytes
        for path in CONFIG_FORM_PATHS:  # the console's forms that carry a config's content
            own_limits[path] = configs.service.settings.max_body_bytes
    for route in app.router.add_routes(list(peer_routes)):
        if route.resource is not None:
            peer_resources.add(route.resource.canonical)
    track_streams(app)
    return app
