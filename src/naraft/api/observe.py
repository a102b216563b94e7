"""Every HTTP request measured and, unless switched off, logged: one middleware.

The measure is by route template (`/naraft/v1/kv/{key}`, never the key itself), method and
status, so that the series stay few whatever clients send; a path that matches no route is
counted as `unmatched`. The status is the one the client got: this middleware sits outside
the error middleware, so a refusal counts with the status it was answered with; a request
whose client went away before the answer counts as 499 (nginx's "client closed"). A
request whose connection was handed out of aiohttp to wait (`naraft.api.edge.HeldResponse`)
is measured and logged when it is answered.

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
from typing import Final, NamedTuple, Protocol, TextIO

import orjson
from aiohttp import HttpVersion10, HttpVersion11, web
from aiohttp.typedefs import Middleware

from naraft.api.edge import CLIENT_CLOSED, HeldResponse
from naraft.api.errors import Handler
from naraft.logs import ACCESS_LOGGER
from naraft.transport.signing import wall_clock_ms

FLUSH_SECONDS: Final = 0.05
UNMATCHED: Final = "unmatched"
SECRET_PARAMS: Final = frozenset({"password", "accesstoken", "token", "secret"})
_VERSIONS: Final = {HttpVersion10: "HTTP/1.0", HttpVersion11: "HTTP/1.1"}


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
        record = _Recorder(request, observer, access_log if not is_peer(request) else None)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            record(error.status, None)
            raise
        except asyncio.CancelledError:
            record(CLIENT_CLOSED, None)
            raise
        except BaseException:
            record(500, None)
            raise
        if isinstance(response, HeldResponse):
            response.connection.on_answered = record  # measured when it is answered
        else:
            record(response.status, response.content_length)
        return response

    return observe


class _Recorder:
    """Measures and logs one request once its status is known: what it keeps of the
    request is a few strings, so a request answered later (`HeldResponse`) keeps no more."""

    __slots__ = ("_entry", "_log", "_method", "_observer", "_route", "_started")

    def __init__(
        self,
        request: web.Request,
        observer: RequestObserver | None,
        access_log: AccessLog | None,
    ) -> None:
        self._started = time.perf_counter()
        self._observer = observer
        self._log = access_log
        self._method = request.method
        self._route = route_template(request)
        self._entry = access_log.entry(request) if access_log is not None else None

    def __call__(self, status: int, size: int | None) -> None:
        seconds = time.perf_counter() - self._started
        if self._observer is not None:
            self._observer.observe_request(self._method, self._route, status, seconds)
        if self._log is not None and self._entry is not None:
            self._log.write(self._entry, status, size, seconds)


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
    else:
        # every SECRET_PARAMS name holds one of the three words (one lower(), three tests)
        lowered = query.lower()
        if "password" not in lowered and "token" not in lowered and "secret" not in lowered:
            return target
    parts = []
    for name, value in request.query.items():
        shown = "***" if name.lower() in SECRET_PARAMS else value
        parts.append(f"{name}={shown}")
    return f"{request.path}?{'&'.join(parts)}"


class AccessEntry(NamedTuple):
    """What an access log line shows of a request."""

    remote: str
    method: str
    target: str
    path: str
    version: str
    agent: str


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

    @staticmethod
    def entry(request: web.BaseRequest) -> AccessEntry:
        """What a line shows of the request."""
        version = request.version
        shown_version = _VERSIONS.get(version) or f"HTTP/{version.major}.{version.minor}"
        return AccessEntry(
            remote=request.remote or "-",
            method=request.method,
            target=logged_target(request),
            path=request.path,
            version=shown_version,
            agent=request.headers.get("User-Agent", "-"),
        )

    def write(self, entry: AccessEntry, status: int, size: int | None, seconds: float) -> None:
        stamp = self._stamp()
        millis = round(seconds * 1000, 3)
        shown_size = "-" if size is None else str(size)
        message = (
            f'{entry.remote} "{entry.method} {entry.target} {entry.version}" {status} '
            f'{shown_size} {millis:.3f}ms "{entry.agent}"'
        )
        if self._json_lines:
            fields = {
                "time": stamp, "level": "INFO",
                "logger": ACCESS_LOGGER, "message": message, "remote": entry.remote,
                "method": entry.method, "path": entry.path, "status": status,
                "bytes": size, "ms": millis, "agent": entry.agent,
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
