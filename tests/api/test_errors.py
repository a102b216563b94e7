"""The error edge: statuses, plain bodies without stack traces, body size limit."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from naraft.api import make_app
from naraft.api.errors import status_for
from naraft.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    ProposalDroppedError,
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


class FailingProposer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def propose(self, command: bytes) -> object:
        raise self.error

    async def read_barrier(self) -> None:
        raise self.error


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
