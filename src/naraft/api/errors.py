"""Every status code the client-facing APIs answer with, in three tables.

1. `NACOS_STATUS`, the Nacos v1 API (`/nacos/v1/ns/...`, and its beat endpoint between
   members): an exception → a status and a plain-text body, like Nacos's
   `ResponseExceptionHandler`; never a stack trace. A 400 body names the parameter by its
   wire (camelCase) name.
2. `NACOS_V2_ERRORS`, the Nacos 2.x Open API (`/nacos/v2/...`): an exception → a status
   and one of Nacos's `ErrorCode`s, answered as its `Result`, `{"code", "message", "data"}`
   with the code's message and the detail (naming the parameter) in `data`. Unknown
   `/nacos/v2` paths and methods answer in that shape too.
3. `NARAFT_STATUS`, naraft's own kv and raft API (`/nacos/v1/ns/raft/kv`, `/raft/state`,
   ...): a `Refusal` → a status, with a JSON body `{"error": ..., ...}`; `PROPOSAL_FAILURES`
   says which refusal and write outcome each proposal failure means.

A request no route takes (an unknown path, 404, or a method the path does not serve, 405
with `Allow`) is answered in the shape of the API its path belongs to (`route_miss`): v2's
`Result`, naraft's `{"error"}` under `/naraft/`, and elsewhere Spring's error JSON
(`timestamp, status, error, message, path`), which is what Nacos 1.x answers; never
aiohttp's bare text.

The HTTP edge (`naraft.api.edge`, `naraft.api.app`) answers before either API is reached,
with the `EDGE_*` statuses below. The peer protocol's own endpoints (`naraft.transport`,
`naraft.digest`) sit below this layer, cannot import it, and answer only members: their
statuses are chosen there and documented with each endpoint.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final

import orjson
from aiohttp import web

from naraft.api.params import wire_name
from naraft.configs.validate import ContentTooLargeError
from naraft.errors import (
    AlreadyExistsError,
    CommandRejectedError,
    ConflictError,
    DiskFullError,
    InvalidArgumentError,
    MissingTargetError,
    NotFoundError,
    OutcomeUnknownError,
    ProposalDroppedError,
    QuotaExceededError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedError,
)
from naraft.raft.errors import NotLeaderError
from naraft.transport.codec import BodyTooLargeError
from naraft.transport.signing import SignatureError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ------------------------------------------------------------- table 1: the Nacos v1 API

NACOS_STATUS: Final[Mapping[type[Exception], int]] = {
    InvalidArgumentError: 400,  # AlreadyExistsError too: Nacos answers 400 for it
    ContentTooLargeError: 413,  # a config's content over config-max-content-bytes
    ConflictError: 409,  # a config publish whose casMd5 did not match
    UnsupportedError: 501,  # gray/tag configs and the other Nacos features not served
    NotFoundError: 404,
    UnauthorizedError: 403,  # no token, a bad one, no permission (Nacos's message)
    SignatureError: 403,  # a member's beat batch that is not signed by the cluster
    BodyTooLargeError: 413,
    NotLeaderError: 503,  # reached only when forwarding to the leader failed
    UnavailableError: 503,  # the Python client fails over on 503 (disk full, quota too)
    CommandRejectedError: 500,  # committed, rejected on apply by every replica: a server fault
}
NOT_LEADER_STATUS: Final = NACOS_STATUS[NotLeaderError]


def status_for(error: Exception) -> int | None:
    """The status of the closest mapped base class of `error`, if any."""
    for cls in type(error).__mro__:
        if (status := NACOS_STATUS.get(cls)) is not None:
            return status
    return None


def plain_error(error: Exception, text: str | None = None) -> web.Response:
    """A mapped `error` as the Nacos API answers it: its status and a plain body."""
    status = status_for(error)
    assert status is not None, f"{type(error).__name__} has no status in NACOS_STATUS"
    return web.Response(status=status, text=body_for(error) if text is None else text)


# ------------------------------------------------------ table 2: the Nacos 2.x Open API

V2_BASE: Final = "/nacos/v2/"


@dataclass(frozen=True, slots=True)
class V2Code:
    """One of Nacos 2.x's `ErrorCode`s: its number and its message."""

    code: int
    message: str


SUCCESS: Final = V2Code(0, "success")
PARAMETER_MISSING: Final = V2Code(10000, "parameter missing")
ACCESS_DENIED: Final = V2Code(10001, "access denied")
TENANT_PARAM_ERROR: Final = V2Code(20001, "'tenant' parameter error")
PARAMETER_VALIDATE_ERROR: Final = V2Code(20002, "parameter validate error")
RESOURCE_NOT_FOUND: Final = V2Code(20004, "resource not found")
RESOURCE_CONFLICT: Final = V2Code(20005, "resource conflict")
WEIGHT_ERROR: Final = V2Code(21001, "weight error")
INSTANCE_NOT_FOUND: Final = V2Code(21003, "instance not found")
SELECTOR_ERROR: Final = V2Code(21006, "selector error")
SERVICE_ALREADY_EXIST: Final = V2Code(21007, "service already exist")
SERVICE_NOT_EXIST: Final = V2Code(21008, "service not exist")
ILLEGAL_NAMESPACE: Final = V2Code(22000, "illegal namespace")
NAMESPACE_NOT_EXIST: Final = V2Code(22001, "namespace not exist")
NAMESPACE_ALREADY_EXIST: Final = V2Code(22002, "namespace already exist")
ILLEGAL_STATE: Final = V2Code(23000, "illegal state")
SERVER_ERROR: Final = V2Code(30000, "server error")


@dataclass(frozen=True, slots=True)
class V2Error:
    status: int
    code: V2Code


NACOS_V2_ERRORS: Final[Mapping[type[Exception], V2Error]] = {
    # a parameter that breaks a rule; a missing one, and some fields, have codes of their
    # own (`V2_MISSING_RULE`, `V2_FIELD_CODES`)
    InvalidArgumentError: V2Error(400, PARAMETER_VALIDATE_ERROR),
    AlreadyExistsError: V2Error(400, SERVICE_ALREADY_EXIST),  # the one thing v2 creates
    MissingTargetError: V2Error(404, RESOURCE_NOT_FOUND),  # by field, V2_FIELD_CODES
    ContentTooLargeError: V2Error(413, PARAMETER_VALIDATE_ERROR),
    ConflictError: V2Error(409, RESOURCE_CONFLICT),  # casMd5 did not match
    UnsupportedError: V2Error(501, SERVER_ERROR),
    NotFoundError: V2Error(404, RESOURCE_NOT_FOUND),  # by kind, V2_KIND_CODES
    UnauthorizedError: V2Error(403, ACCESS_DENIED),
    SignatureError: V2Error(403, ACCESS_DENIED),
    BodyTooLargeError: V2Error(413, PARAMETER_VALIDATE_ERROR),
    NotLeaderError: V2Error(503, SERVER_ERROR),
    UnavailableError: V2Error(503, SERVER_ERROR),
    CommandRejectedError: V2Error(500, SERVER_ERROR),
}
V2_MISSING_RULE: Final = "is required"  # the rule of every InvalidArgumentError for a missing one
V2_FIELD_CODES: Final[Mapping[str, V2Code]] = {
    "weight": WEIGHT_ERROR,
    "selector": SELECTOR_ERROR,
    "tenant": TENANT_PARAM_ERROR,
    "namespace_id": TENANT_PARAM_ERROR,
    "state": ILLEGAL_STATE,  # a member state filter that is not a Nacos NodeState
    "namespace_name": ILLEGAL_NAMESPACE,  # a namespace's name or description
    "namespace_desc": ILLEGAL_NAMESPACE,
}
"""Codes for a bad value of these fields (snake_case); a missing one is PARAMETER_MISSING."""
V2_TARGET_CODES: Final[Mapping[str, V2Code]] = {
    "service_name": SERVICE_NOT_EXIST,
    "ip": INSTANCE_NOT_FOUND,
}
"""A `MissingTargetError`'s code by its field."""
V2_EXISTS_CODES: Final[Mapping[str, V2Code]] = {"namespace_id": NAMESPACE_ALREADY_EXIST}
"""An `AlreadyExistsError`'s code by its field (a service is SERVICE_ALREADY_EXIST)."""
V2_KIND_CODES: Final[Mapping[str, V2Code]] = {
    "service": SERVICE_NOT_EXIST,
    "namespace": NAMESPACE_NOT_EXIST,
}
"""A `NotFoundError`'s code by its kind (an instance is RESOURCE_NOT_FOUND, as Nacos's)."""
V2_HTTP_CODES: Final[Mapping[int, V2Code]] = {
    404: RESOURCE_NOT_FOUND,  # no such /nacos/v2 path
    413: PARAMETER_VALIDATE_ERROR,  # a body over the limit
}
"""aiohttp's own refusals on /nacos/v2 paths, by status; any other is a validate error."""


def v2_result(data: object, code: V2Code = SUCCESS, status: int = 200) -> web.Response:
    """Nacos 2.x's `Result`: `{"code", "message", "data"}`."""
    return web.Response(
        body=orjson.dumps({"code": code.code, "message": code.message, "data": data}),
        status=status,
        content_type="application/json",
    )


def v2_error_for(error: Exception) -> V2Error | None:
    """The v2 status and code of `error` (its closest mapped base class), if any."""
    found = next((e for cls in type(error).__mro__ if (e := NACOS_V2_ERRORS.get(cls))), None)
    if found is None:
        return None
    if isinstance(error, MissingTargetError):
        return V2Error(found.status, V2_TARGET_CODES.get(error.field, found.code))
    if isinstance(error, AlreadyExistsError):
        return V2Error(found.status, V2_EXISTS_CODES.get(error.field, found.code))
    if isinstance(error, NotFoundError):
        return V2Error(found.status, V2_KIND_CODES.get(error.kind, found.code))
    if type(error) is InvalidArgumentError:
        if error.rule == V2_MISSING_RULE:
            return V2Error(found.status, PARAMETER_MISSING)
        return V2Error(found.status, V2_FIELD_CODES.get(error.field, found.code))
    return found


def v2_detail(error: Exception) -> str:
    """The `data` of a v2 error: what went wrong, naming the parameter."""
    if (
        isinstance(error, InvalidArgumentError)
        and error.rule == V2_MISSING_RULE
        and error.message is None
    ):
        return f"Required parameter '{wire_name(error.field)}' is not present"
    return body_for(error)


def _v2_http_error(error: web.HTTPException, request: web.Request) -> web.Response:
    code = V2_HTTP_CODES.get(error.status, PARAMETER_VALIDATE_ERROR)
    detail = f"{request.method} {request.path}: {error.reason}"
    return v2_result(detail, code, error.status)


# -------------------------------------------------------- table 3: naraft's kv and raft API


class Refusal(enum.Enum):
    BAD_INPUT = "bad-input"  # names the field
    NOT_FOUND = "not-found"
    COMPARE_FAILED = "compare-failed"  # a compare-and-set whose `prev` did not match
    TOO_LARGE = "too-large"
    NO_SPACE = "no-space"  # disk full or the state quota: etcd's NOSPACE, not retried blindly
    UNAVAILABLE = "unavailable"  # no leader, a dropped or unsettled proposal: retry
    REJECTED_ON_APPLY = "rejected-on-apply"  # committed and refused by every replica
    FORBIDDEN = "forbidden"  # no token, a bad one, or a user without the permission
    CONFLICT = "conflict"  # cannot be done in the cluster's present state (a membership change)
    METHOD_NOT_ALLOWED = "method-not-allowed"  # a method the path does not serve (`route_miss`)


NARAFT_STATUS: Final[Mapping[Refusal, int]] = {
    Refusal.BAD_INPUT: 400,
    Refusal.NOT_FOUND: 404,
    Refusal.COMPARE_FAILED: 409,
    Refusal.TOO_LARGE: 413,
    Refusal.NO_SPACE: 507,
    Refusal.UNAVAILABLE: 503,
    Refusal.REJECTED_ON_APPLY: 500,
    Refusal.FORBIDDEN: 403,
    Refusal.CONFLICT: 409,
    Refusal.METHOD_NOT_ALLOWED: 405,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What a proposal failure means to a kv client: the refusal, whether the write may
    have been applied (`outcome`), and the `reason` field when one is sent."""

    refusal: Refusal
    outcome: str
    reason: str | None = None


PROPOSAL_FAILURES: Final[Mapping[type[Exception], Failure]] = {
    ProposalDroppedError: Failure(Refusal.UNAVAILABLE, "not-applied"),
    OutcomeUnknownError: Failure(Refusal.UNAVAILABLE, "unknown"),
    DiskFullError: Failure(Refusal.NO_SPACE, "not-applied", "disk-full"),
    QuotaExceededError: Failure(Refusal.NO_SPACE, "not-applied", "quota"),
    UnavailableError: Failure(Refusal.UNAVAILABLE, "not-applied"),
}


def proposal_failure(error: UnavailableError) -> Failure:
    """The closest mapped base class's meaning (every UnavailableError has one)."""
    for cls in type(error).__mro__:
        if (failure := PROPOSAL_FAILURES.get(cls)) is not None:
            return failure
    raise AssertionError(f"{type(error).__name__} is not an UnavailableError")


NARAFT_BASE: Final = "/naraft/"


def spring_error(status: int, message: str, path: str) -> web.Response:
    """Nacos 1.x's answer to a request Spring refuses before any controller: its error JSON."""
    return web.json_response(
        {
            "timestamp": datetime.now(tz=UTC).isoformat(timespec="milliseconds"),
            "status": status,
            "error": HTTPStatus(status).phrase,
            "message": message,
            "path": path,
        },
        status=status,
    )


def route_miss(error: web.HTTPException, request: web.Request) -> web.Response:
    """No route took `request` (`error`: aiohttp's 404 or 405): answered in the shape of
    the API its path belongs to (see the module)."""
    path, method = request.path, request.method
    if path.startswith(V2_BASE):
        answer = _v2_http_error(error, request)
    elif path.startswith(NARAFT_BASE) and error.status == 405:
        message = f"method {method} is not served on {path}"
        answer = json_refusal(Refusal.METHOD_NOT_ALLOWED, message)
    elif path.startswith(NARAFT_BASE):
        answer = json_refusal(Refusal.NOT_FOUND, f"no such naraft API path: {method} {path}")
    elif error.status == 405:  # Spring's message for a method the path does not serve
        answer = spring_error(405, f"Request method '{method}' not supported", path)
    else:
        answer = spring_error(error.status, f"no such Nacos API path: {method} {path}", path)
    if (allow := error.headers.get("Allow")) is not None:
        answer.headers["Allow"] = allow
    return answer


def json_ok(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def json_refusal(refusal: Refusal, message: str, **extra: object) -> web.Response:
    """naraft's API refusing: `{"error": message, **extra}` with the refusal's status."""
    return web.Response(
        body=orjson.dumps({"error": message, **extra}),
        status=NARAFT_STATUS[refusal],
        content_type="application/json",
    )


# ---------------------------------------------------- the HTTP edge, before either API

EDGE_BAD_REQUEST: Final = 400  # unparsable HTTP, undecodable input, too many parameters
EDGE_BODY_TIMEOUT: Final = 408  # the body did not arrive in time
# (a client body over the client limit: aiohttp's HTTPRequestEntityTooLarge, 413, in app.py)
EDGE_TOO_MANY_CONNECTIONS: Final = 503
# peer traffic (a peer route, a forwarded write) on a connection without a certificate the
# peer CA signed, once peer TLS is on (docs/tls.md)
EDGE_PEER_CERTIFICATE_REQUIRED: Final = 403


def body_for(error: Exception) -> str:
    if isinstance(error, InvalidArgumentError):
        if error.message is not None:
            return error.message
        return f"invalid parameter {wire_name(error.field)}: {error.rule}"
    return str(error)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    v2 = request.path.startswith(V2_BASE)
    try:
        return await handler(request)
    except web.HTTPException as error:
        if request.match_info.http_exception is error:
            return route_miss(error, request)
        if v2 and error.status >= 400:
            return _v2_http_error(error, request)
        raise
    except ConnectionResetError as error:
        # The client went away before its body was read (a forwarding follower killed
        # mid-request: the chaos campaign found this one). Nothing was proposed, and there
        # is nobody left to answer; the status is for the access log only.
        logger.info("client left mid-request %s %s: %s", request.method, request.path, error)
        return web.Response(
            status=EDGE_BAD_REQUEST, text="the connection was lost while reading the request"
        )
    except Exception as error:
        if v2:
            return _v2_error(error, request)
        status = status_for(error)
        if status is None:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return web.Response(status=500, text="internal error")
        return web.Response(status=status, text=body_for(error))


def _v2_error(error: Exception, request: web.Request) -> web.Response:
    mapped = v2_error_for(error)
    if mapped is None:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return v2_result("internal error", SERVER_ERROR, 500)
    return v2_result(v2_detail(error), mapped.code, mapped.status)
