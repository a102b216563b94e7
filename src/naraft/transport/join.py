"""The join handshake: a new node learns the cluster id and members from a running member.

A node started with `--join URL` knows its own id and the cluster secret, nothing else. It
POSTs a request to `JOIN_PATH` on the member at URL: its id, the time, a fresh nonce and an
HMAC of them under the secret (so only a holder of the secret learns the cluster's members).
The member answers with the cluster id, the configuration and the leader, HMAC'd under the
secret together with the request's nonce (so the joiner knows the answer came from a member
of its cluster, for this request, and that its secret is the cluster's). Nothing changes on
the cluster: the operator's `naraft member add` does that.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.transport import auth

JOIN_PATH: Final = "/nacos/v1/ns/raft/join"
JOIN_WINDOW_MS: Final = 30_000
MAX_JOIN_BODY_BYTES: Final = 4096
MAX_JOIN_ANSWER_BYTES: Final = 64 * 1024
_MAX_ID_CHARS: Final = 256


class JoinError(ValueError):
    """A join request or answer that cannot be taken; the message is one line."""


@dataclass(frozen=True, slots=True)
class JoinRequest:
    node_id: str
    time_ms: int
    nonce: str


@dataclass(frozen=True, slots=True)
class JoinAnswer:
    cluster_id: str
    voters: tuple[str, ...]
    learners: tuple[str, ...]
    leader: str | None

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(sorted({*self.voters, *self.learners}))


def _request_text(node_id: str, time_ms: int, nonce: str) -> bytes:
    return f"naraft-join-request/1\n{node_id}\n{time_ms}\n{nonce}".encode()


def _answer_text(nonce: str, answer: JoinAnswer) -> bytes:
    return b"naraft-join-answer/1\n" + orjson.dumps(
        [nonce, answer.cluster_id, answer.voters, answer.learners, answer.leader]
    )


def make_request(secret: bytes, node_id: str, now_ms: int) -> tuple[bytes, JoinRequest]:
    nonce = secrets.token_hex(16)
    body = orjson.dumps(
        {
            "id": node_id,
            "time": now_ms,
            "nonce": nonce,
            "proof": auth.sign(secret, _request_text(node_id, now_ms, nonce)),
        }
    )
    return body, JoinRequest(node_id, now_ms, nonce)


def _json_object(body: bytes, limit: int, what: str) -> dict[str, Any]:
    """`body` as a JSON object of at most `limit` bytes; JoinError naming `what`."""
    if len(body) > limit:
        raise JoinError(f"{what} too large")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JoinError(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise JoinError(f"{what} is not a JSON object")
    return data


def check_request(secret: bytes, body: bytes, now_ms: int) -> JoinRequest:
    """The request in `body` if it is proved with `secret` within the window; JoinError."""
    data = _json_object(body, MAX_JOIN_BODY_BYTES, "join request")
    node_id, time_ms, nonce, proof = (data.get(k) for k in ("id", "time", "nonce", "proof"))
    if not isinstance(node_id, str) or not 0 < len(node_id) <= _MAX_ID_CHARS:
        raise JoinError("join request: id must be host:port")
    if not isinstance(time_ms, int) or not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        raise JoinError("join request: time and nonce are required")
    if not isinstance(proof, str):
        raise JoinError("join request: proof is required")
    if abs(time_ms - now_ms) > JOIN_WINDOW_MS:
        raise JoinError(f"join request signed {(time_ms - now_ms) / 1000:+.1f} s from now")
    if not auth.verify(secret, _request_text(node_id, time_ms, nonce), proof):
        raise JoinError("join request not signed with this cluster's secret")
    return JoinRequest(node_id, time_ms, nonce)


def make_answer(secret: bytes, request: JoinRequest, answer: JoinAnswer) -> bytes:
    return orjson.dumps(
        {
            "clusterId": answer.cluster_id,
            "voters": list(answer.voters),
            "learners": list(answer.learners),
            "leader": answer.leader,
            "proof": auth.sign(secret, _answer_text(request.nonce, answer)),
        }
    )


def check_answer(secret: bytes, request: JoinRequest, body: bytes) -> JoinAnswer:
    """The answer in `body` if a holder of `secret` made it for `request`; JoinError."""
    data = _json_object(body, MAX_JOIN_ANSWER_BYTES, "join answer")
    cluster_id, voters, learners, leader = (
        data.get(k) for k in ("clusterId", "voters", "learners", "leader")
    )
    if not isinstance(cluster_id, str) or not 0 < len(cluster_id) <= 64:
        raise JoinError("join answer: no cluster id")
    if not isinstance(voters, list) or not isinstance(learners, list):
        raise JoinError("join answer: no members")
    if not _ids(voters) or not _ids(learners) or not voters:
        raise JoinError("join answer: no members")
    if leader is not None and not isinstance(leader, str):
        raise JoinError("join answer: bad leader")
    answer = JoinAnswer(cluster_id, tuple(voters), tuple(learners), leader)
    proof = data.get("proof")
    if not isinstance(proof, str) or not auth.verify(
        secret, _answer_text(request.nonce, answer), proof
    ):
        raise JoinError("join answer not signed with this node's cluster secret")
    return answer


def _ids(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= 64
        and all(isinstance(v, str) and 0 < len(v) <= _MAX_ID_CHARS for v in value)
    )
