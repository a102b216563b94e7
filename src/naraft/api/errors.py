"""Exception → HTTP status and plain-text body. The only module that knows status codes.

Like Nacos's `ResponseExceptionHandler`: a status and a plain message, never a stack
trace. A 400 body names the parameter by its wire (camelCase) name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from aiohttp import web

from naraft.api.params import wire_name
from naraft.errors import (
    CommandRejectedError,
    InvalidArgumentError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)
from naraft.raft.errors import NotLeaderError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_BY_ERROR: Final[Mapping[type[Exception], int]] = {
    InvalidArgumentError: 400,  # AlreadyExistsError too: Nacos answers 400 for it
    NotFoundError: 404,
    UnauthorizedError: 403,
    NotLeaderError: 503,  # reached only when forwarding to the leader failed
    UnavailableError: 503,  # the Python client fails over on 503 (disk full, quota too)
    CommandRejectedError: 500,  # committed, rejected on apply by every replica: a server fault
}


def status_for(error: Exception) -> int | None:
    """The status of the closest mapped base class of `error`, if any."""
    for cls in type(error).__mro__:
        if (status := STATUS_BY_ERROR.get(cls)) is not None:
            return status
    return None


def body_for(error: Exception) -> str:
    if isinstance(error, InvalidArgumentError):
        if error.message is not None:
            return error.message
        return f"invalid parameter {wire_name(error.field)}: {error.rule}"
    return str(error)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConnectionResetError as error:
        # The client went away before its body was read (a forwarding follower killed
        # mid-request: the chaos campaign found this one). Nothing was proposed, and there
        # is nobody left to answer; the status is for the access log only.
        logger.info("client left mid-request %s %s: %s", request.method, request.path, error)
        return web.Response(status=400, text="the connection was lost while reading the request")
    except Exception as error:
        status = status_for(error)
        if status is None:
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return web.Response(status=500, text="internal error")
        return web.Response(status=status, text=body_for(error))
