"""Nacos's `POST /nacos/v1/core/ops/raft`: the operator's Raft commands, which Nacos runs
on its JRaft groups, mapped onto naraft's one Raft group. The body is Nacos's JSON object
`{"groupId": ..., "command": ..., "value": "ip:port"}` (and, beside it, Nacos's
`PUT /nacos/v1/core/ops/log`, a node's log level as `/v1/ns/operator/log` sets it):

- `transferLeader`: leadership moves to the member `value` names (a follower forwards the
  request to the leader), as `naraft leader transfer` does;
- `removePeer` (or `removePeers` naming one member): that member leaves the cluster, as
  `naraft member remove` does (one change at a time, through Raft);
- `doSnapshot`, `resetRaftCluster`, `changePeers`, `resetPeers`, and `removePeers` naming
  several members: 501, saying what to use instead (naraft compacts its log by itself; a
  forced reset of the members can lose acknowledged writes).

`value` names a member by its id (`host:port`, the HTTP port) or, as Nacos's does, by its
Raft port (the HTTP port minus 1000). `groupId` is accepted and ignored. A success is
Nacos's `RestResult` `{"code": 200, "message": null, "data": null}`; refusals are the v1
API's (`naraft.api.errors`): 400 naming the field, 409 for a member change the cluster
cannot make now, 501, 503 without a leader. Admin only (`naraft.api.access`).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from naraft.api.admin import NODE
from naraft.api.context import json_response
from naraft.api.members import MEMBERS_NODE
from naraft.api.params import read_params
from naraft.config import parse_address
from naraft.errors import ConflictError, InvalidArgumentError, UnavailableError, UnsupportedError
from naraft.logs import set_log_level
from naraft.raft import NodeId, NotLeaderError
from naraft.raft.errors import TransferError
from naraft.raft.membership import ChangeKind, MembershipChange, MembershipError

CORE_OPS_RAFT_PATH: Final = "/nacos/v1/core/ops/raft"
CORE_OPS_LOG_PATH: Final = "/nacos/v1/core/ops/log"
MAX_BODY_BYTES: Final = 4096
MAX_VALUE_CHARS: Final = 262  # a host of 255 characters, a colon and a port
RAFT_PORT_OFFSET: Final = 1000  # Nacos: the Raft port is the HTTP port minus 1000
_NOT_SERVED: Final = {
    "doSnapshot": "naraft compacts its log by itself (every 10,000 entries); for a backup "
    "use `naraft snapshot save` (GET /naraft/v1/snapshot)",
    "resetRaftCluster": "a forced reset of the members can lose acknowledged writes; change "
    "members one at a time with `naraft member add/remove`",
    "changePeers": "change members one at a time with `naraft member add/remove`",
    "resetPeers": "a forced reset of the members can lose acknowledged writes; change members "
    "one at a time with `naraft member add/remove`",
}
COMMANDS: Final = ("transferLeader", "removePeer", "removePeers", *_NOT_SERVED)


def _body(raw: bytes) -> dict[str, str]:
    shape = 'a JSON object like {"command": "transferLeader", "value": "ip:port"}'
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidArgumentError("body", f"at most {MAX_BODY_BYTES} bytes")
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("body", shape) from None
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise InvalidArgumentError("body", shape)
    return body


def _member(members: tuple[str, ...], value: str | None) -> NodeId:
    """The member `value` names, by its id or by its Raft port; InvalidArgumentError else."""
    if value is None or not value.strip():
        raise InvalidArgumentError("value", "is required")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidArgumentError("value", f"must be ip:port, at most {MAX_VALUE_CHARS} chars")
    host, port = parse_address(value, field="value")
    for member in members:
        member_host, member_port = parse_address(member, field="value")
        if member_host == host and port in (member_port, member_port - RAFT_PORT_OFFSET):
            return NodeId(member)
    raise InvalidArgumentError("value", f"{value.strip()} is not a member ({', '.join(members)})")


def parse_command(raw: bytes, members: tuple[str, ...]) -> tuple[str, NodeId]:
    """The command a request body asks for and the member it names; InvalidArgumentError
    (400) or UnsupportedError (501) before anything is done."""
    body = _body(raw)
    command = body.get("command", "").strip()
    if command not in COMMANDS:
        raise InvalidArgumentError("command", f"is one of {', '.join(COMMANDS)}")
    if (reason := _NOT_SERVED.get(command)) is not None:
        raise UnsupportedError(f"{command} is not served by naraft: {reason}")
    value = body.get("value")
    if command == "removePeers" and value is not None and "," in value.strip(","):
        raise UnsupportedError(
            "removePeers of several members is not served by naraft: remove them one at a "
            "time (`naraft member remove`)"
        )
    return command, _member(members, value.strip(",") if value is not None else None)


async def raft_ops(request: web.Request) -> web.Response:
    command, target = parse_command(await request.read(), request.app[NODE].members)
    if command == "transferLeader":
        await _transfer(request, target)
    else:
        await _remove(request, target)
    return json_response({"code": 200, "message": None, "data": None})


async def _transfer(request: web.Request, target: NodeId) -> None:
    node = request.app[NODE]
    try:
        await node.transfer_leadership(target)
    except NotLeaderError as error:
        if error.leader_hint is not None and error.leader_hint != node.status.id:
            raise  # the forwarding middleware sends this to the leader
        raise UnavailableError("no leader to hand over from") from None
    except TransferError as error:
        raise InvalidArgumentError("value", str(error)) from None


async def _remove(request: web.Request, target: NodeId) -> None:
    node = request.app[MEMBERS_NODE]
    if not node.clustered:
        raise ConflictError("a standalone node takes no member changes")
    try:
        await node.propose_membership(MembershipChange(ChangeKind.REMOVE, target))
    except MembershipError as error:
        raise ConflictError(str(error)) from None
    except NotLeaderError as error:
        if error.leader_hint is not None:
            raise
        raise UnavailableError("no leader") from None


async def log_level(request: web.Request) -> web.Response:
    """Nacos's `PUT /v1/core/ops/log` (`logName`, `logLevel`): this node's level for one log
    until it restarts (`naraft.logs.set_log_level`); Nacos answers the text `200`."""
    params = await read_params(request)
    set_log_level(params.get("logName"), params.get("logLevel"))
    return web.Response(text="200")


def core_ops_routes() -> list[web.RouteDef]:
    return [web.post(CORE_OPS_RAFT_PATH, raft_ops), web.put(CORE_OPS_LOG_PATH, log_level)]
