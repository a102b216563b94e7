"""The replicated auth state: total apply through the state machine, and Nacos's rule."""

from __future__ import annotations

import bcrypt
import orjson
import pytest

from naraft.auth import rules
from naraft.auth import state as auth
from naraft.auth.rules import Need
from naraft.auth.state import ADMIN_ROLE, AuthApplied, AuthRefused, Permission
from naraft.machine import NodeStateMachine
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumTable
from naraft.state.rejections import EntryRejected

KEY = "ab" * 32


def fast_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode()


class Machine:
    def __init__(self) -> None:
        self.datums = DatumTable()
        self.machine = NodeStateMachine(self.datums, NamingState(self.datums))
        self.index = 0

    def apply(self, payload: bytes) -> object:
        self.index += 1
        return self.machine.apply(Entry(index=self.index, term=1, command=payload))


@pytest.fixture
def m() -> Machine:
    machine = Machine()
    assert machine.apply(auth.encode_bootstrap(KEY, fast_hash("first"))) == AuthApplied(True)
    return machine


def test_bootstrap_sets_key_and_admin_once(m: Machine) -> None:
    assert auth.signing_key(m.datums) == bytes.fromhex(KEY)
    admin = auth.read_user(m.datums, "nacos")
    assert admin is not None
    assert bcrypt.checkpw(b"first", admin.password.encode())
    assert auth.is_admin(m.datums, "nacos")
    # a second bootstrap (another leader's, racing) changes nothing
    before = dict(m.datums.items())
    result = m.apply(auth.encode_bootstrap("cd" * 32, fast_hash("second")))
    assert isinstance(result, AuthRefused)
    assert dict(m.datums.items()) == before


def test_a_nacos_hash_is_taken_as_stored() -> None:
    # Nacos's default admin row: $2a$10$ from Spring's BCryptPasswordEncoder ("nacos")
    nacos_row = "$2a$10$EuWPZHzz32dJN7jexM34MOeYirDdFAZm2kuWj7VEOJhhZkDrxfvUu"
    assert auth.check_hash(nacos_row) == nacos_row
    assert bcrypt.checkpw(b"nacos", nacos_row.encode())


def test_users_roles_permissions(m: Machine) -> None:
    assert m.apply(auth.encode_user_create("bob", fast_hash("pw"))) == AuthApplied()
    assert m.apply(auth.encode_user_create("bob", fast_hash("pw"))) == AuthRefused(
        "user 'bob' already exist!"
    )
    assert isinstance(m.apply(auth.encode_role_add("dev", "nobody")), AuthRefused)
    assert m.apply(auth.encode_role_add("dev", "bob")) == AuthApplied()
    assert m.apply(auth.encode_perm(auth.OP_PERM_ADD, "dev", "ns1", "r")) == AuthApplied()
    assert isinstance(m.apply(auth.encode_perm(auth.OP_PERM_ADD, "ghost", "ns1", "r")), AuthRefused)
    assert auth.permissions(m.datums, "dev") == [Permission("dev", "ns1", "r")]
    assert [b.role for b in auth.roles_of(m.datums, "bob")] == ["dev"]
    assert m.apply(auth.encode_user_delete("bob")) == AuthApplied()
    assert auth.read_user(m.datums, "bob") is None
    assert list(auth.roles_of(m.datums, "bob")) == []  # the user's bindings go with it


def test_the_admin_cannot_be_deleted_nor_lose_the_last_admin_role(m: Machine) -> None:
    assert m.apply(auth.encode_user_delete("nacos")) == AuthRefused("cannot delete admin: nacos")
    assert isinstance(m.apply(auth.encode_role_delete(ADMIN_ROLE, None)), AuthRefused)
    assert auth.is_admin(m.datums, "nacos")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"auth.user.create","username":"x","password":"plain-text"}',
        b'{"op":"auth.user.create","username":"a/b","password":"$2a$04$' + b"a" * 53 + b'"}',
        b'{"op":"auth.perm.add","role":"r","resource":"ns","action":"x"}',
        b'{"op":"auth.bootstrap","key":"short","password":"x"}',
        b'{"op":"auth.nope"}',
        b'{"op":"auth.',
    ],
)
def test_an_invalid_command_is_rejected_and_changes_nothing(m: Machine, payload: bytes) -> None:
    before = dict(m.datums.items())
    generation = m.machine.auth_generation
    result = m.apply(payload)
    assert isinstance(result, EntryRejected)
    after = {k: v for k, v in m.datums.items() if not k.startswith("naraft.meta.")}
    assert after == before
    assert m.machine.auth_generation > generation  # caches forget what they read


def test_plain_passwords_never_enter_the_log() -> None:
    payload = auth.encode_user_create("u", fast_hash("secret-pw"))
    assert b"secret-pw" not in payload
    assert orjson.loads(payload)["password"].startswith("$2a$04$")


@pytest.mark.parametrize(
    ("resource", "action", "need", "allowed"),
    [
        ("ns1", "r", Need("ns1:G:naming/svc", "r"), True),
        ("ns1", "r", Need("ns1:G:naming/svc", "w"), False),
        ("ns1", "w", Need("ns1:G:naming/svc", "r"), False),
        ("ns1", "rw", Need("ns1:G:naming/svc", "w"), True),
        ("ns1", "rw", Need("ns2:G:naming/svc", "r"), False),
        ("ns1:*:*", "r", Need("ns1:*:naming/*", "r"), True),
        ("ns1:G:naming/svc", "r", Need("ns1:G:naming/svc", "r"), True),
        ("ns1:G:naming/svc", "r", Need("ns1:G:naming/other", "r"), False),
        ("ns1:G:naming/svc", "r", Need("ns1:*:naming/*", "r"), False),  # a list needs more
        ("public", "r", Need("public:G:naming/s", "r"), True),
        (":*:*", "r", Need("public:G:naming/s", "r"), True),
        ("n.1", "rw", Need("nx1:G:naming/s", "r"), False),  # '.' is not a wildcard
    ],
)
def test_nacos_permission_rule(resource: str, action: str, need: Need, allowed: bool) -> None:
    assert rules.allows([Permission("role", resource, action)], need) is allowed
