"""naraft's own endpoints: the key/value API (the seed's datum view), Raft status, metrics.

- `PUT /naraft/v1/kv/{key}` `{"value": s}` or `{"value": s, "prev": s|null}` -> `{"index": N}`
- `GET /naraft/v1/kv/{key}[?consistency=linearizable|local]` -> `{"key","value","version"}`
- `DELETE /naraft/v1/kv/{key}` -> `{"deleted": bool, "index": N}`
- `GET /nacos/v1/ns/raft/leader`, `/raft/state`, `/raft/peer` (also at `/operator/cluster/state`
  and `/ops/cluster/state`); `GET /metrics`
- `GET /naraft/v1/openapi.json`: the OpenAPI description of all of the above and the Nacos API
- `GET /naraft/v1/version` -> `{"version", "python", "peerFormat"}` (public, as the health
  routes: it names the build, nothing of the data)

Errors are JSON here: `{"error": ..., "field"?: ..., "outcome"?: "not-applied"|"unknown",
"leader"?: ...}` so that a client can tell a write that surely did not happen from one
whose fate is unknown. A node whose disk is full answers 507 with `"reason": "disk-full"`
(the Nacos API answers 503 instead, the status on which Nacos clients move to another node);
a write refused by the state quota answers 507 with `"reason": "quota"` (Nacos API: 503). An
entry every replica rejected on apply answers 500 with `"reason": "rejected-on-apply"`.
"""

from __future__ import annotations

import functools
import platform
from importlib import resources
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from naraft import __version__
from naraft.api.errors import Refusal, json_ok, json_refusal, proposal_failure
from naraft.api.health import ACTUATOR_BASE
from naraft.errors import DiskFullError, UnavailableError
from naraft.raft import NodeId, NotLeaderError, Status, TransferError
from naraft.state.datums import Datum
from naraft.state.kv import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    DeleteKey,
    KvCasFailed,
    KvDeleted,
    KvPut,
    PutValue,
    encode_kv,
)
from naraft.state.rejections import EntryRejected, RejectionKind
from naraft.transport.codec import FORMAT_VERSION

KV_BASE: Final = "/naraft/v1/kv"
NAMING_BASE: Final = "/nacos/v1/ns"
RAFT_BASE: Final = f"{NAMING_BASE}/raft"
OPENAPI_PATH: Final = "/naraft/v1/openapi.json"
VERSION_PATH: Final = "/naraft/v1/version"
ACTUATOR_PROMETHEUS_PATH: Final = f"{ACTUATOR_BASE}/prometheus"  # Nacos's (Spring's) metrics

MAX_MEMBER_ID_CHARS: Final = 262  # host (253) ':' port

MAX_KV_BODY_BYTES: Final = 2 * MAX_VALUE_BYTES + 4096
"""A kv write's body: a value and a compare-and-set `prev` at the value limit, in JSON."""


class RaftNodeView(Protocol):
    """What these endpoints need of the node."""

    @property
    def status(self) -> Status: ...

    @property
    def members(self) -> tuple[str, ...]: ...

    async def propose(self, command: bytes) -> object: ...

    async def read_barrier(self) -> None: ...

    async def local_read_point(self) -> None: ...

    def kv_get(self, key: str) -> Datum | None: ...

    def metrics_text(self) -> bytes: ...

    def extra_state(self) -> dict[str, object]: ...

    def quota_refusal(self) -> str | None:
        """Why writes are refused before proposing (the state quota alarm), or None."""
        ...

    async def transfer_leadership(self, target: NodeId | None) -> str:
        """Hand leadership over (to `target`, or the most caught-up peer); the new leader."""
        ...


NODE: Final = web.AppKey("raft_node", RaftNodeView)


def _key_of(request: web.Request) -> str | web.Response:
    key = request.match_info["key"]
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        return json_refusal(
            Refusal.BAD_INPUT, f"key: must be 1..{MAX_KEY_BYTES} bytes", field="key"
        )
    return key


async def _propose(node: RaftNodeView, command: bytes) -> object | web.Response:
    """Propose; map the failures to JSON answers. NotLeaderError with a leader propagates
    (the forward middleware sends the request to the leader)."""
    try:
        return await node.propose(command)
    except NotLeaderError as error:
        if error.leader_hint is not None:
            raise
        return json_refusal(Refusal.UNAVAILABLE, "no leader", outcome="not-applied", leader=None)
    except UnavailableError as error:
        failure = proposal_failure(error)
        # a refusal for want of space says why; one a retry may cure says who leads
        where: dict[str, object] = (
            {"reason": failure.reason}
            if failure.reason is not None
            else {"leader": node.status.leader}
        )
        return json_refusal(failure.refusal, str(error), outcome=failure.outcome, **where)


def _rejected_on_apply(rejected: EntryRejected) -> web.Response:
    """Every replica rejected the committed entry; it changed nothing."""
    if rejected.kind is RejectionKind.QUOTA:
        return json_refusal(
            Refusal.NO_SPACE,
            f"state quota exceeded: {rejected.detail}",
            outcome="not-applied",
            reason="quota",
        )
    return json_refusal(
        Refusal.REJECTED_ON_APPLY,
        f"entry {rejected.index} was rejected on apply (nothing changed): {rejected.detail}",
        outcome="not-applied",
        reason="rejected-on-apply",
    )


async def put_kv(request: web.Request) -> web.Response:
    key = _key_of(request)
    if isinstance(key, web.Response):
        return key
    raw = await request.read()
    if len(raw) > MAX_KV_BODY_BYTES:
        return json_refusal(
            Refusal.TOO_LARGE, f"value: larger than {MAX_VALUE_BYTES} bytes", field="value"
        )
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_refusal(
            Refusal.BAD_INPUT, 'body: must be a JSON object like {"value": "..."}', field="body"
        )
    if not isinstance(body, dict):
        return json_refusal(
            Refusal.BAD_INPUT, 'body: must be a JSON object like {"value": "..."}', field="body"
        )
    value = body.get("value")
    if not isinstance(value, str):
        return json_refusal(
            Refusal.BAD_INPUT, "value: is required and must be a string", field="value"
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        return json_refusal(
            Refusal.TOO_LARGE, f"value: larger than {MAX_VALUE_BYTES} bytes", field="value"
        )
    unknown = sorted(set(body) - {"value", "prev"})
    if unknown:
        return json_refusal(Refusal.BAD_INPUT, f"{unknown[0]}: unknown field", field=unknown[0])
    if "prev" in body:
        prev = body["prev"]
        if prev is not None and not isinstance(prev, str):
            return json_refusal(Refusal.BAD_INPUT, "prev: must be a string or null", field="prev")
        command = PutValue(key=key, value=value, check_prev=True, prev=prev)
    else:
        command = PutValue(key=key, value=value)
    node = request.app[NODE]
    refusal = node.quota_refusal()
    if refusal is not None:
        return json_refusal(Refusal.NO_SPACE, refusal, outcome="not-applied", reason="quota")
    result = await _propose(node, encode_kv(command))
    if isinstance(result, web.Response):
        return result
    if isinstance(result, EntryRejected):
        return _rejected_on_apply(result)
    if isinstance(result, KvCasFailed):
        return json_refusal(
            Refusal.COMPARE_FAILED, "prev: compare failed", field="prev", current=result.current
        )
    if not isinstance(result, KvPut):
        return json_refusal(Refusal.REJECTED_ON_APPLY, "the state machine refused the command")
    return json_ok({"index": result.index})


async def get_kv(request: web.Request) -> web.Response:
    key = _key_of(request)
    if isinstance(key, web.Response):
        return key
    consistency = request.query.get("consistency", "linearizable")
    if consistency not in ("linearizable", "local"):
        return json_refusal(
            Refusal.BAD_INPUT, "consistency: must be linearizable or local", field="consistency"
        )
    node = request.app[NODE]
    if consistency == "linearizable":
        try:
            await node.read_barrier()
        except NotLeaderError as error:
            if error.leader_hint is not None:
                raise
            return json_refusal(Refusal.UNAVAILABLE, "no leader", leader=None)
        except DiskFullError as error:
            return json_refusal(Refusal.NO_SPACE, str(error), reason="disk-full")
        except UnavailableError as error:
            return json_refusal(Refusal.UNAVAILABLE, str(error), leader=node.status.leader)
    else:
        await node.local_read_point()
    datum = node.kv_get(key)
    if datum is None:
        return json_refusal(Refusal.NOT_FOUND, f"key {key!r} not found")
    return json_ok({"key": key, "value": datum.value.decode(), "version": datum.version})


async def delete_kv(request: web.Request) -> web.Response:
    key = _key_of(request)
    if isinstance(key, web.Response):
        return key
    node = request.app[NODE]
    result = await _propose(node, encode_kv(DeleteKey(key=key)))
    if isinstance(result, web.Response):
        return result
    if isinstance(result, EntryRejected):
        return _rejected_on_apply(result)
    if not isinstance(result, KvDeleted):
        return json_refusal(Refusal.REJECTED_ON_APPLY, "the state machine refused the command")
    return json_ok({"deleted": result.deleted, "index": result.index})


async def raft_leader(request: web.Request) -> web.Response:
    status = request.app[NODE].status
    return json_ok({"leader": status.leader, "term": status.term})


async def raft_state(request: web.Request) -> web.Response:
    node = request.app[NODE]
    status = node.status
    peers = [
        {
            "id": peer,
            "matchIndex": progress.match_index,
            "nextIndex": progress.next_index,
            "state": progress.state.value,
            "recentActive": progress.recent_active,
        }
        for peer, progress in sorted(status.peers.items())
    ]
    return json_ok(
        {
            "id": status.id,
            "role": status.role.value,
            "term": status.term,
            "votedFor": status.voted_for,
            "leader": status.leader,
            "commitIndex": status.commit_index,
            "appliedIndex": status.applied_index,
            "lastLogIndex": status.last_index,
            "lastLogTerm": status.last_term,
            "snapshotIndex": status.snapshot.index,
            "members": list(node.members),
            "peers": peers,
            **node.extra_state(),
        }
    )


async def transfer_leader(request: web.Request) -> web.Response:
    """`POST .../raft/transfer[?to=ID]`: the leader hands over (a follower forwards this to
    the leader); answers once the new leader is known."""
    node = request.app[NODE]
    form = await request.post()
    raw = request.query.get("to", form.get("to"))
    if raw is not None and (not isinstance(raw, str) or not 0 < len(raw) <= MAX_MEMBER_ID_CHARS):
        return json_refusal(
            Refusal.BAD_INPUT,
            f"to: must be a member id of 1..{MAX_MEMBER_ID_CHARS} chars",
            field="to",
        )
    target = raw or None
    if target is not None and target not in node.members:
        return json_refusal(Refusal.BAD_INPUT, f"to: {target} is not a member", field="to")
    previous = node.status.id
    try:
        leader = await node.transfer_leadership(NodeId(target) if target else None)
    except NotLeaderError as error:
        if error.leader_hint is not None and error.leader_hint != previous:
            raise  # the forwarding middleware sends this to the leader
        return json_refusal(Refusal.UNAVAILABLE, "no leader to hand over from", leader=None)
    except TransferError as error:
        return json_refusal(Refusal.BAD_INPUT, f"to: {error}", field="to")
    except UnavailableError as error:
        return json_refusal(Refusal.UNAVAILABLE, str(error), leader=node.status.leader)
    return json_ok({"leader": leader, "previous": previous, "term": node.status.term})


async def raft_peer(request: web.Request) -> web.Response:
    """The local peer as Nacos 1.x's `/raft/peer` shows it (RaftPeer)."""
    status = request.app[NODE].status
    return json_ok(
        {
            "ip": status.id,
            "voteFor": status.voted_for,
            "term": status.term,
            "state": status.role.value.upper().replace("PRE-", ""),
            "leader": status.leader,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[NODE].metrics_text(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


@functools.cache
def _openapi_bytes() -> bytes:
    return resources.files("naraft.api").joinpath("openapi.json").read_bytes()


async def openapi_description(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this HTTP API (the Nacos v1 naming API and naraft's)."""
    return web.Response(body=_openapi_bytes(), content_type="application/json")


async def version(request: web.Request) -> web.Response:
    """This node's build: naraft's version, Python's, and the peer wire format it speaks."""
    return json_ok(
        {
            "version": __version__,
            "python": platform.python_version(),
            "peerFormat": FORMAT_VERSION,
        }
    )


def admin_routes() -> list[web.RouteDef]:
    return [
        web.put(f"{KV_BASE}/{{key:.+}}", put_kv),
        web.get(f"{KV_BASE}/{{key:.+}}", get_kv),
        web.delete(f"{KV_BASE}/{{key:.+}}", delete_kv),
        web.get(f"{RAFT_BASE}/leader", raft_leader),
        web.get(f"{RAFT_BASE}/state", raft_state),
        web.get(f"{RAFT_BASE}/peer", raft_peer),
        # Nacos 1.x's deprecated `/operator/cluster/state` answers the local RaftPeer too.
        web.get(f"{NAMING_BASE}/operator/cluster/state", raft_peer),
        web.get(f"{NAMING_BASE}/ops/cluster/state", raft_peer),
        web.post(f"{RAFT_BASE}/transfer", transfer_leader),
        web.get("/metrics", metrics),
        web.get(ACTUATOR_PROMETHEUS_PATH, metrics),  # where Nacos users' scrapers look
        web.get(OPENAPI_PATH, openapi_description),
        web.get(VERSION_PATH, version),
    ]
