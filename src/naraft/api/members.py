"""Cluster membership over HTTP: who the members are, and changing them one at a time.

- `GET /naraft/v1/members` -> `{"leader", "term", "commitIndex", "pending", "members":
  [{"id", "role": "voter"|"learner", "leader", "matchIndex", "lag", "reachable"}]}`. A
  follower forwards it to the leader, who knows each member's match index; with no leader
  known it answers itself, without match indexes.
- `POST /naraft/v1/members` `{"id": "host:port", "action": "add"|"promote"|"remove"}` ->
  `{"index", "voters", "learners"}` once the change is applied here (a follower forwards it
  to the leader). `add` makes a learner: it receives the log but does not vote until
  promoted (`naraft member add` waits for it to catch up, then promotes).
- `POST /nacos/v1/ns/raft/join` (a peer route): the join handshake (`transport.join`).

Both client routes are the admin's (`api/access.py`). A change the cluster cannot make now
(another in flight, an unknown member, the last voter) answers 409 naming why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import orjson
from aiohttp import web

from naraft.api.errors import Refusal, json_ok, json_refusal
from naraft.config import parse_address
from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.raft import NodeId, NotLeaderError, Role, Status
from naraft.raft.membership import ChangeKind, Membership, MembershipChange, MembershipError
from naraft.transport import join
from naraft.transport.signing import wall_clock_ms

MEMBERS_PATH: Final = "/naraft/v1/members"
MAX_MEMBERS_BODY_BYTES: Final = 4096
ACTIONS: Final = {
    "add": ChangeKind.ADD_LEARNER,
    "promote": ChangeKind.PROMOTE,
    "remove": ChangeKind.REMOVE,
}


class MembersNode(Protocol):
    @property
    def status(self) -> Status: ...

    @property
    def clustered(self) -> bool:
        """False for a standalone node (no cluster secret: it can never have peers)."""
        ...

    async def propose_membership(self, change: MembershipChange) -> object: ...

    async def wait_for_status(
        self, holds: Callable[[Status], bool], timeout_seconds: float
    ) -> Status | None:
        """The first status `holds` is true of (checked now and after every change), or None
        after `timeout_seconds`."""
        ...


MEMBERS_NODE: Final = web.AppKey("members_node", MembersNode)


def describe(status: Status) -> dict[str, object]:
    """The members as `status` shows them (match indexes only on the leader)."""
    membership = status.membership or Membership(frozenset({status.id}))
    leading = status.role is Role.LEADER
    rows: list[dict[str, object]] = []
    for member in sorted(membership.members):
        progress = status.peers.get(member) if leading else None
        match: int | None = None
        if member == status.id:
            match = status.last_index if leading else None
        elif progress is not None:
            match = progress.match_index
        rows.append(
            {
                "id": member,
                "role": "voter" if member in membership.voters else "learner",
                "leader": member == status.leader,
                "matchIndex": match,
                "lag": None if match is None else max(0, status.commit_index - match),
                "reachable": (
                    None
                    if not leading
                    else member == status.id or (progress is not None and progress.recent_active)
                ),
            }
        )
    return {
        "leader": status.leader,
        "term": status.term,
        "commitIndex": status.commit_index,
        "members": rows,
    }


async def list_members(request: web.Request) -> web.Response:
    node = request.app[MEMBERS_NODE]
    status = node.status
    if status.role is not Role.LEADER and status.leader is not None:
        raise NotLeaderError(status.leader)  # the forward middleware asks the leader
    return json_ok(describe(status))


def _parse_change(raw: bytes) -> MembershipChange | web.Response:
    shape = 'body: must be a JSON object like {"id": "host:port", "action": "add"}'
    if len(raw) > MAX_MEMBERS_BODY_BYTES:
        return json_refusal(Refusal.TOO_LARGE, "body: too large", field="body")
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json_refusal(Refusal.BAD_INPUT, shape, field="body")
    if not isinstance(body, dict):
        return json_refusal(Refusal.BAD_INPUT, shape, field="body")
    unknown = sorted(set(body) - {"id", "action"})
    if unknown:
        return json_refusal(Refusal.BAD_INPUT, f"{unknown[0]}: unknown field", field=unknown[0])
    return parse_change(body.get("id"), body.get("action"))


def parse_change(member: object, action: object) -> MembershipChange | web.Response:
    """The change `id` and `action` name, or the API's refusal naming the field (the
    console's member form is checked by the same rules)."""
    if not isinstance(action, str) or action not in ACTIONS:
        return json_refusal(
            Refusal.BAD_INPUT, f"action: must be one of {', '.join(ACTIONS)}", field="action"
        )
    if not isinstance(member, str) or len(member) > 262:
        return json_refusal(Refusal.BAD_INPUT, "id: must be host:port", field="id")
    try:
        parse_address(member, field="id")
    except InvalidArgumentError as error:
        return json_refusal(Refusal.BAD_INPUT, str(error), field="id")
    return MembershipChange(ACTIONS[action], NodeId(member.strip()))


async def change_member(request: web.Request) -> web.Response:
    node = request.app[MEMBERS_NODE]
    change = _parse_change(await request.read())
    if isinstance(change, web.Response):
        return change
    return await make_change(node, change)


async def make_change(node: MembersNode, change: MembershipChange) -> web.Response:
    """Propose `change` and answer as `POST /naraft/v1/members` does: the members once it is
    applied, or the refusal (409 for a change the cluster cannot make now). NotLeaderError
    with a leader known propagates (the forward middleware sends the request there)."""
    if not node.clustered:
        return json_refusal(
            Refusal.CONFLICT,
            "a standalone node has no cluster secret and takes no members; "
            "start a cluster with --peers and --cluster-secret-file",
        )
    try:
        result = await node.propose_membership(change)
    except MembershipError as error:
        return json_refusal(Refusal.CONFLICT, str(error), outcome="not-applied")
    except NotLeaderError as error:
        if error.leader_hint is not None:
            raise
        return json_refusal(Refusal.UNAVAILABLE, "no leader", outcome="not-applied", leader=None)
    except UnavailableError as error:
        return json_refusal(Refusal.UNAVAILABLE, str(error), leader=node.status.leader)
    status = node.status
    membership = result if isinstance(result, Membership) else status.membership
    return json_ok(
        {
            "index": status.applied_index,
            "voters": sorted(membership.voters) if membership else [],
            "learners": sorted(membership.learners) if membership else [],
        }
    )


async def wait_caught_up(node: MembersNode, member: str, timeout_seconds: float) -> bool:
    """Whether `member`'s match index reached the commit index on this node, the leader,
    within `timeout_seconds` (`naraft member add`'s rule before it promotes). False at
    once when this node stops leading: only a leader knows the match indexes."""

    def settled(status: Status) -> bool:
        return status.role is not Role.LEADER or _caught_up(status, member)

    status = await node.wait_for_status(settled, timeout_seconds)
    return status is not None and _caught_up(status, member)


def _caught_up(status: Status, member: str) -> bool:
    progress = status.peers.get(NodeId(member))
    return (
        status.role is Role.LEADER
        and progress is not None
        and progress.match_index >= status.commit_index
    )


def member_routes() -> list[web.RouteDef]:
    return [web.get(MEMBERS_PATH, list_members), web.post(MEMBERS_PATH, change_member)]


def join_routes(
    secret: bytes | None, cluster_id: str, status: Callable[[], Status]
) -> list[web.RouteDef]:
    """The answering end of the join handshake (a peer route); none without a secret."""
    if secret is None:
        return []

    async def on_join(request: web.Request) -> web.Response:
        raw = await request.content.read(join.MAX_JOIN_BODY_BYTES + 1)
        try:
            asked = join.check_request(secret, raw, wall_clock_ms())
        except join.JoinError as error:
            return web.Response(status=403, text=str(error))
        now = status()
        membership = now.membership or Membership(frozenset({now.id}))
        answer = join.JoinAnswer(
            cluster_id=cluster_id,
            voters=tuple(sorted(membership.voters)),
            learners=tuple(sorted(membership.learners)),
            leader=now.leader,
        )
        return web.Response(
            body=join.make_answer(secret, asked, answer), content_type="application/json"
        )

    return [web.post(join.JOIN_PATH, on_join)]
