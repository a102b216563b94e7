"""The request middleware's access log: switchable, secrets kept out, peer traffic left
out; and the JSON log lines carry its fields."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.api.conftest import Env

from naraft.api import make_app
from naraft.api.app import SENDER_HEADER, is_peer_request
from naraft.api.observe import ACCESS_LOGGER, observe_middleware
from naraft.api.v1.beats import BEATS_PATH
from naraft.logs import JsonFormatter


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append((method, route, status))


async def client_for(
    access_log: bool, recorder: Recorder
) -> TestClient[web.Request, web.Application]:
    app = make_app(
        Env().naming,
        observe=observe_middleware(recorder, access_log=access_log, is_peer=is_peer_request),
    )
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> AsyncIterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    return caplog  # type: ignore[return-value]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


async def test_the_access_log_hides_secrets_and_names_the_route(
    access: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    client = await client_for(True, recorder)
    try:
        answer = await client.get(
            "/nacos/v1/ns/service/list",
            params={"pageNo": "1", "pageSize": "10", "accessToken": "tok-123", "password": "pw"},
        )
        assert answer.status == 200
    finally:
        await client.close()
    (record,) = access_lines(access)
    line = record.getMessage()
    assert "tok-123" not in line
    assert "pageSize=10&accessToken=***&password=***" in line
    assert '" 200 ' in line
    assert recorder.seen == [("GET", "/nacos/v1/ns/service/list", 200)]
    # the JSON format carries the same as fields
    fields = orjson.loads(JsonFormatter().format(record))
    assert fields["logger"] == ACCESS_LOGGER
    assert (fields["method"], fields["path"], fields["status"]) == (
        "GET", "/nacos/v1/ns/service/list", 200,
    )  # fmt: skip
    assert fields["level"] == "INFO"
    assert fields["time"].endswith("+00:00")


async def test_the_access_log_can_be_switched_off_and_skips_peer_traffic(
    access: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    off = await client_for(False, recorder)
    try:
        listed = await off.get("/nacos/v1/ns/service/list", params={"pageNo": "1", "pageSize": "9"})
        assert listed.status == 200
    finally:
        await off.close()
    assert access_lines(access) == []
    assert len(recorder.seen) == 1  # measured all the same
    on = await client_for(True, recorder)
    try:
        await on.put(BEATS_PATH, headers={SENDER_HEADER: "127.0.0.1:1"})
    finally:
        await on.close()
    assert access_lines(access) == []
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
