"""The replicated auth state: its log commands, their total apply, and reads.

Everything lives in the datum table under `AUTH_PREFIX`, so digest sync, checksums and
snapshots carry it like any other state:

| key | value |
|---|---|
| `naraft.auth.key` | `{"key": hex}`: the cluster's token signing key (HS256), set once |
| `naraft.auth.user/NAME` | `{"username", "password"}`: the bcrypt hash, Nacos's format |
| `naraft.auth.role/ROLE/NAME` | `{"role", "username"}`: a role bound to a user |
| `naraft.auth.perm/ROLE/ACTION/RESOURCE` | `{"role", "resource", "action"}` |

Commands are JSON objects whose `op` starts with `auth.` (`COMMAND_MARKER`). Passwords
arrive hashed: bcrypt runs at the edge, never inside apply. Apply is deterministic and
validates every field; a command that does not hold raises `AuthCommandError` (the state
machine rolls it back and records the rejection), while a command that is well formed but
refused by the state (a user that exists, one that does not) returns `AuthRefused` and
changes nothing, identically on every replica.

`auth.bootstrap` carries the signing key and the first admin together and applies only on
a cluster without a key: the first leader proposes it, and a second proposal (a leader
change while the first was in flight) finds the key set and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.state.datums import DatumTable

AUTH_PREFIX: Final = "naraft.auth."
KEY_KEY: Final = AUTH_PREFIX + "key"
USER_PREFIX: Final = AUTH_PREFIX + "user/"
ROLE_PREFIX: Final = AUTH_PREFIX + "role/"
PERM_PREFIX: Final = AUTH_PREFIX + "perm/"
COMMAND_MARKER: Final = b'{"op":"auth.'

ADMIN_ROLE: Final = "ROLE_ADMIN"  # Nacos's global admin role
ADMIN_USER: Final = "nacos"  # the first admin: the name Nacos clients default to
ACTIONS: Final = ("r", "w", "rw")
MAX_NAME_CHARS: Final = 64
MAX_RESOURCE_CHARS: Final = 512
KEY_HEX_CHARS: Final = 64  # 32 random bytes
_NAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_HEX: Final = re.compile(r"[0-9a-f]{64}")
# bcrypt as Nacos stores it (Spring's BCryptPasswordEncoder: $2a$, cost 10), 60 characters
_BCRYPT: Final = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_RESOURCE: Final = re.compile(r"[A-Za-z0-9_.:*@/#-]{1,512}")

OP_BOOTSTRAP: Final = "auth.bootstrap"
OP_USER_CREATE: Final = "auth.user.create"
OP_USER_PASSWORD: Final = "auth.user.password"
OP_USER_DELETE: Final = "auth.user.delete"
OP_ROLE_ADD: Final = "auth.role.add"
OP_ROLE_DELETE: Final = "auth.role.delete"
OP_PERM_ADD: Final = "auth.perm.add"
OP_PERM_DELETE: Final = "auth.perm.delete"


class AuthCommandError(ValueError):
    """A log payload that is not a valid auth command (rejected on every replica)."""


@dataclass(frozen=True, slots=True)
class AuthApplied:
    """The command took effect (`bootstrapped`: this was the bootstrap that set the key)."""

    bootstrapped: bool = False


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """The command was well formed but the state refused it; nothing changed. `message`
    is Nacos's wording for the same refusal."""

    message: str


AuthResult = AuthApplied | AuthRefused


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password: str  # the bcrypt hash


@dataclass(frozen=True, slots=True)
class RoleBinding:
    role: str
    username: str


@dataclass(frozen=True, slots=True)
class Permission:
    role: str
    resource: str
    action: str


# ------------------------------------------------------------------ validation


def check_name(value: object, field: str) -> str:
    """A user or role name: 1..64 of letters, digits and `_.@-` (so keys stay unambiguous)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise AuthCommandError(
            f"{field}: must be 1..{MAX_NAME_CHARS} letters, digits or _.@- characters"
        )
    return value


def check_hash(value: object) -> str:
    if not isinstance(value, str) or not _BCRYPT.fullmatch(value):
        raise AuthCommandError("password: must be a bcrypt hash ($2a$NN$ and 53 characters)")
    return value


def check_resource(value: object) -> str:
    """A namespace, or `namespace:group:resource` (each part may use `*`)."""
    if not isinstance(value, str) or not _RESOURCE.fullmatch(value) or value.count(":") > 2:
        raise AuthCommandError(
            "resource: must be a namespace or namespace:group:resource, 1.."
            f"{MAX_RESOURCE_CHARS} characters of letters, digits and _.:*@/#-"
        )
    return value


def check_action(value: object) -> str:
    if value not in ACTIONS:
        raise AuthCommandError(f"action: must be one of {', '.join(ACTIONS)}")
    assert isinstance(value, str)
    return value


# -------------------------------------------------------------------- commands


def encode_bootstrap(key_hex: str, admin_hash: str) -> bytes:
    return orjson.dumps({"op": OP_BOOTSTRAP, "key": key_hex, "password": admin_hash})


def encode_user_create(username: str, password_hash: str) -> bytes:
    return orjson.dumps({"op": OP_USER_CREATE, "username": username, "password": password_hash})


def encode_user_password(username: str, password_hash: str) -> bytes:
    return orjson.dumps({"op": OP_USER_PASSWORD, "username": username, "password": password_hash})


def encode_user_delete(username: str) -> bytes:
    return orjson.dumps({"op": OP_USER_DELETE, "username": username})


def encode_role_add(role: str, username: str) -> bytes:
    return orjson.dumps({"op": OP_ROLE_ADD, "role": role, "username": username})


def encode_role_delete(role: str, username: str | None) -> bytes:
    return orjson.dumps({"op": OP_ROLE_DELETE, "role": role, "username": username})


def encode_perm(op: str, role: str, resource: str, action: str) -> bytes:
    return orjson.dumps({"op": op, "role": role, "resource": resource, "action": action})


def is_auth_command(payload: bytes) -> bool:
    return payload.startswith(COMMAND_MARKER)


def apply_auth(datums: DatumTable, payload: bytes, index: int) -> AuthResult:
    """Apply one auth command as the entry at `index`. Raises AuthCommandError for a
    command that does not hold (the caller rolls back); never reads a clock."""
    try:
        data: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise AuthCommandError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise AuthCommandError("an auth command is a JSON object")
    op = data.get("op")
    store = _Store(datums, index)
    if op == OP_BOOTSTRAP:
        key = data.get("key")
        if not isinstance(key, str) or not _HEX.fullmatch(key):
            raise AuthCommandError(f"key: must be {KEY_HEX_CHARS} lowercase hex characters")
        admin_hash = check_hash(data.get("password"))
        if datums.get(KEY_KEY) is not None:
            return AuthRefused("the cluster's auth state is already bootstrapped")
        datums.put(KEY_KEY, orjson.dumps({"key": key}), index)
        if read_user(datums, ADMIN_USER) is None:  # an imported admin keeps its password
            store.put_user(ADMIN_USER, admin_hash)
        store.put_role(ADMIN_ROLE, ADMIN_USER)
        return AuthApplied(bootstrapped=True)
    if op in (OP_USER_CREATE, OP_USER_PASSWORD):
        username = check_name(data.get("username"), "username")
        password = check_hash(data.get("password"))
        exists = read_user(datums, username) is not None
        if op == OP_USER_CREATE and exists:
            return AuthRefused(f"user '{username}' already exist!")
        if op == OP_USER_PASSWORD and not exists:
            return AuthRefused(f"user {username} not exist!")
        store.put_user(username, password)
        return AuthApplied()
    if op == OP_USER_DELETE:
        username = check_name(data.get("username"), "username")
        if read_user(datums, username) is None:
            return AuthRefused(f"user {username} not exist!")
        if RoleBinding(ADMIN_ROLE, username) in set(roles_of(datums, username)):
            return AuthRefused(f"cannot delete admin: {username}")
        datums.delete(USER_PREFIX + username)
        for binding in list(roles_of(datums, username)):
            datums.delete(_role_key(binding.role, username))
        return AuthApplied()
    if op == OP_ROLE_ADD:
        role = check_name(data.get("role"), "role")
        username = check_name(data.get("username"), "username")
        if read_user(datums, username) is None:
            return AuthRefused(f"user '{username}' not found!")
        if datums.get(_role_key(role, username)) is not None:
            return AuthRefused(f"user '{username}' already bound to the role '{role}'!")
        store.put_role(role, username)
        return AuthApplied()
    if op == OP_ROLE_DELETE:
        role = check_name(data.get("role"), "role")
        who = data.get("username")
        if who is None:
            keys = [k for k, _ in datums.with_prefix(f"{ROLE_PREFIX}{role}/")]
        else:
            keys = [_role_key(role, check_name(who, "username"))]
        if role == ADMIN_ROLE and _would_leave_no_admin(datums, keys):
            return AuthRefused("the last user with ROLE_ADMIN cannot lose it")
        for key in keys:
            datums.delete(key)
        return AuthApplied()
    if op in (OP_PERM_ADD, OP_PERM_DELETE):
        role = check_name(data.get("role"), "role")
        resource = check_resource(data.get("resource"))
        action = check_action(data.get("action"))
        key = _perm_key(role, action, resource)
        if op == OP_PERM_DELETE:
            datums.delete(key)
            return AuthApplied()
        if not any(True for _ in datums.with_prefix(f"{ROLE_PREFIX}{role}/")):
            return AuthRefused(f"role {role} not found!")
        value = {"role": role, "resource": resource, "action": action}
        datums.put(key, orjson.dumps(value), index)
        return AuthApplied()
    raise AuthCommandError(f"unknown auth op {str(op)[:40]!r}")


def _would_leave_no_admin(datums: DatumTable, deleting: list[str]) -> bool:
    admins = {k for k, _ in datums.with_prefix(f"{ROLE_PREFIX}{ADMIN_ROLE}/")}
    return bool(admins) and admins <= set(deleting)


class _Store:
    def __init__(self, datums: DatumTable, index: int) -> None:
        self._datums = datums
        self._index = index

    def put_user(self, username: str, password_hash: str) -> None:
        value = {"username": username, "password": password_hash}
        self._datums.put(USER_PREFIX + username, orjson.dumps(value), self._index)

    def put_role(self, role: str, username: str) -> None:
        value = {"role": role, "username": username}
        self._datums.put(_role_key(role, username), orjson.dumps(value), self._index)


def _role_key(role: str, username: str) -> str:
    return f"{ROLE_PREFIX}{role}/{username}"


def _perm_key(role: str, action: str, resource: str) -> str:
    return f"{PERM_PREFIX}{role}/{action}/{resource}"


# ----------------------------------------------------------------------- reads


def signing_key(datums: DatumTable) -> bytes | None:
    """The cluster's token signing key, once bootstrapped."""
    datum = datums.get(KEY_KEY)
    if datum is None:
        return None
    return bytes.fromhex(orjson.loads(datum.value)["key"])


def read_user(datums: DatumTable, username: str) -> User | None:
    datum = datums.get(USER_PREFIX + username)
    if datum is None:
        return None
    data = orjson.loads(datum.value)
    return User(username=data["username"], password=data["password"])


def users(datums: DatumTable) -> list[User]:
    found = [orjson.loads(d.value) for _, d in datums.with_prefix(USER_PREFIX)]
    return sorted((User(u["username"], u["password"]) for u in found), key=lambda u: u.username)


def role_bindings(datums: DatumTable) -> list[RoleBinding]:
    found = [orjson.loads(d.value) for _, d in datums.with_prefix(ROLE_PREFIX)]
    return sorted(
        (RoleBinding(b["role"], b["username"]) for b in found),
        key=lambda b: (b.role, b.username),
    )


def roles_of(datums: DatumTable, username: str) -> Iterator[RoleBinding]:
    return (b for b in role_bindings(datums) if b.username == username)


def permissions(datums: DatumTable, role: str | None = None) -> list[Permission]:
    prefix = PERM_PREFIX if role is None else f"{PERM_PREFIX}{role}/"
    found = [orjson.loads(d.value) for _, d in datums.with_prefix(prefix)]
    return sorted(
        (Permission(p["role"], p["resource"], p["action"]) for p in found),
        key=lambda p: (p.role, p.resource, p.action),
    )


def is_admin(datums: DatumTable, username: str) -> bool:
    return datums.get(_role_key(ADMIN_ROLE, username)) is not None
