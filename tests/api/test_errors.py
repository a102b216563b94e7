"""The error edge: statuses, plain bodies without stack traces, body size limit."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from naraft.api import make_app
from naraft.api.errors import (
    NACOS_STATUS,
    NACOS_V2_ERRORS,
    NARAFT_STATUS,
    Refusal,
    proposal_failure,
    status_for,
)
from naraft.errors import (
    AlreadyExistsError,
    DiskFullError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    ProposalDroppedError,
    QuotaExceededError,
    UnauthorizedError,
    UnavailableError,
)
from naraft.raft.errors import NotLeaderError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param(InvalidArgumentError("port", "1..65535"), 400, id="invalid"),
        pytest.param(AlreadyExistsError("service_name", "exists"), 400, id="exists"),
        pytest.param(NotFoundError("service", "s"), 404, id="not-found"),
        pytest.param(UnauthorizedError("no"), 403, id="unauthorized"),
        pytest.param(UnavailableError("no quorum"), 503, id="unavailable"),
        pytest.param(ProposalDroppedError("lost"), 503, id="dropped"),
        pytest.param(OutcomeUnknownError("timeout"), 503, id="unknown-outcome"),
        pytest.param(NotLeaderError(None), 503, id="not-leader"),
        pytest.param(RuntimeError("bug"), None, id="bug"),
    ],
)
def test_status_for(error: Exception, status: int | None) -> None:
    assert status_for(error) == status


def test_every_kv_refusal_has_one_status() -> None:
    assert set(NARAFT_STATUS) == set(Refusal)


@pytest.mark.parametrize(
    ("error", "status", "outcome", "reason"),
    [
        pytest.param(ProposalDroppedError("lost"), 503, "not-applied", None, id="dropped"),
        pytest.param(OutcomeUnknownError("timeout"), 503, "unknown", None, id="unknown"),
        pytest.param(DiskFullError("full"), 507, "not-applied", "disk-full", id="disk-full"),
        pytest.param(QuotaExceededError("quota"), 507, "not-applied", "quota", id="quota"),
        pytest.param(UnavailableError("no quorum"), 503, "not-applied", None, id="unavailable"),
    ],
)
def test_what_a_proposal_failure_means_on_the_kv_api(
    error: UnavailableError, status: int, outcome: str, reason: str | None
) -> None:
    failure = proposal_failure(error)
    assert (NARAFT_STATUS[failure.refusal], failure.outcome, failure.reason) == (
        status,
        outcome,
        reason,
    )


class FailingProposer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def propose(self, command: bytes) -> object:
        raise self.error

    async def read_barrier(self) -> None:
        raise self.error

    async def local_read_point(self) -> None:
        return None  # a local read never waits on a barrier that can fail


async def serve(env: Any, error: Exception, **app_options: Any) -> TestClient[Any, Any]:
    from naraft.naming.service import NamingService  # the same wiring, another proposer

    naming = NamingService(env.state, FailingProposer(error), env.clock, env.beats, env.push)
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(naming, **app_options))
    )
    await client.start_server()
    return client


REGISTER = "/nacos/v1/ns/instance?ip=1.2.3.4&port=80&serviceName=s"


async def test_unavailable_is_503_with_a_plain_message(env: Any) -> None:
    client = await serve(env, UnavailableError("no leader elected"))
    try:
        response = await client.post(REGISTER)
        assert response.status == 503  # makes the Python client fail over
        assert await response.text() == "no leader elected"
    finally:
        await client.close()


async def test_a_bug_is_500_without_a_stack_trace(env: Any) -> None:
    client = await serve(env, RuntimeError("secret internals"))
    try:
        response = await client.post(REGISTER)
        assert response.status == 500
        assert await response.text() == "internal error"
    finally:
        await client.close()


async def test_a_large_body_is_413(env: Any) -> None:
    client = await serve(env, RuntimeError("unused"), max_body_bytes=1024)
    try:
        response = await client.post(REGISTER, data=b"x" * 4096)
        assert response.status == 413
        response = await client.post(
            "/nacos/v1/ns/instance", data={"ip": "1.2.3.4", "port": "80", "metadata": "y" * 4096}
        )
        assert response.status == 413
    finally:
        await client.close()
    assert env.snapshot() == {}


async def test_extra_routes_are_served(env: Any) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    client = await serve(env, RuntimeError("unused"), extra_routes=[web.get("/x/hello", hello)])
    try:
        response = await client.get("/x/hello")
        assert await response.text() == "hi"
    finally:
        await client.close()


async def test_missing_parameter_body_names_it(env: Any) -> None:
    status, body = await env.text(
        "POST", "/nacos/v1/ns/instance", {"ip": "1.2.3.4", "serviceName": "s"}
    )
    assert (status, body) == (400, "invalid parameter port: is required")


class _Heard(logging.Handler):
    """Sets `event` when a record containing `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.event = asyncio.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.text in record.getMessage():
            self.event.set()


async def test_a_client_that_leaves_mid_body_is_not_a_server_error(env: Any) -> None:
    """A forwarding follower killed while sending its request: the body read fails with
    ConnectionResetError. Nothing was proposed, and nothing is logged as an error. (Served
    by an AppRunner as the node does: aiohttp's TestServer cancels the handler instead.)"""
    from naraft.naming.service import NamingService

    naming = NamingService(
        env.state,
        FailingProposer(UnavailableError("never reached")),
        env.clock,
        env.beats,
        env.push,
    )
    heard = _Heard("client left mid-request")
    errors_logger = logging.getLogger("naraft.api.errors")
    errors_logger.addHandler(heard)
    level = errors_logger.level
    errors_logger.setLevel(logging.DEBUG)
    runner = web.AppRunner(make_app(naming), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert runner.addresses
        host, port = runner.addresses[0][:2]
        _reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST " + REGISTER.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
            b"weight=1"
        )
        await writer.drain()
        # Reset, as a killed process's kernel does: linger on, zero seconds.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        async with asyncio.timeout(5):
            await heard.event.wait()
        assert not [r for r in heard.records if r.levelno >= logging.ERROR]
        assert env.state.instance_count() == 0
    finally:
        await runner.cleanup()
        errors_logger.removeHandler(heard)
        errors_logger.setLevel(level)


V2_REGISTER = "/nacos/v2/ns/instance?ip=1.2.3.4&port=80&serviceName=s"


def test_every_v1_error_has_a_v2_status_and_code() -> None:
    assert set(NACOS_STATUS) <= set(NACOS_V2_ERRORS)
    for cls, mapped in NACOS_V2_ERRORS.items():
        assert mapped.code.code > 0, cls


@pytest.mark.parametrize(
    ("error", "status", "code", "data"),
    [
        pytest.param(UnavailableError("no leader elected"), 503, 30000, "no leader elected"),
        pytest.param(DiskFullError("disk full"), 503, 30000, "disk full"),
        pytest.param(RuntimeError("secret internals"), 500, 30000, "internal error"),
    ],
)
async def test_v2_failures_answer_in_the_v2_shape(
    env: Any, error: Exception, status: int, code: int, data: str
) -> None:
    client = await serve(env, error)
    try:
        response = await client.post(V2_REGISTER)
        assert response.status == status
        assert await response.json() == {"code": code, "message": "server error", "data": data}
    finally:
        await client.close()


async def test_a_large_v2_body_is_413_in_the_v2_shape(env: Any) -> None:
    client = await serve(env, RuntimeError("unused"), max_body_bytes=1024)
    try:
        response = await client.post(V2_REGISTER, data=b"x" * 4096)
        assert response.status == 413
        assert (await response.json())["code"] == 20002
    finally:
        await client.close()
    assert env.snapshot() == {}


async def test_an_unknown_nacos_path_answers_springs_error_json(env: Any) -> None:
    response = await env.call("GET", "/nacos/v1/ns/no/such/path")
    assert response.status == 404
    body = await response.json()
    assert (body["status"], body["error"], body["path"]) == (
        404,
        "Not Found",
        "/nacos/v1/ns/no/such/path",
    )
    assert "GET /nacos/v1/ns/no/such/path" in body["message"]
    assert "timestamp" in body


async def test_a_method_the_path_does_not_serve_is_springs_405_with_allow(env: Any) -> None:
    response = await env.call("PATCH", "/nacos/v1/ns/service/list")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    body = await response.json()
    assert (body["status"], body["error"]) == (405, "Method Not Allowed")
    assert body["message"] == "Request method 'PATCH' not supported"


async def test_an_unknown_naraft_path_answers_in_naraft_shape(env: Any) -> None:
    response = await env.call("GET", "/naraft/v1/no-such-thing")
    assert response.status == 404
    assert await response.json() == {
        "error": "no such naraft API path: GET /naraft/v1/no-such-thing"
    }


async def test_a_handler_not_found_keeps_its_own_answer(env: Any) -> None:
    # A route that matched and answered 404 itself is not a routing miss.
    status, body = await env.text("GET", "/nacos/v1/ns/service", {"serviceName": "missing"})
    assert status == 404
    assert "timestamp" not in body


async def test_a_method_a_naraft_path_does_not_serve_is_405_in_naraft_shape(env: Any) -> None:
    async def version(request: web.Request) -> web.Response:
        return web.Response(text="v")

    route = web.get("/naraft/v1/thing", version)
    client = await serve(env, RuntimeError("unused"), extra_routes=[route])
    try:
        unserved = await client.patch("/naraft/v1/thing")
        assert unserved.status == 405
        assert "GET" in unserved.headers["Allow"]
        assert await unserved.json() == {"error": "method PATCH is not served on /naraft/v1/thing"}
    finally:
        await client.close()
