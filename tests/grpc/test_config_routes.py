"""ConfigRoutes in one process (no sockets): a registered connection, the routes served
by `GrpcServer.serve`, and pushes answered (or not) by reading the connection's queue.
What the e2e tests cannot see from outside: the per-connection bound on listens, that a
closed connection's listens are forgotten, and that pushes for one config coalesce."""

from __future__ import annotations

import asyncio
from typing import Any

from naraft.configs.model import ConfigKey
from naraft.configs.service import ConfigService
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigState, config_datum_key
from naraft.grpc import payload
from naraft.grpc.config import NOTIFY, ConfigRoutes
from naraft.grpc.connections import Connection, ConnectionTable
from naraft.grpc.server import GrpcServer
from naraft.machine import NodeStateMachine
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumTable

KEY = ConfigKey(tenant="", group="DEFAULT_GROUP", data_id="app.yaml")


class _Proposer:
    """Applies each command at once, as a single node that is always the leader."""

    def __init__(self, datums: DatumTable, state: ConfigState) -> None:
        self.machine = NodeStateMachine(datums, NamingState(datums), configs=state)
        self.index = 0

    async def propose(self, command: bytes) -> object:
        self.index += 1
        return self.machine.apply(Entry(term=1, index=self.index, command=command))

    async def read_barrier(self) -> None:
        return None


class _Clock:
    def now_ms(self) -> int:
        return 1_700_000_000_000


def _node(max_listens: int = 3) -> tuple[GrpcServer, ConfigRoutes, ConnectionTable]:
    datums = DatumTable()
    state = ConfigState(datums)
    service = ConfigService(state, _Proposer(datums, state), _Clock(), ConfigSettings())
    table = ConnectionTable("n1", max_connections=10, now_ms=lambda: 1)
    server = GrpcServer(node_id="n1", connections=table, auth=None)
    routes = ConfigRoutes(service, server, push_timeout_seconds=5.0, max_listens=max_listens)
    server.add_routes(routes.routes())
    routes.attach(table)
    return server, routes, table


def _connect(table: ConnectionTable, port: int) -> Connection:
    return table.register(
        f"ipv4:127.0.0.1:{port}", client_ip="127.0.0.1", client_version="t", tenant="", labels={}
    )


async def _call(
    server: GrpcServer, connection: Connection, kind: str, body: dict[str, Any]
) -> dict[str, Any]:
    route = server.route(kind)
    assert route is not None
    answer = await server.serve(route, body, {}, connection, "1")
    decoded: dict[str, Any] = payload.decoded(answer).body
    return decoded


def _listen_body(*data_ids: str, listen: bool = True) -> dict[str, Any]:
    contexts = [{"dataId": d, "group": "DEFAULT_GROUP", "tenant": "", "md5": ""} for d in data_ids]
    return {"listen": listen, "configListenContexts": contexts}


async def test_listens_are_bounded_per_connection_and_forgotten_on_close() -> None:
    server, routes, table = _node(max_listens=3)
    first, second = _connect(table, 1), _connect(table, 2)
    answer = await _call(server, first, "ConfigBatchListenRequest", _listen_body("a", "b", "c"))
    assert answer["errorCode"] == 0
    over = await _call(server, first, "ConfigBatchListenRequest", _listen_body("d"))
    assert over["errorCode"] == 400
    assert "at most 3" in over["message"]
    again = await _call(server, first, "ConfigBatchListenRequest", _listen_body("a", "b"))
    assert again["errorCode"] == 0  # listening again to what it holds is not more
    await _call(server, second, "ConfigBatchListenRequest", _listen_body("a"))
    assert routes.listens == 4
    assert server.counts()["config_listens"] == 4  # shown in /metrics as naraft_grpc

    stop = await _call(server, first, "ConfigBatchListenRequest", _listen_body("a", listen=False))
    assert stop["errorCode"] == 0
    assert routes.listens == 3
    await table.forget(first)
    assert routes.listens == 1
    await table.forget(second)
    assert routes.listens == 0

    third = _connect(table, 3)
    body = _listen_body("x")
    body["configListenContexts"].append({"dataId": "bad id", "group": "G", "md5": ""})
    bad = await _call(server, third, "ConfigBatchListenRequest", body)
    assert bad["errorCode"] == 400
    assert "dataId" in bad["message"]
    assert routes.listens == 0  # all or nothing: "x" is not listened either


async def test_pushes_for_one_config_coalesce_while_one_is_unanswered() -> None:
    server, routes, table = _node()
    connection = _connect(table, 1)
    await _call(server, connection, "ConfigBatchListenRequest", _listen_body("app.yaml"))
    changed = [config_datum_key(KEY)]
    for _ in range(5):  # five applied changes while the first push waits for its answer
        routes.on_changes(changed)
    await asyncio.sleep(0)  # the push task runs up to its wait
    sent: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(sent) < 2:
            message = payload.decoded(await connection.outbound.get())
            assert message.type == NOTIFY
            assert message.body["dataId"] == "app.yaml"
            sent.append(message.body)
            connection.answered(message.body["requestId"], {"resultCode": 200})
        await routes.settled()
    assert connection.outbound.empty()  # one in flight, one owed: never five
    assert connection.pushes_sent == 2
    routes.on_changes([config_datum_key(ConfigKey("", "DEFAULT_GROUP", "other"))])
    assert connection.outbound.empty()  # a config nobody listens to pushes nothing
