"""Every HTTP request measured and, unless switched off, logged: one middleware.

The measure is by route template (`/naraft/v1/kv/{key}`, never the key itself), method and
status, so that the series stay few whatever clients send; a path that matches no route is
counted as `unmatched`. The status is the one the client got: this middleware sits outside
the error middleware, so a refusal counts with the status it was answered with; a request
whose client went away before the answer counts as 499 (nginx's "client closed").

The access log (logger `naraft.access`, INFO) has one line per client request, as Nacos's
access log: remote address, request line, status, bytes, milliseconds, user agent; JSON log
lines carry the same as fields. Peer traffic (Raft messages, forwarded beats) is measured
but not logged: a three-node cluster exchanges tens of messages a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api.errors import Handler

ACCESS_LOGGER: Final = "naraft.access"
UNMATCHED: Final = "unmatched"
CLIENT_CLOSED: Final = 499
SECRET_PARAMS: Final = frozenset({"password", "accesstoken", "token", "secret"})


class RequestObserver(Protocol):
    """Where request measures go (`naraft.metrics.NodeMetrics`)."""

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None: ...


def route_template(request: web.Request) -> str:
    match_info = request.match_info
    resource = match_info.route.resource
    if resource is None or match_info.http_exception is not None:
        return UNMATCHED
    return str(resource.canonical)


def observe_middleware(
    observer: RequestObserver | None,
    *,
    access_log: bool,
    is_peer: Callable[[web.BaseRequest], bool],
) -> Middleware:
    access = logging.getLogger(ACCESS_LOGGER)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = 500
        size: int | None = None
        try:
            response = await handler(request)
            status = response.status
            size = response.content_length
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            seconds = loop.time() - started
            route = route_template(request)
            if observer is not None:
                observer.observe_request(request.method, route, status, seconds)
            if access_log and not is_peer(request) and access.isEnabledFor(logging.INFO):
                _log_access(access, request, status, size, seconds)

    return observe


def logged_target(request: web.BaseRequest) -> str:
    """The path and query as logged: secrets (Nacos clients send the password and the
    access token as query parameters) are replaced by `***`."""
    if not request.query_string:
        return request.path
    parts = []
    for name, value in request.query.items():
        shown = "***" if name.lower() in SECRET_PARAMS else value
        parts.append(f"{name}={shown}")
    return f"{request.path}?{'&'.join(parts)}"


def _log_access(
    access: logging.Logger,
    request: web.BaseRequest,
    status: int,
    size: int | None,
    seconds: float,
) -> None:
    remote = request.remote or "-"
    agent = request.headers.get("User-Agent", "-")
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    millis = round(seconds * 1000, 3)
    access.info(
        '%s "%s %s %s" %d %s %.3fms "%s"',
        remote,
        request.method,
        logged_target(request),
        version,
        status,
        "-" if size is None else size,
        millis,
        agent,
        extra={
            "remote": remote,
            "method": request.method,
            "path": request.path,
            "status": status,
            "bytes": size,
            "ms": millis,
            "agent": agent,
        },
    )
