"""Nacos's auth API: login, users, roles and permissions (docs/auth.md).

- `POST /nacos/v1/auth/login`, `/nacos/v1/auth/users/login` (`username`, `password`) →
  `{"accessToken","tokenTtl","globalAdmin","username"}` and `Authorization: Bearer` header.
- `/nacos/v1/auth/users`: `POST` create (`username`, `password`, or instead `passwordHash`:
  a bcrypt hash from a Nacos database), `PUT` change a password
  (`username`, `newPassword`), `DELETE` (`username`), `GET` a page (`pageNo`, `pageSize`,
  optional `username` and `search=blur|accurate`); `GET /users/search?username=` names.
- `/nacos/v1/auth/roles`: `POST`/`DELETE` (`role`, `username`), `GET` a page (`username`,
  `role`); `GET /roles/search?role=` names.
- `/nacos/v1/auth/permissions`: `POST`/`DELETE` (`role`, `resource`, `action`), `GET` a
  page (`role`).

Writes answer Nacos's `{"code": 200, "message": ..., "data": null}`; pages Nacos's
`{"totalCount","pageNumber","pagesAvailable","pageItems"}` (users are listed without their
hashes). Passwords are hashed here, off the event loop; the log only ever carries hashes.
Failed logins are counted per source address; past the limit a source is refused for the
rest of the minute without a password check. Every change and every refused login is
written to the `naraft.audit` logger (the node's log).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import bcrypt
from aiohttp import web

from naraft.api.context import json_response
from naraft.api.params import Params, read_params
from naraft.auth import rules, tokens
from naraft.auth import state as auth_state
from naraft.auth.state import ADMIN_ROLE, AuthApplied, AuthRefused, Permission
from naraft.errors import CommandRejectedError, InvalidArgumentError, UnauthorizedError
from naraft.state.datums import DatumTable
from naraft.state.rejections import EntryRejected

logger = logging.getLogger(__name__)
audit = logging.getLogger("naraft.audit")

AUTH_BASE: Final = "/nacos/v1/auth"
LOGIN_PATHS: Final = (f"{AUTH_BASE}/login", f"{AUTH_BASE}/users/login")
BCRYPT_ROUNDS: Final = 10  # Spring's BCryptPasswordEncoder default, as Nacos stores them
MAX_PASSWORD_BYTES: Final = 72  # bcrypt reads no further
MAX_PAGE_SIZE: Final = 500
LOGIN_WINDOW_SECONDS: Final = 60.0
MAX_TRACKED_SOURCES: Final = 10_000
MAX_VERIFIED_TOKENS: Final = 10_000  # signatures checked once; expiry on every use


def hash_password(password: str) -> str:
    """A bcrypt hash in Nacos's format (`$2a$10$...`): slow on purpose, never in apply."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS, prefix=b"2a"))
    return hashed.decode()


def check_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def _password_param(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or not value:
        raise InvalidArgumentError(name, "is required", message=f"Param '{name}' is required")
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidArgumentError(name, f"at most {MAX_PASSWORD_BYTES} bytes")
    return value


def _name_param(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None or not value.strip():
        raise InvalidArgumentError(name, "is required", message=f"Param '{name}' is required")
    try:
        return auth_state.check_name(value.strip(), name)
    except auth_state.AuthCommandError as error:
        raise InvalidArgumentError(name, str(error).split(": ", 1)[1]) from None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: a user, and whether it is a global admin."""

    username: str
    admin: bool


class _Grants:
    """One user's admin flag and permissions, read from the state."""

    __slots__ = ("admin", "permissions")

    def __init__(self, admin: bool, permissions: tuple[Permission, ...]) -> None:
        self.admin = admin
        self.permissions = permissions


class _Snapshot:
    """The auth state as of one generation: the key and every user's grants, read in one
    scan of the auth datums (they change rarely; requests read them on every call)."""

    def __init__(self, datums: DatumTable) -> None:
        self.key = auth_state.signing_key(datums)
        roles: dict[str, set[str]] = {u.username: set() for u in auth_state.users(datums)}
        for binding in auth_state.role_bindings(datums):
            if binding.username in roles:
                roles[binding.username].add(binding.role)
        by_role: dict[str, list[Permission]] = {}
        for permission in auth_state.permissions(datums):
            by_role.setdefault(permission.role, []).append(permission)
        self.grants = {
            user: _Grants(
                ADMIN_ROLE in held,
                tuple(p for role in sorted(held) for p in by_role.get(role, ())),
            )
            for user, held in roles.items()
        }


Propose = Callable[[bytes], Awaitable[object]]


class AuthService:
    """Tokens, logins and the auth state's reads and writes, for the API layer."""

    def __init__(
        self,
        *,
        enabled: bool,
        datums: DatumTable,
        generation: Callable[[], int],
        propose: Propose,
        clock: Callable[[], float],
        token_ttl_seconds: int,
        login_failures_per_minute: int,
    ) -> None:
        self.enabled = enabled
        self._datums = datums
        self._generation = generation
        self._propose = propose
        self._clock = clock
        self.token_ttl_seconds = token_ttl_seconds
        self._failures_allowed = login_failures_per_minute
        self._failures: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        self._snapshot: _Snapshot | None = None
        self._snapshot_generation = -1
        # good signatures under the one key, with the identity as of this snapshot
        self._verified: dict[str, tuple[tokens.Claims, Identity]] = {}
        self._decisions: dict[tuple[str, str, str], bool] = {}  # (user, resource, action)
        self._passwords: dict[str, bytes] = {}  # user -> HMAC of a password bcrypt accepted
        self._digest_key = secrets.token_bytes(32)  # this process's, never stored

    # ------------------------------------------------------------------ tokens

    def _current(self) -> _Snapshot:
        generation = self._generation()
        if self._snapshot is None or self._snapshot_generation != generation:
            self._snapshot = _Snapshot(self._datums)
            self._snapshot_generation = generation
            self._verified.clear()
            self._decisions.clear()
            self._passwords.clear()
        return self._snapshot

    def signing_key(self) -> bytes | None:
        return self._current().key

    def identify(self, token: str) -> Identity:
        """The user a token names; UnauthorizedError (Nacos's message) if it does not hold."""
        snapshot = self._current()
        if snapshot.key is None:
            raise UnauthorizedError("the cluster's auth state is not bootstrapped yet")
        now = self._clock()
        known = self._verified.get(token)
        if known is not None:
            if known[0].expires_at <= now:
                raise UnauthorizedError(tokens.TokenProblem.EXPIRED.value)
            return known[1]
        try:
            claims = tokens.verify(snapshot.key, token, now=now)
        except tokens.TokenError as error:
            raise UnauthorizedError(error.problem.value) from None
        identity = self.identity_of(claims.username)
        if len(self._verified) >= MAX_VERIFIED_TOKENS:
            self._verified.clear()
        self._verified[token] = (claims, identity)
        return identity

    def identity_of(self, username: str) -> Identity:
        grants = self.grants(username)
        if grants is None:
            raise UnauthorizedError(tokens.TokenProblem.MISSING.value)
        return Identity(username=username, admin=grants.admin)

    def grants(self, username: str) -> _Grants | None:
        """The user's admin flag and permissions (None: no such user), as of the last
        applied auth entry or install."""
        return self._current().grants.get(username)

    def allowed(self, identity: Identity, need: rules.Need) -> bool:
        if identity.admin:
            return True
        grants = self.grants(identity.username)  # first: a new snapshot drops the decisions
        key = (identity.username, need.resource, need.action)
        decided = self._decisions.get(key)
        if decided is None:
            decided = grants is not None and rules.allows(grants.permissions, need)
            if len(self._decisions) >= MAX_VERIFIED_TOKENS:
                self._decisions.clear()
            self._decisions[key] = decided
        return decided

    # ------------------------------------------------------------------ logins

    def _refused_source(self, source: str) -> bool:
        now = self._clock()
        times = [t for t in self._failures.get(source, ()) if now - t < LOGIN_WINDOW_SECONDS]
        if times:
            self._failures[source] = times
        else:
            self._failures.pop(source, None)
        return len(times) >= self._failures_allowed

    def _record_failure(self, source: str) -> None:
        self._failures.setdefault(source, []).append(self._clock())
        self._failures.move_to_end(source)
        while len(self._failures) > MAX_TRACKED_SOURCES:
            self._failures.popitem(last=False)

    async def check_credentials(self, username: str, password: str, source: str) -> Identity:
        """The user whose password this is; UnauthorizedError otherwise. Failures count
        against `source`; past the limit it is refused without a password check."""
        if self._refused_source(source):
            audit.warning("login refused: too many failures from %s", source)
            raise UnauthorizedError("too many failed logins from this address; try later")
        key = self.signing_key()
        user = auth_state.read_user(self._datums, username)
        # a missing user costs a hash check too, so timing does not tell names apart
        hashed = user.password if user is not None else await asyncio.to_thread(_dummy_hash)
        good = await asyncio.to_thread(check_password, password, hashed)
        if key is None or user is None or not good:
            self._record_failure(source)
            audit.warning("login failed: user %r from %s", username[:64], source)
            raise UnauthorizedError("unknown user!")
        return self.identity_of(username)

    async def login(self, username: str, password: str, source: str) -> tuple[str, Identity]:
        identity = await self.check_credentials(username, password, source)
        key = self.signing_key()
        assert key is not None  # check_credentials refuses without one
        token = tokens.issue(key, username, now=self._clock(), ttl_seconds=self.token_ttl_seconds)
        return token, identity

    async def identify_by_password(self, username: str, password: str, source: str) -> Identity:
        """For clients that send `username` and `password` on every request instead of a
        token (the npm `nacos` client): checked with bcrypt once, then remembered as a
        keyed digest of the password (never the password) until the auth state changes."""
        self._current()  # a new snapshot (a changed password among others) forgets them all
        digest = hmac.new(self._digest_key, password.encode(), hashlib.sha256).digest()
        known = self._passwords.get(username)
        if known is not None and hmac.compare_digest(known, digest):
            return self.identity_of(username)
        identity = await self.check_credentials(username, password, source)
        if len(self._passwords) >= MAX_VERIFIED_TOKENS:
            self._passwords.clear()
        self._passwords[username] = digest
        return identity

    # ------------------------------------------------------------------ writes

    async def change(self, command: bytes, who: str, what: str) -> AuthApplied:
        result = await self._propose(command)
        if isinstance(result, AuthRefused):
            raise InvalidArgumentError("request", result.message, message=result.message)
        if isinstance(result, EntryRejected):
            raise CommandRejectedError(
                f"the auth change was rejected on apply (nothing changed): {result.detail}"
            )
        if not isinstance(result, AuthApplied):
            raise CommandRejectedError("the state machine refused the auth change")
        audit.info("%s by %s", what, who)
        return result

    @property
    def datums(self) -> DatumTable:
        return self._datums


@functools.cache
def _dummy_hash() -> str:
    """A hash of a password nobody knows, made once: what a login for a missing user checks."""
    return hash_password(secrets.token_hex(8))


AUTH: Final = web.AppKey("auth", AuthService)
IDENTITY: Final = web.RequestKey("naraft.identity", Identity)  # what the access middleware found


def identity_of(request: web.Request) -> Identity | None:
    identity = request.get(IDENTITY)
    return identity if isinstance(identity, Identity) else None


def may_read(request: web.Request, namespace: str, group: str, kind: str, name: str) -> bool:
    """Whether the caller may read the resource named (auth off, the admin, or a read grant
    on it): for a handler that reads more than the parameters the access middleware checked
    (a config clone's sources)."""
    service = request.app.get(AUTH)
    if service is None or not service.enabled:
        return True
    identity = identity_of(request)
    if identity is None:
        return False
    return service.allowed(
        identity, rules.Need(rules.resource_of(namespace, group, kind, name), "r")
    )


def _actor(request: web.Request) -> str:
    identity = identity_of(request)
    who = identity.username if identity is not None else "(auth off)"
    return f"{who} from {request.remote}"


def _rest_ok(message: str) -> web.Response:
    return json_response({"code": 200, "message": message, "data": None})


def _page(params: Params, items: list[dict[str, str]]) -> web.Response:
    page_no = _int_param(params, "pageNo", 1, 1, 1_000_000)
    page_size = _int_param(params, "pageSize", 100, 1, MAX_PAGE_SIZE)
    total = len(items)
    start = (page_no - 1) * page_size
    return json_response(
        {
            "totalCount": total,
            "pageNumber": page_no,
            "pagesAvailable": (total + page_size - 1) // page_size,
            "pageItems": items[start : start + page_size],
        }
    )


def _int_param(params: Params, name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None or not text.strip():
        return default
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise InvalidArgumentError(name, f"must be an integer in {low}..{high}")
    return int(text)


def _matches(value: str, wanted: str | None, blur: bool) -> bool:
    if not wanted:
        return True
    return wanted in value if blur else value == wanted


# ---------------------------------------------------------------------- handlers

routes = web.RouteTableDef()


async def _login(request: web.Request) -> web.Response:
    service = request.app[AUTH]
    params = await read_params(request)
    username = _name_param(params, "username")
    password = _password_param(params, "password")
    token, identity = await service.login(username, password, request.remote or "unknown")
    answer = json_response(
        {
            "accessToken": token,
            "tokenTtl": service.token_ttl_seconds,
            "globalAdmin": identity.admin,
            "username": username,
        }
    )
    answer.headers["Authorization"] = f"Bearer {token}"
    return answer


routes.post(LOGIN_PATHS[0])(_login)
routes.post(LOGIN_PATHS[1])(_login)


@routes.get(f"{AUTH_BASE}/users")
async def list_users(request: web.Request) -> web.Response:
    params = await read_params(request)
    wanted, blur = params.get("username"), params.get("search") == "blur"
    found = auth_state.users(request.app[AUTH].datums)
    return _page(
        params, [{"username": u.username} for u in found if _matches(u.username, wanted, blur)]
    )


@routes.get(f"{AUTH_BASE}/users/search")
async def search_users(request: web.Request) -> web.Response:
    params = await read_params(request)
    wanted = params.get("username") or ""
    names = [u.username for u in auth_state.users(request.app[AUTH].datums)]
    return json_response([n for n in names if wanted in n])


@routes.post(f"{AUTH_BASE}/users")
async def create_user(request: web.Request) -> web.Response:
    return _rest_ok(await user_create(request, await read_params(request)))


async def user_create(request: web.Request, params: Params) -> str:
    """Nacos's create; naraft also takes `passwordHash` (a bcrypt hash as a Nacos database
    stores it) instead of `password`, so that users move over without their passwords. The
    API and the console both call it; it returns the API's message."""
    username = _name_param(params, "username")
    given_hash = params.get("passwordHash")
    if given_hash is not None:
        try:
            hashed = auth_state.check_hash(given_hash.strip())
        except auth_state.AuthCommandError:
            raise InvalidArgumentError(
                "password_hash", "must be a bcrypt hash ($2a$NN$...)"
            ) from None
    else:
        hashed = await asyncio.to_thread(hash_password, _password_param(params, "password"))
    await request.app[AUTH].change(
        auth_state.encode_user_create(username, hashed), _actor(request), f"user {username} created"
    )
    return "create user ok!"


@routes.put(f"{AUTH_BASE}/users")
async def change_password(request: web.Request) -> web.Response:
    params = await read_params(request)
    username = _name_param(params, "username")
    identity = identity_of(request)
    service = request.app[AUTH]
    if service.enabled and (
        identity is None or not (identity.admin or identity.username == username)
    ):
        raise UnauthorizedError("authorization failed!")
    hashed = await asyncio.to_thread(hash_password, _password_param(params, "newPassword"))
    await service.change(
        auth_state.encode_user_password(username, hashed),
        _actor(request),
        f"password of {username} changed",
    )
    return _rest_ok("update user ok!")


@routes.delete(f"{AUTH_BASE}/users")
async def delete_user(request: web.Request) -> web.Response:
    return _rest_ok(await user_delete(request, await read_params(request)))


async def user_delete(request: web.Request, params: Params) -> str:
    username = _name_param(params, "username")
    await request.app[AUTH].change(
        auth_state.encode_user_delete(username), _actor(request), f"user {username} deleted"
    )
    return "delete user ok!"


@routes.get(f"{AUTH_BASE}/roles")
async def list_roles(request: web.Request) -> web.Response:
    params = await read_params(request)
    user, role = params.get("username"), params.get("role")
    blur = params.get("search") == "blur"
    found = auth_state.role_bindings(request.app[AUTH].datums)
    items = [
        {"role": b.role, "username": b.username}
        for b in found
        if _matches(b.username, user, blur) and _matches(b.role, role, blur)
    ]
    return _page(params, items)


@routes.get(f"{AUTH_BASE}/roles/search")
async def search_roles(request: web.Request) -> web.Response:
    params = await read_params(request)
    wanted = params.get("role") or ""
    names = sorted({b.role for b in auth_state.role_bindings(request.app[AUTH].datums)})
    return json_response([n for n in names if wanted in n])


@routes.post(f"{AUTH_BASE}/roles")
async def add_role(request: web.Request) -> web.Response:
    return _rest_ok(await role_add(request, await read_params(request)))


async def role_add(request: web.Request, params: Params) -> str:
    role, username = _name_param(params, "role"), _name_param(params, "username")
    await request.app[AUTH].change(
        auth_state.encode_role_add(role, username),
        _actor(request),
        f"role {role} bound to {username}",
    )
    return "add role ok!"


@routes.delete(f"{AUTH_BASE}/roles")
async def delete_role(request: web.Request) -> web.Response:
    return _rest_ok(await role_delete(request, await read_params(request)))


async def role_delete(request: web.Request, params: Params) -> str:
    role = _name_param(params, "role")
    username = _name_param(params, "username") if params.get("username") else None
    await request.app[AUTH].change(
        auth_state.encode_role_delete(role, username),
        _actor(request),
        f"role {role} removed from {username or 'every user'}",
    )
    if username is None:
        return "delete role ok!"
    return f"delete role of user {username} ok!"


@routes.get(f"{AUTH_BASE}/permissions")
async def list_permissions(request: web.Request) -> web.Response:
    params = await read_params(request)
    role = params.get("role") or None
    found = auth_state.permissions(request.app[AUTH].datums, role)
    return _page(
        params, [{"role": p.role, "resource": p.resource, "action": p.action} for p in found]
    )


def _permission_params(params: Params) -> tuple[str, str, str]:
    role = _name_param(params, "role")
    resource, action = (params.get("resource") or "").strip(), params.get("action")
    try:
        auth_state.check_resource(resource)
        auth_state.check_action(action)
    except auth_state.AuthCommandError as error:
        field, _, rule = str(error).partition(": ")
        raise InvalidArgumentError(field, rule) from None
    assert action is not None
    return role, resource, action


@routes.post(f"{AUTH_BASE}/permissions")
async def add_permission(request: web.Request) -> web.Response:
    return _rest_ok(await permission_add(request, await read_params(request)))


async def permission_add(request: web.Request, params: Params) -> str:
    role, resource, action = _permission_params(params)
    await request.app[AUTH].change(
        auth_state.encode_perm(auth_state.OP_PERM_ADD, role, resource, action),
        _actor(request),
        f"permission {action} on {resource} given to {role}",
    )
    return "add permission ok!"


@routes.delete(f"{AUTH_BASE}/permissions")
async def delete_permission(request: web.Request) -> web.Response:
    return _rest_ok(await permission_delete(request, await read_params(request)))


async def permission_delete(request: web.Request, params: Params) -> str:
    role, resource, action = _permission_params(params)
    await request.app[AUTH].change(
        auth_state.encode_perm(auth_state.OP_PERM_DELETE, role, resource, action),
        _actor(request),
        f"permission {action} on {resource} taken from {role}",
    )
    return "delete permission ok!"
