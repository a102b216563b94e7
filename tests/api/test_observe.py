"""The request middleware's access log: switchable, secrets kept out, peer traffic left
out, lines in the node's text format or as JSON objects, written in batches."""

from __future__ import annotations

import datetime
import io
import logging
import re

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from tests.api.conftest import Env

from naraft.api import make_app
from naraft.api.app import SENDER_HEADER, is_peer_request
from naraft.api.observe import (
    ACCESS_LOGGER,
    SECRET_PARAMS,
    AccessLog,
    logged_target,
    observe_middleware,
)
from naraft.api.v1.beats import BEATS_PATH
from naraft.logs import JsonFormatter

Client = TestClient[web.Request, web.Application]
LIST = "/nacos/v1/ns/service/list"


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append((method, route, status))


async def client_for(access_log: AccessLog | None, recorder: Recorder) -> Client:
    app = make_app(
        Env().naming,
        observe=observe_middleware(recorder, access_log=access_log, is_peer=is_peer_request),
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


def flushed(access: AccessLog, stream: io.StringIO) -> list[str]:
    """The lines kept so far (the batch's timer is tested with a running node)."""
    access.flush()
    return stream.getvalue().splitlines()


async def test_the_access_log_hides_secrets_and_names_the_request() -> None:
    recorder, stream = Recorder(), io.StringIO()
    access = AccessLog(stream, json_lines=False)
    client = await client_for(access, recorder)
    try:
        answer = await client.get(
            LIST,
            params={"pageNo": "1", "pageSize": "10", "accessToken": "tok-123", "password": "pw"},
            headers={"User-Agent": "Nacos-Java-Client:v1.4.1"},
        )
        assert answer.status == 200
        (line,) = flushed(access, stream)
    finally:
        await client.close()
    assert "tok-123" not in line
    pattern = (
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO naraft\.access: 127\.0\.0\.1 "
        r'"GET /nacos/v1/ns/service/list\?pageNo=1&pageSize=10&accessToken=\*\*\*&password=\*\*\* '
        r'HTTP/1\.1" 200 \d+ \d+\.\d{3}ms "Nacos-Java-Client:v1\.4\.1"'
    )
    assert re.fullmatch(pattern, line), line
    assert recorder.seen == [("GET", LIST, 200)]


async def test_json_access_lines_carry_the_fields() -> None:
    stream = io.StringIO()
    access = AccessLog(stream, json_lines=True)
    client = await client_for(access, Recorder())
    try:
        assert (await client.get(LIST, params={"pageNo": "x"})).status == 400
        (line,) = flushed(access, stream)
    finally:
        await client.close()
    fields = orjson.loads(line)
    assert fields["logger"] == ACCESS_LOGGER
    assert (fields["method"], fields["path"], fields["status"]) == ("GET", LIST, 400)
    assert fields["level"] == "INFO"
    assert fields["time"].endswith("+00:00")
    assert fields["ms"] >= 0


@pytest.mark.parametrize("json_lines", [False, True], ids=["text", "json"])
def test_the_stamp_of_each_line_is_its_own_instant(json_lines: bool) -> None:
    """A second is formatted once and reused: every line must still show its own instant,
    milliseconds included, in the log handler's format (local) or ISO 8601 UTC (JSON)."""
    now = [0]
    access = AccessLog(io.StringIO(), json_lines=json_lines, clock_ms=lambda: now[0])
    for instant in (1_796_000_000_000, 1_796_000_000_500, 1_796_000_000_999, 1_796_000_001_250):
        now[0] = instant
        moment = datetime.datetime.fromtimestamp(instant / 1000, datetime.UTC)
        if json_lines:
            expected = moment.isoformat(timespec="milliseconds")
        else:
            local = moment.astimezone()
            expected = f"{local:%Y-%m-%d %H:%M:%S},{local.microsecond // 1000:03d}"
        assert access._stamp() == expected


async def test_the_access_log_can_be_switched_off_and_skips_peer_traffic() -> None:
    recorder = Recorder()
    off = await client_for(None, recorder)
    try:
        listed = await off.get(LIST, params={"pageNo": "1", "pageSize": "9"})
        assert listed.status == 200
    finally:
        await off.close()
    assert len(recorder.seen) == 1  # measured all the same
    stream = io.StringIO()
    access = AccessLog(stream, json_lines=False)
    on = await client_for(access, recorder)
    try:
        await on.put(BEATS_PATH, headers={SENDER_HEADER: "127.0.0.1:1"})
    finally:
        await on.close()
    access.flush()
    assert stream.getvalue() == ""
    assert recorder.seen[-1][2] >= 400


def test_json_lines_carry_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("naraft", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   exc_info=__import__("sys").exc_info())  # fmt: skip
    fields = orjson.loads(JsonFormatter().format(record))
    assert fields["message"] == "failed x"
    assert "ValueError: boom" in fields["exception"]


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        pytest.param("/a?x=1&y=%40b", "/a?x=1&y=%40b", id="as-sent"),
        pytest.param("/a?pageToken=7", "/a?pageToken=7", id="a-name-that-only-contains-one"),
        pytest.param("/a?x=1&Password=pw", "/a?x=1&Password=***", id="any-case"),
        pytest.param("/a?p%61ssword=pw&x=%40", "/a?password=***&x=@", id="escaped-name"),
        pytest.param("/a?accessToken=t", "/a?accessToken=***", id="token"),
        pytest.param("/a", "/a", id="no-query"),
        pytest.param("http://h:1/a?secret=s", "/a?secret=***", id="absolute-form"),
    ],
)
def test_logged_targets_are_as_sent_with_every_secret_masked(target: str, logged: str) -> None:
    assert logged_target(make_mocked_request("GET", target)) == logged


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
def test_every_secret_name_is_masked_in_capitals_and_unescaped(name: str) -> None:
    """The unescaped query takes a quick path that looks for words the secret names hold:
    a name it would miss stays unmasked here."""
    target = f"/a?x=1&{name.upper()}=v"
    assert logged_target(make_mocked_request("GET", target)) == f"/a?x=1&{name.upper()}=***"
