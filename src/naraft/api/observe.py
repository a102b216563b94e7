"""Every HTTP request measured and, unless switched off, logged: one middleware.

The measure is by route template (`/naraft/v1/kv/{key}`, never the key itself), method and
status, so that the series stay few whatever clients send; a path that matches no route is
counted as `unmatched`. The status is the one the client got: this middleware sits outside
the error middleware, so a refusal counts with the status it was answered with; a request
whose client went away before the answer counts as 499 (nginx's "client closed").

The access log (`AccessLog`) has one line per client request, as Nacos's access log: remote
address, request line (secret parameters masked), status, bytes, milliseconds, user agent;
as text in the node's log format under the name `naraft.access`, or as a JSON object with
the same as fields. Peer traffic (Raft messages, forwarded beats) is measured but not
logged: a three-node cluster exchanges tens of messages a second. The lines are written in
batches, at most `FLUSH_SECONDS` after their request: through the logging module each line
cost ~45 µs of CPU, which on a list request was half again the request's own cost.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from collections.abc import Callable
from typing import Final, Protocol, TextIO

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from naraft.api.errors import Handler
from naraft.transport.signing import wall_clock_ms

ACCESS_LOGGER: Final = "naraft.access"
FLUSH_SECONDS: Final = 0.05
UNMATCHED: Final = "unmatched"
CLIENT_CLOSED: Final = 499
SECRET_PARAMS: Final = frozenset({"password", "accesstoken", "token", "secret"})
_SECRET_NAMES: Final = ("password", "token", "secret")  # in every SECRET_PARAMS name


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
    access_log: AccessLog | None,
    is_peer: Callable[[web.BaseRequest], bool],
) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        # perf_counter, not the loop's clock: uvloop's counts whole milliseconds
        started = time.perf_counter()
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
            seconds = time.perf_counter() - started
            route = route_template(request)
            if observer is not None:
                observer.observe_request(request.method, route, status, seconds)
            if access_log is not None and not is_peer(request):
                access_log.record(request, status, size, seconds)

    return observe


def logged_target(request: web.BaseRequest) -> str:
    """The request target as the client sent it, with secrets (Nacos clients send the
    password and the access token as query parameters) replaced by `***`. The common case
    costs a few substring tests on the raw query; a query with a percent-escape (a name
    could be spelled with one) has its decoded names looked at instead."""
    target = request.raw_path
    if not target.startswith("/"):  # absolute-form: the path and query only
        target = request.path_qs
    query = target.partition("?")[2]
    if not query:
        return target
    if "%" in query:
        if not any(name.lower() in SECRET_PARAMS for name in request.query):
            return target
    elif not any(name in query.lower() for name in _SECRET_NAMES):
        return target
    parts = []
    for name, value in request.query.items():
        shown = "***" if name.lower() in SECRET_PARAMS else value
        parts.append(f"{name}={shown}")
    return f"{request.path}?{'&'.join(parts)}"


class AccessLog:
    """Access log lines, kept for at most `FLUSH_SECONDS` and written to `stream` together
    (whole lines, so they never interleave with other log lines mid-line). Without a
    stream, to whatever `sys.stderr` is when they are written, as the log handler does."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        json_lines: bool,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._stream = stream
        self._clock_ms = clock_ms
        self._json_lines = json_lines
        self._lines: list[str] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._second = -1  # the whole second `_second_shown` shows
        self._second_shown = ""

    def _stamp(self) -> str:
        """The time, as the log handler shows it (local `YYYY-MM-DD HH:MM:SS,mmm`) or, for
        JSON lines, UTC ISO 8601 with milliseconds. Formatting a time costs more than the
        rest of a line, so each second is formatted once."""
        second, millis = divmod(self._clock_ms(), 1000)
        if second != self._second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._second_shown = (
                moment.isoformat()
                if self._json_lines
                else f"{moment.astimezone():%Y-%m-%d %H:%M:%S}"
            )
            self._second = second
        if self._json_lines:  # isoformat: 2026-12-03T04:25:08+00:00 -> ...08.123+00:00
            return f"{self._second_shown[:19]}.{millis:03d}{self._second_shown[19:]}"
        return f"{self._second_shown},{millis:03d}"

    def record(
        self, request: web.BaseRequest, status: int, size: int | None, seconds: float
    ) -> None:
        stamp = self._stamp()
        remote = request.remote or "-"
        agent = request.headers.get("User-Agent", "-")
        millis = round(seconds * 1000, 3)
        shown_size = "-" if size is None else str(size)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        message = (
            f'{remote} "{request.method} {logged_target(request)} {version}" {status} '
            f'{shown_size} {millis:.3f}ms "{agent}"'
        )
        if self._json_lines:
            fields = {
                "time": stamp, "level": "INFO",
                "logger": ACCESS_LOGGER, "message": message, "remote": remote,
                "method": request.method, "path": request.path, "status": status,
                "bytes": size, "ms": millis, "agent": agent,
            }  # fmt: skip
            self._lines.append(orjson.dumps(fields).decode() + "\n")
        else:
            self._lines.append(f"{stamp} INFO {ACCESS_LOGGER}: {message}\n")
        if self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write what is kept now (the node calls it once more as it stops)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the node
            pass
