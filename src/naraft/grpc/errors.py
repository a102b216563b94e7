"""The gRPC API's one error table: which naraft error becomes which Nacos error code.

Nacos 2.x answers a refused request in one of two shapes. A request the server could not
take at all (undecodable, of an unknown type, on an unregistered connection, or failed
inside the server) gets an `ErrorResponse`; a request its handler refused for a reason of
the domain (a bad field, a missing right, a conflict) gets its own response type carrying
`resultCode` 500, the `errorCode` and a message. Clients act on the difference: an
`ErrorResponse` is retried and, with code 301, makes the client reconnect; a typed refusal
is raised to the application at once.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from naraft.errors import (
    CommandRejectedError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    UnauthorizedError,
    UnavailableError,
    UnsupportedError,
)
from naraft.raft.errors import NotLeaderError

ERROR_RESPONSE: Final = "ErrorResponse"
SUCCESS: Final = 200
FAIL: Final = 500


class Code(enum.IntEnum):
    """Nacos's `NacosException` codes, as its clients read them."""

    INVALID_SERVER_STATUS = 300  # the server is starting or stopping: try later
    UN_REGISTER = 301  # the connection is not registered: reconnect
    NO_HANDLER = 302  # no handler for this request type
    INVALID_PARAM = 400
    NO_RIGHT = 403
    NOT_FOUND = 404
    CONFLICT = 409
    SERVER_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502  # the request could not be parsed
    OVER_THRESHOLD = 503  # unavailable: no leader, over a limit


class RefusedError(Exception):
    """A refusal with an explicit code, raised by handlers and the dispatcher."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def refusal_of(error: BaseException) -> tuple[Code, str, bool]:
    """(code, message, typed): how `error` is answered. `typed` is True for the domain
    refusals answered in the request's own response type, False for an ErrorResponse."""
    match error:
        case RefusedError():
            return error.code, error.message, error.code < Code.SERVER_ERROR
        case InvalidArgumentError():
            return Code.INVALID_PARAM, str(error), True
        case NotFoundError():
            return Code.NOT_FOUND, str(error), True
        case UnauthorizedError():
            return Code.NO_RIGHT, str(error), True
        case ConflictError():
            return Code.CONFLICT, str(error), True
        case UnsupportedError():
            return Code.NOT_IMPLEMENTED, str(error), True
        case CommandRejectedError():
            return Code.SERVER_ERROR, str(error), True
        case OutcomeUnknownError():
            return Code.SERVER_ERROR, str(error), False
        case NotLeaderError():
            return Code.OVER_THRESHOLD, "no leader is known yet; try again", False
        case UnavailableError():
            return Code.OVER_THRESHOLD, str(error), False
        case _:
            return Code.SERVER_ERROR, "the server failed to handle the request", False


def ok(**fields: Any) -> dict[str, Any]:
    """A success body with Nacos's common response fields."""
    return {"resultCode": SUCCESS, "errorCode": 0, "message": "", "success": True, **fields}


def failed(code: int, message: str) -> dict[str, Any]:
    """A refusal body with Nacos's common response fields."""
    return {"resultCode": FAIL, "errorCode": int(code), "message": message, "success": False}
