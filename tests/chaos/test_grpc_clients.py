"""The chaos workload's gRPC side without a cluster: how a gRPC write's answer is judged
for the history, and the post-heal check that every live connection's ephemeral instances
are listed on every node (fake nodes serving the v1 list)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from naraft.chaos import checks
from naraft.chaos.workload import GRPC_SERVICE, GrpcSession, classify_grpc
from naraft.client import INSTANCE_LIST_PATH, PUBLISHERS_PATH, WriteOutcome
from naraft.grpc.client import Answer

pytestmark = pytest.mark.usefixtures("no_leftover_event_loop")

OK = {"resultCode": 200, "errorCode": 0, "message": "", "success": True}


def _refused(code: int) -> dict[str, object]:
    return {"resultCode": 500, "errorCode": code, "message": "m", "success": False}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Answer("InstanceResponse", OK), WriteOutcome.APPLIED),
        (Answer("InstanceResponse", _refused(400)), WriteOutcome.NOT_APPLIED),  # a bad field
        (Answer("InstanceResponse", _refused(403)), WriteOutcome.NOT_APPLIED),
        (Answer("InstanceResponse", _refused(500)), WriteOutcome.NOT_APPLIED),  # on apply
        (Answer("ErrorResponse", _refused(503)), WriteOutcome.NOT_APPLIED),  # no leader
        (Answer("ErrorResponse", _refused(301)), WriteOutcome.NOT_APPLIED),  # unregistered
        (Answer("ErrorResponse", _refused(502)), WriteOutcome.NOT_APPLIED),
        (Answer("ErrorResponse", _refused(500)), WriteOutcome.UNKNOWN),  # may still commit
        (Answer("ErrorResponse", _refused(599)), WriteOutcome.UNKNOWN),
        (Answer("SomethingElse", OK), WriteOutcome.UNKNOWN),
    ],
)
def test_a_grpc_write_is_judged_by_the_one_rule(answer: Answer, outcome: WriteOutcome) -> None:
    assert classify_grpc(answer, "InstanceResponse") is outcome


class _Client:
    def __init__(self, ip: str) -> None:
        self.stream_ended = asyncio.Event()
        self.connection_id = _connection_of(ip)


def _connection_of(ip: str) -> str:
    """The connection id the fake client of `ip` gets (the same on every reconnect)."""
    return f"1_{ip}_5000"


class _Workload:
    """What `checks.grpc_ephemeral` uses of a Workload: its sessions, reconnect, redo."""

    def __init__(self, sessions: list[GrpcSession], *, can_reconnect: bool) -> None:
        self.grpc_sessions = sessions
        self._can_reconnect = can_reconnect
        self.reconnects = 0

    async def reconnect(self, session: GrpcSession) -> bool:
        self.reconnects += 1
        if not self._can_reconnect:
            return False
        session.client = _Client(session.ip)  # type: ignore[assignment]
        session.redo = set(session.wanted)
        return True

    async def redo(self, session: GrpcSession) -> bool:
        session.redo.clear()
        return True


async def _scenario(
    listed: list[set[str]],
    sessions: list[GrpcSession],
    *,
    can_reconnect: bool = True,
    published: list[dict[str, str]] | None = None,
) -> tuple[checks.EphemeralCheck, _Workload]:
    """Nodes listing `listed[i]`, each host published by its ip's connection unless
    `published[i]` says otherwise."""
    runners = []
    nodes = []
    if published is None:
        published = [{h: _connection_of(h.split(":")[0]) for h in hosts} for hosts in listed]
    for i, (hosts, owners) in enumerate(zip(listed, published, strict=True)):

        async def listing(request: web.Request, hosts: set[str] = hosts) -> web.Response:
            assert request.query["serviceName"] == GRPC_SERVICE
            assert request.query["healthyOnly"] == "false"
            rows = [{"ip": h.split(":")[0], "port": int(h.split(":")[1])} for h in hosts]
            return web.json_response({"hosts": rows})

        async def publishers(request: web.Request, owners: dict[str, str] = owners) -> web.Response:
            assert request.query["serviceName"] == GRPC_SERVICE
            rows = [
                {"clientId": c, "ip": h.split(":")[0], "port": int(h.split(":")[1])}
                for h, c in owners.items()
            ]
            return web.json_response({"code": 0, "message": "success", "data": rows})

        app = web.Application()
        app.router.add_get(INSTANCE_LIST_PATH, listing)
        app.router.add_get(PUBLISHERS_PATH, publishers)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        runners.append(runner)

        class Node:
            id = f"n{i}"
            url = f"http://127.0.0.1:{port}"

        nodes.append(Node())

    class Cluster:
        pass

    cluster = Cluster()
    cluster.nodes = nodes  # type: ignore[attr-defined]
    workload = _Workload(sessions, can_reconnect=can_reconnect)
    try:
        result = await checks.grpc_ephemeral(
            cluster,  # type: ignore[arg-type]
            workload,  # type: ignore[arg-type]
            wait_seconds=0.5,
        )
    finally:
        for runner in runners:
            await runner.cleanup()
    return result, workload


def _session(ip: str, ports: set[int], *, live: bool) -> GrpcSession:
    session = GrpcSession(process=f"grpc-{ip}", ip=ip, wanted=set(ports))
    if live:
        session.client = _Client(ip)  # type: ignore[assignment]
    return session


def test_every_live_connections_instances_listed_everywhere_passes() -> None:
    everywhere = {"10.0.2.1:20000", "10.0.2.1:20001", "10.0.2.2:20000", "10.9.9.9:1"}
    sessions = [
        _session("10.0.2.1", {20000, 20001}, live=True),
        _session("10.0.2.2", {20000}, live=False),  # broken: connects again, redoes
    ]
    result, workload = asyncio.run(_scenario([everywhere] * 3, sessions))
    assert result.missing == ()
    assert (result.clients, result.instances) == (2, 3)
    assert result.seconds is not None
    assert workload.reconnects == 1


def test_an_instance_missing_on_one_node_is_reported() -> None:
    full = {"10.0.2.1:20000", "10.0.2.1:20001"}
    sessions = [_session("10.0.2.1", {20000, 20001}, live=True)]
    result, _ = asyncio.run(_scenario([full, {"10.0.2.1:20000"}, full], sessions))
    assert result.missing == ("10.0.2.1:20001 missing on n1",)
    assert result.seconds is None


def test_an_instance_another_connection_published_on_one_node_is_reported() -> None:
    """Listed everywhere, but one node still names a connection the client left: the owner
    its new connection registered did not reach that node."""
    hosts = {"10.0.2.1:20000"}
    stale = {"10.0.2.1:20000": "1_10.0.2.1_4000"}
    current = {"10.0.2.1:20000": _connection_of("10.0.2.1")}
    sessions = [_session("10.0.2.1", {20000}, live=True)]
    result, _ = asyncio.run(_scenario([hosts] * 3, sessions, published=[current, stale, current]))
    assert result.missing == (
        "10.0.2.1:20000 published by '1_10.0.2.1_4000' on n1, not '1_10.0.2.1_5000'",
    )
    assert result.seconds is None


def test_a_client_that_cannot_connect_again_is_reported_and_not_looked_for() -> None:
    sessions = [
        _session("10.0.2.1", {20000}, live=True),
        _session("10.0.2.2", {20005}, live=False),
    ]
    result, _ = asyncio.run(_scenario([{"10.0.2.1:20000"}] * 3, sessions, can_reconnect=False))
    assert result.missing == ("grpc-10.0.2.2 could not connect and register again in 0 s",)
    assert (result.clients, result.instances) == (1, 1)
