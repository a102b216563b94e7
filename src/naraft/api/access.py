"""Who may call what: the one table of every client route's access rule, and the one
middleware that enforces it (docs/auth.md).

Each route (method, path) has one `Rule`:

- `OPEN`: anyone (health probes, login, the OpenAPI description, Raft status and metrics);
- `USER`: any signed-in user;
- `READ`/`WRITE` of `naming` or `config`: Nacos's permission on the resource the request
  names, read from the parameters its handler reads (`namespaceId`, `groupName`,
  `serviceName`; `tenant` (v2: `namespaceId`, else `tenant`), `group`, `dataId`);
- `ADMIN`: a user with `ROLE_ADMIN`.

Peer routes are not in the table: `make_app` registers them apart, and their handlers take
only requests signed by a member (`naraft.transport.signing`). A route in neither is
refused (403), and `tests/api/test_access_table.py` walks the route table so that none is.

Who the caller is: a token in the `accessToken` parameter or an `Authorization: Bearer`
header; on console routes only, the console's session cookie (`naraft.api.console.session`);
or `username` and `password` parameters, as the npm client sends them on every
request (not on admin routes, whose own parameters use those names); or, on a request a
follower forwarded to the leader, the identity the follower
verified, carried in `IDENTITY_HEADER` and trusted only when the request carries a valid
peer signature of a member over its method, path and body. A client that sends that header
itself is refused. Nothing else identifies anyone: not the `User-Agent` (Nacos's
CVE-2021-29441), not a server-name header.

With auth off, the middleware only refuses a client-sent identity header.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api.admin import (
    ACTUATOR_PROMETHEUS_PATH,
    KV_BASE,
    OPENAPI_PATH,
    RAFT_BASE,
    VERSION_PATH,
)
from naraft.api.auth import AUTH, AUTH_BASE, IDENTITY, LOGIN_PATHS, Identity
from naraft.api.console.session import (
    CONFIG_CLONE_PATH,
    CONFIG_EXPORT_PATH,
    CONFIG_IMPORT_PATH,
    CONSOLE_BASE,
    LOGIN_PATH,
    NAMESPACE_WIDE_PATHS,
    is_console_path,
    session_token,
)
from naraft.api.core_ops import CORE_OPS_LOG_PATH, CORE_OPS_RAFT_PATH
from naraft.api.errors import Handler, Refusal, json_refusal
from naraft.api.health import (
    ACTUATOR_HEALTH_PATH,
    CONFIG_HEALTH_PATH,
    LIVENESS_PATH,
    READINESS_PATH,
)
from naraft.api.members import MEMBERS_PATH
from naraft.api.params import ONLY_BODY_LIMIT, read_params
from naraft.api.snapshot import SNAPSHOT_PATH
from naraft.api.v1.configs import CONFIG_ROUTES, is_clone, is_import
from naraft.api.v2.configs import CS_BASE as V2_CS_BASE
from naraft.api.v2.configs import V2_CONFIG_ROUTES, namespace_of
from naraft.api.v2.naming import INSTANCE_PATH as V2_INSTANCE
from naraft.api.v2.naming import SERVICE_PATH as V2_SERVICE
from naraft.auth.rules import Need, resource_of, touches_namespace
from naraft.errors import UnauthorizedError
from naraft.transport.signing import PeerSigner, PeerVerifier, SignatureError

IDENTITY_HEADER: Final = "X-Naraft-Identity"
AUTHORIZATION: Final = "Authorization"
FORBIDDEN: Final = "authorization failed!"  # Nacos's message for a missing permission


class Level(enum.Enum):
    OPEN = "open"
    USER = "user"
    READ = "r"
    WRITE = "w"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Rule:
    level: Level
    kind: str = ""  # for READ/WRITE: "naming" or "config"


OPEN: Final = Rule(Level.OPEN)
USER: Final = Rule(Level.USER)
ADMIN: Final = Rule(Level.ADMIN)
NAMING_R: Final = Rule(Level.READ, "naming")
NAMING_W: Final = Rule(Level.WRITE, "naming")

CONFIG_R: Final = Rule(Level.READ, "config")
CONFIG_W: Final = Rule(Level.WRITE, "config")

_NS: Final = "/nacos/v1/ns"


def _canonical(path: str) -> str:
    """A route path as aiohttp's `resource.canonical` spells it (`{tail:.*}` -> `{tail}`)."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


# config (v1 and v2): Nacos's permission on `namespace:group:dataId`; the catch-all that answers
# unknown and unsupported /nacos/v1/cs paths holds no data and is open
_CONFIG_RULES: Final = {
    (route.method, _canonical(route.path)): (
        CONFIG_R if route.action == "r" else CONFIG_W if route.action == "w" else OPEN
    )
    for route in (*CONFIG_ROUTES, *V2_CONFIG_ROUTES)
}

_OPERATOR_RULES: Final = {
    ("GET", "switches"): USER,
    ("PUT", "switches"): ADMIN,
    ("GET", "metrics"): USER,
    ("GET", "servers"): USER,
    ("GET", "push/state"): USER,  # counts (`reset` forgets only pending acks of pushes)
    ("PUT", "log"): ADMIN,  # a node's log levels: an operator's act
    ("GET", "cluster/state"): USER,  # the local Raft peer (`/raft/peer` shows it openly)
    ("GET", "distro/server"): NAMING_R,  # names the service: its read permission
    ("GET", "distro/status"): USER,  # the members, as /servers
}

ACCESS: Final[Mapping[tuple[str, str], Rule]] = {
    # naming: Nacos's permission on the namespace, group and service named
    ("POST", f"{_NS}/instance"): NAMING_W,
    ("PUT", f"{_NS}/instance"): NAMING_W,
    ("PATCH", f"{_NS}/instance"): NAMING_W,
    ("PUT", f"{_NS}/instance/metadata/batch"): NAMING_W,
    ("DELETE", f"{_NS}/instance/metadata/batch"): NAMING_W,
    ("DELETE", f"{_NS}/instance"): NAMING_W,
    ("GET", f"{_NS}/instance"): NAMING_R,
    ("GET", f"{_NS}/instance/list"): NAMING_R,
    ("PUT", f"{_NS}/instance/beat"): NAMING_W,
    ("GET", f"{_NS}/instance/statuses"): NAMING_R,
    ("POST", f"{_NS}/service"): NAMING_W,
    ("PUT", f"{_NS}/service"): NAMING_W,
    ("DELETE", f"{_NS}/service"): ADMIN,  # takes every instance with it
    ("GET", f"{_NS}/service"): NAMING_R,
    ("GET", f"{_NS}/service/list"): NAMING_R,
    ("GET", f"{_NS}/service/names"): NAMING_R,
    ("GET", f"{_NS}/service/subscribers"): NAMING_R,
    ("PUT", f"{_NS}/cluster"): NAMING_W,  # the service's: Nacos's NamingResourceParser
    ("GET", f"{_NS}/catalog/services"): NAMING_R,  # the namespace's (no group or service named)
    ("GET", f"{_NS}/catalog/service"): NAMING_R,
    ("GET", f"{_NS}/catalog/instances"): NAMING_R,
    ("GET", f"{_NS}/catalog/rt/service"): NAMING_R,
    # the Nacos 2.x naming API: the same rules as v1's routes
    ("POST", V2_INSTANCE): NAMING_W,
    ("PUT", V2_INSTANCE): NAMING_W,
    ("PUT", f"{V2_INSTANCE}/metadata/batch"): NAMING_W,
    ("DELETE", f"{V2_INSTANCE}/metadata/batch"): NAMING_W,
    ("DELETE", V2_INSTANCE): NAMING_W,
    ("GET", V2_INSTANCE): NAMING_R,
    ("GET", f"{V2_INSTANCE}/list"): NAMING_R,
    ("PUT", f"{V2_INSTANCE}/beat"): NAMING_W,
    ("POST", V2_SERVICE): NAMING_W,
    ("PUT", V2_SERVICE): NAMING_W,
    ("DELETE", V2_SERVICE): ADMIN,  # takes every instance with it, as v1's
    ("GET", V2_SERVICE): NAMING_R,
    ("GET", f"{V2_SERVICE}/list"): NAMING_R,
    ("PUT", "/nacos/v2/ns/health/instance"): ADMIN,  # as v1's health overrides
    **{
        (method, f"/nacos/v2/ns/{base}/{tail}"): rule
        for (method, tail), rule in _OPERATOR_RULES.items()
        for base in ("operator", "ops")
        if tail in ("switches", "metrics")
    },
    ("GET", "/nacos/v2/core/cluster/node/self"): USER,  # as v1's core cluster routes
    ("GET", "/nacos/v2/core/cluster/node/list"): USER,
    ("GET", "/nacos/v2/core/cluster/node/self/health"): USER,
    # Nacos 2.x's client views (`nacos/admin` in Nacos): connections, their addresses and
    # apps, across every namespace
    **{
        ("GET", f"/nacos/v2/ns/client{tail}"): ADMIN
        for tail in (
            "",
            "/list",
            "/publish/list",
            "/subscribe/list",
            "/service/publisher/list",
            "/service/subscriber/list",
        )
    },
    # the cluster's own switches, metrics, push counts, log levels (each at /operator and
    # at /ops, as Nacos serves them), health overrides and namespaces
    **{
        (method, f"{_NS}/{base}/{tail}"): rule
        for (method, tail), rule in _OPERATOR_RULES.items()
        for base in ("operator", "ops")
    },
    ("GET", "/nacos/v1/core/cluster/nodes"): USER,  # the same members, in Nacos's core API
    ("GET", "/nacos/v1/core/cluster/simple/nodes"): USER,
    ("GET", "/nacos/v1/core/cluster/self"): USER,
    ("GET", "/nacos/v1/core/cluster/health"): OPEN,  # a health probe: UP or DOWN
    ("GET", "/nacos/v1/console/server/state"): OPEN,  # mode and version, read before sign-in
    ("PUT", f"{_NS}/health"): ADMIN,
    ("PUT", f"{_NS}/health/instance"): ADMIN,
    ("GET", f"{_NS}/health/server"): OPEN,  # a health probe
    ("GET", f"{_NS}/health/checkers"): USER,  # the checker types: no data
    ("GET", "/nacos/v1/console/namespaces"): USER,
    ("POST", "/nacos/v1/console/namespaces"): ADMIN,
    ("PUT", "/nacos/v1/console/namespaces"): ADMIN,
    ("DELETE", "/nacos/v1/console/namespaces"): ADMIN,
    ("GET", "/nacos/v2/console/namespace/list"): USER,  # as v1's: only those one may see
    ("GET", "/nacos/v2/console/namespace"): USER,
    ("POST", "/nacos/v2/console/namespace"): ADMIN,
    ("PUT", "/nacos/v2/console/namespace"): ADMIN,
    ("DELETE", "/nacos/v2/console/namespace"): ADMIN,
    # naraft's kv API has no namespaces: the whole of it is the admin's
    ("GET", f"{KV_BASE}/{{key}}"): ADMIN,
    ("PUT", f"{KV_BASE}/{{key}}"): ADMIN,
    ("DELETE", f"{KV_BASE}/{{key}}"): ADMIN,
    # status probes (no user data, no secrets): launchers and `naraft status` find leaders
    ("GET", f"{RAFT_BASE}/leader"): OPEN,
    ("GET", f"{RAFT_BASE}/state"): OPEN,
    ("GET", f"{RAFT_BASE}/peer"): OPEN,
    ("POST", f"{RAFT_BASE}/transfer"): ADMIN,  # moves the leader: an operator's act
    ("GET", SNAPSHOT_PATH): ADMIN,  # every datum, users' password hashes included
    ("GET", MEMBERS_PATH): ADMIN,  # the members' addresses and progress
    ("POST", MEMBERS_PATH): ADMIN,  # changes who votes: an operator's act
    ("POST", CORE_OPS_RAFT_PATH): ADMIN,  # Nacos's leader transfer and member removal
    ("PUT", CORE_OPS_LOG_PATH): ADMIN,  # a node's log levels, as /operator/log
    ("GET", "/metrics"): OPEN,
    ("GET", ACTUATOR_PROMETHEUS_PATH): OPEN,  # the same, where Nacos's scrapers look
    ("GET", OPENAPI_PATH): OPEN,
    # liveness, readiness and the build: probes and dashboards, no data
    ("GET", LIVENESS_PATH): OPEN,
    ("GET", READINESS_PATH): OPEN,
    ("GET", ACTUATOR_HEALTH_PATH): OPEN,
    ("GET", CONFIG_HEALTH_PATH): OPEN,  # Nacos's config probe: UP or DOWN
    ("GET", VERSION_PATH): OPEN,
    # auth: logins are open; changing one's own password is the handler's check
    ("POST", LOGIN_PATHS[0]): OPEN,
    ("POST", LOGIN_PATHS[1]): OPEN,
    ("GET", f"{AUTH_BASE}/users"): ADMIN,
    ("GET", f"{AUTH_BASE}/users/search"): ADMIN,
    ("POST", f"{AUTH_BASE}/users"): ADMIN,
    ("PUT", f"{AUTH_BASE}/users"): USER,
    ("DELETE", f"{AUTH_BASE}/users"): ADMIN,
    ("GET", f"{AUTH_BASE}/roles"): ADMIN,
    ("GET", f"{AUTH_BASE}/roles/search"): ADMIN,
    ("POST", f"{AUTH_BASE}/roles"): ADMIN,
    ("DELETE", f"{AUTH_BASE}/roles"): ADMIN,
    ("GET", f"{AUTH_BASE}/permissions"): ADMIN,
    ("POST", f"{AUTH_BASE}/permissions"): ADMIN,
    ("DELETE", f"{AUTH_BASE}/permissions"): ADMIN,
    **_CONFIG_RULES,
    # the console (naraft.api.console): the same rules as the API routes its pages read and
    # write, over the same parameters; its session is a cookie taken on these routes only
    ("GET", "/"): OPEN,  # redirects to the console
    ("GET", "/nacos"): OPEN,
    ("GET", "/nacos/"): OPEN,
    ("GET", "/nacos/index.html"): OPEN,
    ("GET", LOGIN_PATH): OPEN,
    ("POST", LOGIN_PATH): OPEN,
    ("POST", f"{CONSOLE_BASE}/logout"): OPEN,  # only clears the cookie
    ("GET", f"{CONSOLE_BASE}/static/{{name}}"): OPEN,
    ("GET", f"{CONSOLE_BASE}/cluster"): USER,
    ("GET", f"{CONSOLE_BASE}/cluster/members"): USER,
    ("POST", f"{CONSOLE_BASE}/cluster/transfer"): ADMIN,  # as the API's raft/transfer
    ("POST", f"{CONSOLE_BASE}/cluster/members"): ADMIN,  # as the API's POST /members
    ("GET", f"{CONSOLE_BASE}/services"): NAMING_R,
    ("GET", f"{CONSOLE_BASE}/service"): NAMING_R,
    ("POST", f"{CONSOLE_BASE}/instance"): NAMING_W,
    ("POST", f"{CONSOLE_BASE}/service/cluster"): NAMING_W,  # as the API's PUT /cluster
    ("GET", f"{CONSOLE_BASE}/configs"): CONFIG_R,
    ("GET", f"{CONSOLE_BASE}/config"): CONFIG_R,
    ("POST", f"{CONSOLE_BASE}/config/preview"): CONFIG_W,
    ("POST", f"{CONSOLE_BASE}/config"): CONFIG_W,
    ("POST", f"{CONSOLE_BASE}/config/delete"): CONFIG_W,
    ("GET", f"{CONSOLE_BASE}/config/history"): CONFIG_R,
    ("GET", f"{CONSOLE_BASE}/config/diff"): CONFIG_R,
    ("POST", f"{CONSOLE_BASE}/config/rollback"): CONFIG_W,
    # the export and import zips: any config of the namespace, so the namespace's permission
    ("GET", CONFIG_EXPORT_PATH): CONFIG_R,
    ("POST", CONFIG_IMPORT_PATH): CONFIG_W,
    # the clone: the ticked configs of `tenant` shown (GET); copied into `tenant` (POST)
    ("GET", CONFIG_CLONE_PATH): CONFIG_R,
    ("POST", CONFIG_CLONE_PATH): CONFIG_W,
    ("GET", f"{CONSOLE_BASE}/namespaces"): USER,  # lists only the namespaces one may see
    ("POST", f"{CONSOLE_BASE}/namespaces"): ADMIN,
    ("GET", f"{CONSOLE_BASE}/users"): ADMIN,  # users, roles and permissions
    ("POST", f"{CONSOLE_BASE}/users"): ADMIN,
}


def rule_for(method: str, canonical: str) -> Rule | None:
    """The rule of a route (HEAD is GET's; a route for every method is listed as `*`),
    or None: not in the table."""
    rule = ACCESS.get(("GET" if method == "HEAD" else method, canonical))
    return rule if rule is not None else ACCESS.get(("*", canonical))


def _is_peer_route(request: web.Request, peer_resources: Collection[str]) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in peer_resources


def _token_of(request: web.Request, form_token: str | None) -> str | None:
    header = request.headers.get(AUTHORIZATION, "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    token = request.query.get("accessToken") or form_token
    return token or None


def _split_service(group: str | None, service: str | None) -> tuple[str | None, str | None]:
    """Nacos's `GROUP@@service` names its group."""
    if service and "@@" in service:
        head, _, tail = service.partition("@@")
        return head or group, tail
    return group, service


def _forbidden(request: web.Request, message: str) -> web.StreamResponse:
    if is_console_path(request.path) and request.method == "GET" and message != FORBIDDEN:
        # a console page without a (valid) session: sign in first, then come back
        raise web.HTTPSeeOther(f"{LOGIN_PATH}?next={quote(request.path_qs, safe='')}")
    if request.path.startswith(KV_BASE):
        return json_refusal(Refusal.FORBIDDEN, message)
    raise UnauthorizedError(message)


def access_middleware(
    peer_resources: Collection[str],
    verifier: PeerVerifier | None,
) -> Middleware:
    """The middleware enforcing `ACCESS` (place it inside the error middleware and outside
    the forward one). `peer_resources`: the canonical paths of the peer routes; `verifier`
    checks a forwarded identity's peer signature (None: no forwarded identity is taken)."""

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route.resource is None:  # no such route: 404/405 as before
            return await handler(request)
        if _is_peer_route(request, peer_resources):
            return await handler(request)  # signed by a member, checked by the handler
        forwarded = IDENTITY_HEADER in request.headers
        if forwarded and not await _peer_signed(request, verifier):
            return _forbidden(request, "an identity header is only taken from a member")
        service = request.app.get(AUTH)
        if service is None or not service.enabled:
            return await handler(request)
        rule = rule_for(request.method, route.resource.canonical)
        if rule is None:
            return _forbidden(
                request, f"{request.method} {route.resource.canonical} has no access rule"
            )
        if rule.level is Level.OPEN:
            return await handler(request)
        params = await read_params(request, max_value_chars=ONLY_BODY_LIMIT)
        token = _token_of(request, params.get("accessToken")) or session_token(request)
        username, password = params.get("username"), params.get("password")
        try:
            if forwarded:  # a member verified the caller and signed who it is
                identity = service.identity_of(request.headers[IDENTITY_HEADER])
            elif token is not None:
                identity = service.identify(token)
            elif username and password and rule.level is not Level.ADMIN:
                # the npm client's way: credentials on every request, no token
                source = request.remote or "unknown"
                identity = await service.identify_by_password(username, password, source)
            else:
                return _forbidden(request, "user not found!")
        except UnauthorizedError as error:
            return _forbidden(request, str(error))
        request[IDENTITY] = identity
        if rule.level is Level.USER or identity.admin:
            return await handler(request)
        if rule.level is Level.ADMIN:
            return _forbidden(request, FORBIDDEN)
        # the parameters the handler reads, and no other: a permission checked on one
        # namespace must not let a request write another
        if rule.kind == "config":
            v2 = request.path.startswith(V2_CS_BASE + "/")
            namespace = namespace_of(params) if v2 else params.get("tenant")
            group, name = params.get("group"), params.get("dataId")
            if not v2 and request.method == "POST" and is_import(params):
                # an import writes any group and dataId of the namespace it names
                namespace, group, name = params.get("namespace"), None, None
            elif request.path in NAMESPACE_WIDE_PATHS or (
                not v2 and request.method == "POST" and is_clone(params)
            ):  # the console's zips and clone; a clone writes any name of its `tenant`
                group, name = None, None
        else:
            namespace = params.get("namespaceId")
            group, name = _split_service(params.get("groupName"), params.get("serviceName"))
        need = Need(resource_of(namespace, group, rule.kind, name), rule.level.value)
        if not service.allowed(identity, need):
            return _forbidden(request, FORBIDDEN)
        return await handler(request)

    return check_access


async def _peer_signed(request: web.Request, verifier: PeerVerifier | None) -> bool:
    """Whether a request carrying an identity header is signed by a member for this node."""
    if verifier is None or not verifier.enabled:
        return False
    try:
        claim = verifier.claim(request.method, request.raw_path, request.headers)
        verifier.admit(claim, await request.read())
    except SignatureError:
        return False
    return claim is not None


def identity_headers(
    request: web.Request, signer: PeerSigner | None, leader: str, body: bytes
) -> dict[str, str]:
    """The headers a follower adds to a request it forwards to `leader`: the identity it
    verified, signed with the peer signature over the request (none when there is no
    identity or no signer; the leader then checks the client's token itself)."""
    identity = request.get(IDENTITY)
    if not isinstance(identity, Identity) or signer is None:
        return {}
    headers = signer.headers(request.method, request.raw_path, leader, body)
    if len(headers) == 1:  # no secret: unsigned, so worth nothing to the leader
        return {}
    headers[IDENTITY_HEADER] = identity.username
    return headers


def sees_namespace(request: web.Request, namespace: str) -> bool:
    """Whether the caller may learn that `namespace` exists: auth off, the admin, or a user
    with any permission in it (the namespace list shows a user only those)."""
    service = request.app.get(AUTH)
    identity = request.get(IDENTITY)
    if service is None or not service.enabled or not isinstance(identity, Identity):
        return True
    if identity.admin:
        return True
    grants = service.grants(identity.username)
    return grants is not None and touches_namespace(grants.permissions, namespace)
