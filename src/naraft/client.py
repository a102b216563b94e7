"""The client side of naraft's HTTP API: its paths, the parsing of a node's Raft status, and
the one rule that turns the answer to a write into what a client may conclude from it.

Everything that talks to a running node from outside (the `naraft cluster up` and `status`
commands, `naraft.cluster`, the chaos campaign, the end-to-end tests, the benchmarks) spells
the paths and judges write answers through this module, so that a path or a rule changes in
one place. It uses the standard library (sync) and aiohttp (async) only, both runtime
dependencies; the server never imports it.
"""

from __future__ import annotations

import enum
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

RAFT_PATH: Final = "/nacos/v1/ns/raft"
STATE_PATH: Final = f"{RAFT_PATH}/state"
TRANSFER_PATH: Final = f"{RAFT_PATH}/transfer"
LEADER_PATH: Final = f"{RAFT_PATH}/leader"
KV_PATH: Final = "/naraft/v1/kv"
MEMBERS_PATH: Final = "/naraft/v1/members"
INSTANCE_PATH: Final = "/nacos/v1/ns/instance"
INSTANCE_LIST_PATH: Final = f"{INSTANCE_PATH}/list"
METADATA_BATCH_PATH: Final = f"{INSTANCE_PATH}/metadata/batch"  # Nacos's batch metadata
SERVICE_PATH: Final = "/nacos/v1/ns/service"
CLUSTER_PATH: Final = "/nacos/v1/ns/cluster"  # Nacos's cluster update
SWITCHES_PATH: Final = "/nacos/v1/ns/operator/switches"
CONFIGS_PATH: Final = "/nacos/v1/cs/configs"
CONFIG_LISTENER_PATH: Final = f"{CONFIGS_PATH}/listener"
FAILPOINTS_PATH: Final = "/naraft/v1/debug/failpoints"
HEALTH_PATH: Final = "/nacos/v1/console/health"
LIVENESS_PATH: Final = f"{HEALTH_PATH}/liveness"
READINESS_PATH: Final = f"{HEALTH_PATH}/readiness"
SERVER_HEALTH_PATH: Final = "/nacos/v1/ns/health/server"
OPERATOR_METRICS_PATH: Final = "/nacos/v1/ns/operator/metrics"
PROMETHEUS_PATH: Final = "/metrics"
ACTUATOR_HEALTH_PATH: Final = "/nacos/actuator/health"  # Spring Boot's, as Nacos serves it
CONFIG_HEALTH_PATH: Final = "/nacos/v1/cs/health"  # Nacos's config probe
ACTUATOR_PROMETHEUS_PATH: Final = "/nacos/actuator/prometheus"  # /metrics, Nacos's path
VERSION_PATH: Final = "/naraft/v1/version"
LOGIN_PATH: Final = "/nacos/v1/auth/login"
CLIENTS_PATH: Final = "/nacos/v2/ns/client"  # Nacos 2.x's client views
PUBLISHERS_PATH: Final = f"{CLIENTS_PATH}/service/publisher/list"  # who registered what
ADMIN_USER: Final = "nacos"
STATUS_TIMEOUT_SECONDS: Final = 2.0


def kv_path(key: str) -> str:
    return f"{KV_PATH}/{key}"


# ---------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """The parts of `GET /nacos/v1/ns/raft/state` a client acts on; `raw` keeps the rest
    (peers, catch-up and checksum parts, quota) for callers that want them."""

    id: str
    role: str  # "leader", "follower", "candidate", "pre-candidate"
    term: int
    leader: str | None
    commit_index: int
    applied_index: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def leads(self) -> bool:
        return self.role == "leader"


def parse_status(data: object) -> NodeStatus:
    """A `/raft/state` answer as a `NodeStatus`; ValueError naming the field when it is not
    one (a node of another version, or not a naraft node at all)."""
    if not isinstance(data, dict):
        raise ValueError(f"raft state: expected a JSON object, got {type(data).__name__}")
    try:
        leader = data["leader"]
        if leader is not None and not isinstance(leader, str):
            raise ValueError("raft state: leader must be a string or null")
        return NodeStatus(
            id=str(data["id"]),
            role=str(data["role"]),
            term=int(data["term"]),
            leader=leader,
            commit_index=int(data["commitIndex"]),
            applied_index=int(data["appliedIndex"]),
            raw=data,
        )
    except KeyError as error:
        raise ValueError(f"raft state: missing field {error.args[0]}") from None
    except TypeError as error:
        raise ValueError(f"raft state: {error}") from None


def get_json(
    url: str,
    *,
    timeout_seconds: float = STATUS_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> Any:
    """GET `url` and decode its JSON body (sync, standard library). Raises OSError (which
    includes urllib's errors and TLS failures) when the node does not answer 200, ValueError
    on a bad body. An https `url` is verified with `ssl_context` (`naraft.tls.client_context`
    for a private CA), else against the system's CAs."""
    with urllib.request.urlopen(url, timeout=timeout_seconds, context=ssl_context) as answer:
        return json.loads(answer.read())


def get_status(
    base_url: str,
    *,
    timeout_seconds: float = STATUS_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> NodeStatus:
    """The status of the node at `base_url` (`http://127.0.0.1:8848`, or https with
    `ssl_context`), sync."""
    return parse_status(
        get_json(
            f"{base_url}{STATE_PATH}", timeout_seconds=timeout_seconds, ssl_context=ssl_context
        )
    )


def try_status(
    base_url: str,
    *,
    timeout_seconds: float = STATUS_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> NodeStatus | None:
    """`get_status`, or None when the node does not answer (down, paused, not serving)."""
    try:
        return get_status(base_url, timeout_seconds=timeout_seconds, ssl_context=ssl_context)
    except (OSError, ValueError):
        return None


def transfer_leadership(
    base_url: str,
    target: str | None = None,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float = 30.0,
) -> Any:
    """Ask the cluster behind `base_url` (any member) to hand leadership over to `target`
    (default: the most caught-up member); the decoded answer, `{"leader", "previous",
    "term"}`. With auth on, `token` is an admin's (see `login`). Raises
    urllib.error.HTTPError with the refusal in its body, OSError when the node does not
    answer."""
    query = f"?{urllib.parse.urlencode({'to': target})}" if target else ""
    request = urllib.request.Request(
        f"{base_url}{TRANSFER_PATH}{query}",
        method="POST",
        headers=bearer(token) if token is not None else {},
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds, context=ssl_context) as answer:
        return json.loads(answer.read())


def list_members(
    base_url: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float = 10.0,
) -> Any:
    """The cluster's members as the leader sees them (`GET /naraft/v1/members`): `{"leader",
    "term", "commitIndex", "members": [{"id", "role", "leader", "matchIndex", "lag",
    "reachable"}]}`. Raises as `transfer_leadership`."""
    request = urllib.request.Request(
        f"{base_url}{MEMBERS_PATH}", headers=bearer(token) if token is not None else {}
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds, context=ssl_context) as answer:
        return json.loads(answer.read())


def change_member(
    base_url: str,
    member: str,
    action: str,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    timeout_seconds: float = 30.0,
) -> Any:
    """Add (as a learner), promote or remove `member` (`POST /naraft/v1/members`); the
    decoded answer `{"index", "voters", "learners"}`. Raises as `transfer_leadership`."""
    request = urllib.request.Request(
        f"{base_url}{MEMBERS_PATH}",
        method="POST",
        data=json.dumps({"id": member, "action": action}).encode(),
        headers={
            "Content-Type": "application/json",
            **(bearer(token) if token is not None else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds, context=ssl_context) as answer:
        return json.loads(answer.read())


async def fetch_json(session: aiohttp.ClientSession, url: str) -> Any:
    """GET `url` and decode its JSON body (async; over https, the session's connector
    holds the TLS context). Raises aiohttp.ClientError or TimeoutError when the node does
    not answer 200, ValueError on a bad body."""
    async with session.get(url) as answer:
        answer.raise_for_status()
        return json.loads(await answer.read())


async def fetch_status(session: aiohttp.ClientSession, base_url: str) -> NodeStatus | None:
    """The status of the node at `base_url`, or None when it does not answer (async)."""
    try:
        return parse_status(await fetch_json(session, f"{base_url}{STATE_PATH}"))
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


# ---------------------------------------------------------------------- tokens


def login(
    base_url: str,
    password: str,
    *,
    username: str = ADMIN_USER,
    timeout_seconds: float = STATUS_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
) -> str:
    """An access token from the node at `base_url` (sync; an https URL is verified with
    `ssl_context`); send it as the `accessToken` parameter or with `bearer(token)`. Raises
    OSError when the login is refused."""
    query = urllib.parse.urlencode({"username": username, "password": password})
    request = urllib.request.Request(f"{base_url}{LOGIN_PATH}?{query}", method="POST")
    with urllib.request.urlopen(request, timeout=timeout_seconds, context=ssl_context) as answer:
        token: str = json.loads(answer.read())["accessToken"]
    return token


async def alogin(
    session: aiohttp.ClientSession, base_url: str, password: str, *, username: str = ADMIN_USER
) -> str:
    """`login`, async. Raises aiohttp.ClientError when the login is refused."""
    params = {"username": username, "password": password}
    async with session.post(f"{base_url}{LOGIN_PATH}", params=params) as answer:
        answer.raise_for_status()
        token: str = json.loads(await answer.read())["accessToken"]
    return token


def bearer(token: str) -> dict[str, str]:
    """The header that carries `token`."""
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------- write outcomes


class WriteOutcome(enum.StrEnum):
    """What a client may conclude from the answer to one write (put, CAS, delete,
    registration)."""

    APPLIED = "applied"  # committed and applied: its effect is in the state
    NOT_APPLIED = "not-applied"  # surely changed nothing, now or later
    UNKNOWN = "unknown"  # may have been applied, or may still be


def classify_write(status: int, body: object) -> WriteOutcome:
    """The one classification of a write's answer, from the key/value API's documented
    semantics (and the Nacos API's statuses):

    - 2xx: applied.
    - A JSON body with `"outcome"`: the server's own word wins, whatever the status.
      `"not-applied"` is said only when nothing was (or will be) applied: no leader, a
      dropped proposal, a disk-full node or the state quota refusing before proposing, an
      entry every replica rejected on apply. `"unknown"` is said when the proposal may still
      commit (a proposal timeout, a leader change while waiting).
    - 4xx without an outcome: not applied. A 4xx is a refusal by validation (400, 404, 413,
      422), authorisation (401, 403), the HTTP edge (408, 414, 431) or a limit (429), taken
      before anything is proposed, or 409, the compare-and-set mismatch: that entry commits
      but compares false on apply, so its write changes nothing.
    - Anything else (another 5xx without an outcome, an unexpected status): unknown, since
      a wrong "not applied" would let a checker invent a lost write.

    A transport error is judged by `classify_failure`.
    """
    if 200 <= status < 300:
        return WriteOutcome.APPLIED
    said = body.get("outcome") if isinstance(body, Mapping) else None
    if said == WriteOutcome.NOT_APPLIED.value:
        return WriteOutcome.NOT_APPLIED
    if said == WriteOutcome.UNKNOWN.value:
        return WriteOutcome.UNKNOWN
    if 400 <= status < 500:
        return WriteOutcome.NOT_APPLIED
    return WriteOutcome.UNKNOWN


def classify_failure(*, sent: bool) -> WriteOutcome:
    """A write that got no answer: not applied when the request never left (the connection
    was refused or never made), unknown once it may have been sent (a timeout or a reset
    after sending)."""
    return WriteOutcome.UNKNOWN if sent else WriteOutcome.NOT_APPLIED


def body_of(raw: bytes) -> dict[str, Any]:
    """A write answer's JSON object, or {} when the body is not one (a plain-text error)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
