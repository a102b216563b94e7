"""Concurrent clients against the key/value and naming APIs, recording one history.

Each client is an asyncio task pinned to a random node (re-chosen after an error) that
issues, at a modest pace: linearizable reads, writes of unique values, compare-and-sets on
the value it last saw, deletes, write-once "set" keys (never overwritten: the acked-writes
check looks for every one of them on every node), and naming operations on persistent
instances (register, deregister, linearizable list), recorded as registers per instance
key holding "present" or absent, and marks: Nacos's batch metadata
(`PUT /instance/metadata/batch`, the first command a newer build added, so the first one
also records the cluster's version) sets a unique `mark` on an instance of `chaos-marks`,
and a linearizable instance detail reads it back, a register per instance. Each such
instance is registered once, unrecorded, before its first mark (a registration replaces
metadata, so it never comes again). Cluster marks are the same on clusters of
`chaos-marks`, set through Nacos's cluster update and read from a linearizable service
detail. Keys rotate after `max_ops_per_key` operations so
the checker's per-key search stays small (docs/histories.md).

A few more clients speak the Nacos 2.x gRPC protocol (`GrpcSession`), as the 2.x SDKs do:
each holds one connection to a random node (another one after it breaks), registers
ephemeral instances its connection owns (service `chaos-grpc`, an ip of its own, a fresh
port each time), deregisters some, and after a reconnect registers again every instance
it still wants (the SDKs' redo). Its persistent writes (`PersistentInstanceRequest`) go to
the same instance keys as the HTTP naming operations and into the same history.

Answers are judged by `naraft.client.classify_write` (gRPC answers by `classify_grpc`,
the same rule in that protocol's words), and recorded as docs/histories.md says: applied
is ok, not applied is fail, unknown is info.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import grpc
import orjson

from naraft.chaos.cluster import ChaosCluster, ChaosNode
from naraft.chaos.configs import (
    CONFIG_KEY_PREFIX,
    CONFIG_SET_PREFIX,
    GROUP,
    get_config,
    md5_of,
    pick_config_key,
)
from naraft.checker import HistoryRecorder, JsonValue, OpFunction, RecordType
from naraft.client import (
    CLUSTER_PATH,
    CONFIGS_PATH,
    INSTANCE_LIST_PATH,
    INSTANCE_PATH,
    KV_PATH,
    METADATA_BATCH_PATH,
    SERVICE_PATH,
    WriteOutcome,
    body_of,
    classify_failure,
    classify_write,
)
from naraft.grpc.client import Answer, GrpcTestClient

PRESENT: Final = "present"
NAMING_PREFIX: Final = "naming/"
MARK_PREFIX: Final = "mark/"  # the `mark` metadata of a `chaos-marks` instance, a register
MARK_SERVICE: Final = "chaos-marks"
CLUSTER_MARK_PREFIX: Final = "cmark/"  # the `mark` metadata of a cluster of `chaos-marks`
CLUSTER_CHECKERS: Final = (
    '{"type":"TCP"}',
    '{"type":"NONE"}',
    '{"type":"HTTP","path":"/health","expectedResponseCode":200}',
)
MARK_IP: Final = "10.0.3.1"
MARK_FIRST_PORT: Final = 10_000
SET_PREFIX: Final = "set/"
CLIENT_TIMEOUT_SECONDS: Final = 5.0
GRPC_SERVICE: Final = "chaos-grpc"  # the gRPC clients' ephemeral instances
GRPC_SET_SERVICE: Final = "chaos-set"  # write-once persistent instances, as over HTTP
GRPC_NAMES: Final = {"namespace": "public", "groupName": "DEFAULT_GROUP"}
GRPC_FIRST_PORT: Final = 20000
ERROR_RESPONSE: Final = "ErrorResponse"
NOT_APPLIED_ERRORS: Final = frozenset({300, 301, 302, 400, 403, 404, 502, 503})
"""ErrorResponse codes answered before anything is proposed: the server is starting or
stopping, the connection is unregistered, no handler, a bad request or token, an
unparsable payload, or no leader (naraft.grpc.errors). 500 (the outcome is unknown, or the
server failed) and any other code count as unknown."""


class Outcome(enum.Enum):
    """An operation's history type (docs/histories.md)."""

    OK = enum.auto()
    FAIL = enum.auto()
    INFO = enum.auto()


OUTCOMES: Final = {
    WriteOutcome.APPLIED: Outcome.OK,
    WriteOutcome.NOT_APPLIED: Outcome.FAIL,
    WriteOutcome.UNKNOWN: Outcome.INFO,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    clients: int = 6
    registers_per_generation: int = 6
    max_ops_per_key: int = 150
    pause_max_seconds: float = 0.12  # each client waits up to this between operations
    instances_per_service: int = 4
    grpc_clients: int = 2
    grpc_max_ephemeral: int = 4  # ephemeral instances one gRPC client holds at most


@dataclass(slots=True)
class WorkloadStats:
    """What the clients did; `acked_set_keys` maps each acknowledged write-once key to
    its value, `acked_instances` the set-service instance keys acknowledged registered."""

    ops: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fail": 0, "info": 0})
    acked_set_keys: dict[str, str] = field(default_factory=dict)
    acked_instances: set[str] = field(default_factory=set)
    register_keys: set[str] = field(default_factory=set)
    config_keys: set[str] = field(default_factory=set)  # cfg/<dataId> registers
    acked_configs: dict[str, str] = field(default_factory=dict)  # write-once dataId -> content
    refusals: list[str] = field(default_factory=list)  # each non-2xx write answer, for humans
    services: set[str] = field(default_factory=set)  # naming services written to (final lists)
    acked_grpc_instances: int = 0  # of `acked_instances`, acknowledged over gRPC
    grpc: dict[str, int] = field(
        default_factory=lambda: {
            "persistent": 0,  # persistent writes over gRPC (in the history)
            "registered": 0,  # ephemeral registrations acknowledged (redo ones included)
            "deregistered": 0,  # ephemeral deregistrations sent
            "redone": 0,  # ephemeral registrations acknowledged again after a reconnect
            "connections": 0,  # connections opened (the first ones included)
            "broken": 0,  # connections found broken
        }
    )

    def count(self, outcome: Outcome) -> None:
        self.ops += 1
        self.outcomes[outcome.name.lower()] += 1


def classify_grpc(answer: Answer, response: str) -> WriteOutcome:
    """A gRPC write's answer, by the rule of `classify_write`: the request's own response
    type without an error is applied; a typed refusal (a bad field, a right, a conflict, a
    rejection on apply) and an `ErrorResponse` in `NOT_APPLIED_ERRORS` are not applied;
    anything else is unknown. A broken call is `classify_failure(sent=True)`."""
    code = answer.body.get("errorCode", 0)
    if answer.type == response:
        return WriteOutcome.APPLIED if answer.ok else WriteOutcome.NOT_APPLIED
    if answer.type == ERROR_RESPONSE and code in NOT_APPLIED_ERRORS:
        return WriteOutcome.NOT_APPLIED
    return WriteOutcome.UNKNOWN


@dataclass(slots=True)
class GrpcSession:
    """One gRPC client: its connection, the ephemeral instances (ports of `ip` in
    `GRPC_SERVICE`) it wants registered, and those not yet acknowledged on the current
    connection (`redo`: all of them after a reconnect, as the SDKs redo)."""

    process: str
    ip: str
    client: GrpcTestClient | None = None
    wanted: set[int] = field(default_factory=set)
    redo: set[int] = field(default_factory=set)
    next_port: int = GRPC_FIRST_PORT

    @property
    def live(self) -> bool:
        return self.client is not None and not self.client.stream_ended.is_set()

    def instance_keys(self) -> frozenset[str]:
        return frozenset(f"{self.ip}:{port}" for port in self.wanted)


def grpc_instance(ip: str, port: int, *, ephemeral: bool) -> dict[str, Any]:
    """An instance object as a 2.x SDK sends it."""
    return {"ip": ip, "port": port, "clusterName": "DEFAULT", "weight": 1.0, "metadata": {},
            "enabled": True, "healthy": True, "ephemeral": ephemeral}  # fmt: skip


class KeyPool:
    """The current register keys; a key retires after `max_ops` operations."""

    def __init__(self, prefix: str, size: int, max_ops: int) -> None:
        self._prefix = prefix
        self._max_ops = max_ops
        self._generation = 0
        self._ops: dict[str, int] = {}
        self._keys = [self._fresh(i) for i in range(size)]

    def _fresh(self, slot: int) -> str:
        self._generation += 1
        key = f"{self._prefix}{self._generation}-{slot}"
        self._ops[key] = 0
        return key

    def pick(self, rng: random.Random) -> str:
        slot = rng.randrange(len(self._keys))
        key = self._keys[slot]
        self._ops[key] += 1
        if self._ops[key] >= self._max_ops:
            self._keys[slot] = self._fresh(slot)
        return key


class Workload:
    """Runs `config.clients` clients against `cluster` until `stop` is set."""

    def __init__(
        self,
        cluster: ChaosCluster,
        recorder: HistoryRecorder,
        rng: random.Random,
        config: WorkloadConfig | None = None,
    ) -> None:
        self._cluster = cluster
        self._recorder = recorder
        self._rng = rng
        self._config = config if config is not None else WorkloadConfig()
        self.stats = WorkloadStats()
        self._registers = KeyPool(
            "r", self._config.registers_per_generation, self._config.max_ops_per_key
        )
        self._services = KeyPool("svc", 2, self._config.max_ops_per_key)
        self._marks = KeyPool("m", 2, self._config.max_ops_per_key)
        self._marked: set[str] = set()  # mark keys whose instance is registered (acked)
        self._cluster_marks = KeyPool("c", 2, self._config.max_ops_per_key)
        self._cluster_marked: set[str] = set()  # cluster mark keys written or read
        self._seq = 0
        self._last_seen: dict[str, str | None] = {}
        self._settle_rng = random.Random(self._rng.getrandbits(64))
        self.grpc_sessions = [
            GrpcSession(process=f"grpc-{i}", ip=f"10.0.2.{i + 1}")
            for i in range(self._config.grpc_clients)
        ]

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_SECONDS)
        async with asyncio.TaskGroup() as tasks:
            for client in range(self._config.clients):
                rng = random.Random(self._rng.getrandbits(64))
                tasks.create_task(
                    self._client(client, rng, stop, timeout), name=f"chaos-client-{client}"
                )
            for session in self.grpc_sessions:
                rng = random.Random(self._rng.getrandbits(64))
                tasks.create_task(self._grpc_client(session, rng, stop), name=session.process)

    async def _client(
        self,
        process: int,
        rng: random.Random,
        stop: asyncio.Event,
        client_timeout: aiohttp.ClientTimeout,
    ) -> None:
        node = rng.choice(self._cluster.nodes)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            # aiohttp resends a PUT/DELETE once after a reset, then reports the second try:
            # a CAS applied by the first would be recorded as a refusal (a false alarm).
            session._retry_connection = False
            while not stop.is_set():
                outcome = await self._one_op(session, node, process, rng)
                self.stats.count(outcome)
                if outcome is not Outcome.OK:
                    node = rng.choice(self._cluster.nodes)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(rng.uniform(0, self._config.pause_max_seconds)):
                        await stop.wait()

    def _unique(self, process: int) -> str:
        self._seq += 1
        return f"{process}-{self._seq}"

    async def _one_op(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        roll = rng.random()
        if roll < 0.42:
            return await self.read(session, node, process, self._registers.pick(rng))
        if roll < 0.64:
            key = self._registers.pick(rng)
            return await self._write(session, node, process, key, self._unique(process))
        if roll < 0.73:
            key = self._registers.pick(rng)
            return await self._cas(session, node, process, key, self._unique(process))
        if roll < 0.78:
            return await self._delete(session, node, process, self._registers.pick(rng))
        if roll < 0.84:
            key = f"{SET_PREFIX}{self._unique(process)}"
            value = self._unique(process)
            outcome = await self._write(session, node, process, key, value)
            if outcome is Outcome.OK:
                self.stats.acked_set_keys[key] = value
            return outcome
        if roll < 0.91:
            return await self._naming(session, node, process, rng)
        return await self._config_op(session, node, process, rng)

    # ------------------------------------------------------------------ kv

    async def read(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int | str, key: str
    ) -> Outcome:
        """A linearizable read of `key`, recorded."""
        self.stats.register_keys.add(key)
        self._recorder.invoke(process, OpFunction.READ, key)
        try:
            async with session.get(
                f"{node.url}{KV_PATH}/{key}", params={"consistency": "linearizable"}
            ) as answer:
                status, body = answer.status, await answer.read()
        except aiohttp.ClientConnectorError:
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        except (aiohttp.ClientError, TimeoutError):
            return self._done(process, OpFunction.READ, key, Outcome.INFO)
        if status == 200:
            value = body_of(body).get("value")
            self._last_seen[key] = value if isinstance(value, str) else None
            return self._done(process, OpFunction.READ, key, Outcome.OK, value)
        if status == 404 and b"not found" in body:
            self._last_seen[key] = None
            return self._done(process, OpFunction.READ, key, Outcome.OK, None)
        return self._done(process, OpFunction.READ, key, Outcome.FAIL)

    async def _write(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, key: str, value: str
    ) -> Outcome:
        self.stats.register_keys.add(key)
        self._recorder.invoke(process, OpFunction.WRITE, key, value)
        outcome, _ = await self._mutate(
            session, "PUT", f"{node.url}{KV_PATH}/{key}", {"value": value}
        )
        return self._done(process, OpFunction.WRITE, key, outcome)

    async def _cas(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, key: str, value: str
    ) -> Outcome:
        self.stats.register_keys.add(key)
        expected = self._last_seen.get(key)
        self._recorder.invoke(process, OpFunction.CAS, key, [expected, value])
        body = {"value": value, "prev": expected}
        outcome, _ = await self._mutate(session, "PUT", f"{node.url}{KV_PATH}/{key}", body)
        return self._done(process, OpFunction.CAS, key, outcome)

    async def _delete(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, key: str
    ) -> Outcome:
        self.stats.register_keys.add(key)
        self._recorder.invoke(process, OpFunction.DELETE, key)
        outcome, answer = await self._mutate(session, "DELETE", f"{node.url}{KV_PATH}/{key}", None)
        existed = answer.get("deleted") if outcome is Outcome.OK else None
        self._done(
            process,
            OpFunction.DELETE,
            key,
            outcome,
            existed=existed if isinstance(existed, bool) else None,
        )
        return outcome

    # ------------------------------------------------------------------ naming

    async def _naming(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        service = self._services.pick(rng)
        self.stats.services.add(service)
        port = 9000 + rng.randrange(self._config.instances_per_service)
        key = f"{NAMING_PREFIX}{service}/10.0.0.1:{port}"
        params = {
            "serviceName": service,
            "ip": "10.0.0.1",
            "port": str(port),
            "ephemeral": "false",
        }
        roll = rng.random()
        if roll < 0.35:
            self._recorder.invoke(process, OpFunction.WRITE, key, PRESENT)
            outcome, _ = await self._mutate(
                session, "POST", f"{node.url}{INSTANCE_PATH}", None, params=params
            )
            return self._done(process, OpFunction.WRITE, key, outcome)
        if roll < 0.52:
            self._recorder.invoke(process, OpFunction.DELETE, key)
            outcome, _ = await self._mutate(
                session, "DELETE", f"{node.url}{INSTANCE_PATH}", None, params=params
            )
            return self._done(process, OpFunction.DELETE, key, outcome)
        if roll < 0.65:
            # the write-once service: registered, never deregistered (the acked-set check)
            set_key = f"{NAMING_PREFIX}set/10.0.1.{rng.randrange(1, 250)}:{port}"
            ip = set_key.rsplit("/", 1)[1].split(":")[0]
            set_params = {**params, "serviceName": "chaos-set", "ip": ip}
            self._recorder.invoke(process, OpFunction.WRITE, set_key, PRESENT)
            outcome, _ = await self._mutate(
                session, "POST", f"{node.url}{INSTANCE_PATH}", None, params=set_params
            )
            if outcome is Outcome.OK:
                self.stats.acked_instances.add(set_key)
            return self._done(process, OpFunction.WRITE, set_key, outcome)
        if roll < 0.78:
            return await self._mark_op(session, node, process, rng)
        if roll < 0.85 and self._marked:
            return await self._cluster_mark_op(session, node, process, rng)
        return await self.list_service(session, node, process, service)

    async def _mark_op(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        """On a `chaos-marks` instance: register it (once, unrecorded), else set its mark
        through the batch metadata API or read it back; both recorded on its mark register."""
        name = self._marks.pick(rng)
        key = f"{MARK_PREFIX}{name}"
        port = _mark_port(name)
        if name not in self._marked:
            params = {"serviceName": MARK_SERVICE, "ip": MARK_IP, "port": str(port)}
            outcome, _ = await self._mutate(
                session, "POST", f"{node.url}{INSTANCE_PATH}", None,
                params={**params, "ephemeral": "false"},
            )  # fmt: skip
            if outcome is Outcome.OK:
                self._marked.add(name)
            return outcome
        if rng.random() < 0.5:
            return await self.read_mark(session, node, process, name)
        mark = self._unique(process)
        listed = [{"ip": MARK_IP, "port": port, "clusterName": "DEFAULT", "ephemeral": False}]
        batch = {
            "serviceName": MARK_SERVICE,
            "instances": orjson.dumps(listed).decode(),
            "metadata": orjson.dumps({"mark": mark}).decode(),
        }
        self._recorder.invoke(process, OpFunction.WRITE, key, mark)
        outcome, _ = await self._mutate(
            session, "PUT", f"{node.url}{METADATA_BATCH_PATH}", None, params=batch
        )
        return self._done(process, OpFunction.WRITE, key, outcome)

    async def read_mark(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int | str, name: str
    ) -> Outcome:
        """A linearizable read of the mark of `chaos-marks` instance `name` (None: none set),
        recorded."""
        key = f"{MARK_PREFIX}{name}"
        params = {
            "serviceName": MARK_SERVICE,
            "ip": MARK_IP,
            "port": str(_mark_port(name)),
            "linearizable": "true",
        }
        answer = await self._read_json(session, f"{node.url}{INSTANCE_PATH}", params, process, key)
        if isinstance(answer, Outcome):
            return answer
        metadata = answer.get("metadata")
        if not isinstance(metadata, dict):
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        mark = metadata.get("mark")
        return self._done(
            process, OpFunction.READ, key, Outcome.OK, mark if isinstance(mark, str) else None
        )

    async def _cluster_mark_op(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        """A cluster of `chaos-marks` (which exists once a mark instance is registered): set
        its `mark` metadata through Nacos's cluster update, or read it back; a register."""
        name = self._cluster_marks.pick(rng)
        self._cluster_marked.add(name)
        if rng.random() < 0.5:
            return await self.read_cluster_mark(session, node, process, name)
        mark = self._unique(process)
        params = {
            "serviceName": MARK_SERVICE,
            "clusterName": name,
            "checkPort": str(rng.randrange(65_536)),
            "useInstancePort4Check": rng.choice(("true", "false")),
            "healthChecker": rng.choice(CLUSTER_CHECKERS),
            "metadata": orjson.dumps({"mark": mark}).decode(),
        }
        key = f"{CLUSTER_MARK_PREFIX}{name}"
        self._recorder.invoke(process, OpFunction.WRITE, key, mark)
        outcome, _ = await self._mutate(
            session, "PUT", f"{node.url}{CLUSTER_PATH}", None, params=params
        )
        return self._done(process, OpFunction.WRITE, key, outcome)

    async def read_cluster_mark(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int | str, name: str
    ) -> Outcome:
        """A linearizable read of the mark of cluster `name` of `chaos-marks` (None: no
        such cluster), recorded."""
        key = f"{CLUSTER_MARK_PREFIX}{name}"
        params = {"serviceName": MARK_SERVICE, "linearizable": "true"}
        answer = await self._read_json(session, f"{node.url}{SERVICE_PATH}", params, process, key)
        if isinstance(answer, Outcome):
            return answer
        clusters = answer.get("clusters")
        if not isinstance(clusters, list):
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        mark = None
        for cluster in clusters:
            if isinstance(cluster, dict) and cluster.get("name") == name:
                metadata = cluster.get("metadata")
                found = metadata.get("mark") if isinstance(metadata, dict) else None
                mark = found if isinstance(found, str) else None
        return self._done(process, OpFunction.READ, key, Outcome.OK, mark)

    async def _read_json(
        self,
        session: aiohttp.ClientSession,
        url: str,
        params: Mapping[str, str],
        process: int | str,
        key: str,
    ) -> dict[str, Any] | Outcome:
        """Record a read of `key` begun and GET `url`: the answer's JSON object when it is
        200, else the read recorded as failed (refused, or not 200) or unknown (no answer)."""
        self._recorder.invoke(process, OpFunction.READ, key)
        try:
            async with session.get(url, params=params) as answer:
                status, body = answer.status, await answer.read()
        except aiohttp.ClientConnectorError:
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        except (aiohttp.ClientError, TimeoutError):
            return self._done(process, OpFunction.READ, key, Outcome.INFO)
        if status != 200:
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        return body_of(body)

    @property
    def cluster_marked(self) -> frozenset[str]:
        """The cluster mark keys written or read (read at the end too)."""
        return frozenset(self._cluster_marked)

    @property
    def marked(self) -> frozenset[str]:
        """The mark keys whose `chaos-marks` instance is registered (read at the end too)."""
        return frozenset(self._marked)

    def instance_keys(self, service: str) -> list[str]:
        return [
            f"{NAMING_PREFIX}{service}/10.0.0.1:{9000 + i}"
            for i in range(self._config.instances_per_service)
        ]

    async def list_service(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int | str, service: str
    ) -> Outcome:
        """A linearizable list of `service`, recorded as a read of each instance key."""
        self._recorder.invoke(process, OpFunction.READ_MANY, None)
        try:
            async with session.get(
                f"{node.url}{INSTANCE_LIST_PATH}",
                params={"serviceName": service, "linearizable": "true"},
            ) as answer:
                status, body = answer.status, await answer.read()
        except aiohttp.ClientConnectorError:
            return self._done(process, OpFunction.READ_MANY, None, Outcome.FAIL)
        except (aiohttp.ClientError, TimeoutError):
            return self._done(process, OpFunction.READ_MANY, None, Outcome.INFO)
        if status != 200:
            return self._done(process, OpFunction.READ_MANY, None, Outcome.FAIL)
        hosts = body_of(body).get("hosts", [])
        present = {
            f"{NAMING_PREFIX}{service}/{h.get('ip')}:{h.get('port')}"
            for h in hosts
            if isinstance(h, dict)
        }
        seen: dict[str, JsonValue] = {
            key: (PRESENT if key in present else None) for key in self.instance_keys(service)
        }
        return self._done(process, OpFunction.READ_MANY, None, Outcome.OK, seen)

    # ------------------------------------------------------------------ gRPC

    async def _grpc_client(
        self, session: GrpcSession, rng: random.Random, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            if not session.live:
                await self.reconnect(session, rng)
            if session.live:
                await self._grpc_op(session, rng)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.uniform(0, self._config.pause_max_seconds)):
                    await stop.wait()

    async def reconnect(self, session: GrpcSession, rng: random.Random | None = None) -> bool:
        """A new connection to a random node in place of the broken one (or the first);
        every wanted instance is to be registered again on it. Without `rng` (after the
        run, when the checks settle the clients) the node is drawn from the workload's own."""
        if session.client is not None:
            self.stats.grpc["broken"] += 1
            await self._close_client(session)
        node = (rng or self._settle_rng).choice(self._cluster.nodes)
        client = GrpcTestClient(node.grpc_address, timeout_seconds=CLIENT_TIMEOUT_SECONDS)
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT_SECONDS * 2):
                await client.connect()
        except (grpc.RpcError, ConnectionError, TimeoutError, OSError):
            with contextlib.suppress(grpc.RpcError, OSError):
                await client.close()
            return False
        self.stats.grpc["connections"] += 1
        session.client = client
        session.redo = set(session.wanted)
        return True

    async def _close_client(self, session: GrpcSession) -> None:
        client, session.client = session.client, None
        if client is not None:
            with contextlib.suppress(grpc.RpcError, OSError):
                await client.close()

    async def close(self) -> None:
        """Close every gRPC client's connection (after the checks)."""
        for session in self.grpc_sessions:
            await self._close_client(session)

    async def _grpc_call(
        self, session: GrpcSession, kind: str, body: Mapping[str, Any]
    ) -> tuple[Outcome, Answer | None]:
        assert session.client is not None
        started = time.monotonic_ns()
        what = f"{kind} {body.get('type')} {body.get('serviceName')} on {session.client.address}"
        try:
            answer = await session.client.request(kind, body)
        except (grpc.RpcError, TimeoutError, OSError) as error:
            self._refused(started, "gRPC", what, f"{type(error).__name__} {error}"[:300])
            return OUTCOMES[classify_failure(sent=True)], None
        outcome = OUTCOMES[classify_grpc(answer, "InstanceResponse")]
        if outcome is not Outcome.OK:
            self._refused(started, "gRPC", what, f"{answer.type} {str(answer.body)[:200]}")
        if answer.type == ERROR_RESPONSE and answer.body.get("errorCode") == 301:
            await self._close_client(session)  # unregistered: the SDKs reconnect
            self.stats.grpc["broken"] += 1
        return outcome, answer

    async def _ephemeral(self, session: GrpcSession, port: int, register: bool) -> Outcome:
        body = {
            **GRPC_NAMES,
            "serviceName": GRPC_SERVICE,
            "type": "registerInstance" if register else "deregisterInstance",
            "instance": grpc_instance(session.ip, port, ephemeral=True),
        }
        outcome, _ = await self._grpc_call(session, "InstanceRequest", body)
        return outcome

    async def redo(self, session: GrpcSession) -> bool:
        """Register again what the current connection has not acknowledged; True when
        nothing is left to redo."""
        for port in sorted(session.redo):
            if not session.live:
                return False
            outcome = await self._ephemeral(session, port, register=True)
            if outcome is not Outcome.OK:
                return False
            session.redo.discard(port)
            self.stats.grpc["registered"] += 1
            self.stats.grpc["redone"] += 1
        return True

    async def _grpc_op(self, session: GrpcSession, rng: random.Random) -> None:
        if session.redo:
            await self.redo(session)
            return
        roll = rng.random()
        if roll < 0.3 and len(session.wanted) < self._config.grpc_max_ephemeral:
            # a fresh port each time: an instance is never registered again after its
            # deregistration, whose outcome may be unknown (it could land after)
            port, session.next_port = session.next_port, session.next_port + 1
            session.wanted.add(port)
            outcome = await self._ephemeral(session, port, register=True)
            if outcome is Outcome.OK:
                self.stats.grpc["registered"] += 1
            else:
                session.redo.add(port)  # the SDKs keep trying too
        elif roll < 0.45 and session.wanted:
            port = rng.choice(sorted(session.wanted))
            session.wanted.discard(port)
            session.redo.discard(port)
            self.stats.grpc["deregistered"] += 1
            await self._ephemeral(session, port, register=False)
        else:
            outcome = await self._persistent(session, rng)
            self.stats.count(outcome)

    async def _persistent(self, session: GrpcSession, rng: random.Random) -> Outcome:
        """A persistent register or deregister over gRPC of an instance key the HTTP
        clients write too, or a write-once registration in `chaos-set`; recorded."""
        self.stats.grpc["persistent"] += 1
        service = self._services.pick(rng)
        port = 9000 + rng.randrange(self._config.instances_per_service)
        ip = "10.0.0.1"
        roll = rng.random()
        if roll < 0.25:
            service, ip = GRPC_SET_SERVICE, f"10.0.1.{rng.randrange(1, 250)}"
            key = f"{NAMING_PREFIX}set/{ip}:{port}"
        else:
            self.stats.services.add(service)
            key = f"{NAMING_PREFIX}{service}/{ip}:{port}"
        register = roll < 0.7
        function = OpFunction.WRITE if register else OpFunction.DELETE
        body = {
            **GRPC_NAMES,
            "serviceName": service,
            "type": "registerInstance" if register else "deregisterInstance",
            "instance": grpc_instance(ip, port, ephemeral=False),
        }
        self._recorder.invoke(session.process, function, key, PRESENT if register else None)
        outcome, _ = await self._grpc_call(session, "PersistentInstanceRequest", body)
        if outcome is Outcome.OK and service == GRPC_SET_SERVICE:
            if key not in self.stats.acked_instances:
                self.stats.acked_grpc_instances += 1
            self.stats.acked_instances.add(key)
        return self._done(session.process, function, key, outcome)

    # ------------------------------------------------------------------ configs

    async def _config_op(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        roll = rng.random()
        if roll < 0.1:
            data_id = f"{CONFIG_SET_PREFIX}{self._unique(process)}"
            value = self._unique(process)
            outcome = await self._publish(session, node, process, data_id, value)
            if outcome is Outcome.OK:
                self.stats.acked_configs[data_id] = value
            return outcome
        if roll < 0.16 and self.stats.acked_configs:
            return await self._clone_op(session, node, process, rng)
        data_id = pick_config_key(rng)
        if roll < 0.45:
            return await self.read_config(session, node, process, data_id)
        if roll < 0.75:
            return await self._publish(session, node, process, data_id, self._unique(process))
        expected = self._last_seen.get(CONFIG_KEY_PREFIX + data_id)
        if roll < 0.9 and expected is not None:
            return await self._publish(
                session, node, process, data_id, self._unique(process), expected=expected
            )
        key = CONFIG_KEY_PREFIX + data_id
        self.stats.config_keys.add(key)
        self._recorder.invoke(process, OpFunction.DELETE, key)
        params = {"dataId": data_id, "group": GROUP}
        outcome, _ = await self._mutate(
            session, "DELETE", f"{node.url}{CONFIGS_PATH}", None, params=params
        )
        return self._done(process, OpFunction.DELETE, key, outcome)

    async def _publish(
        self,
        session: aiohttp.ClientSession,
        node: ChaosNode,
        process: int,
        data_id: str,
        value: str,
        *,
        expected: str | None = None,
    ) -> Outcome:
        """A publish (a write), or with `expected` a casMd5 publish (a compare-and-set)."""
        key = CONFIG_KEY_PREFIX + data_id
        self.stats.config_keys.add(key)
        params = {"dataId": data_id, "group": GROUP, "content": value}
        if expected is None:
            self._recorder.invoke(process, OpFunction.WRITE, key, value)
            function = OpFunction.WRITE
        else:
            self._recorder.invoke(process, OpFunction.CAS, key, [expected, value])
            params["casMd5"] = md5_of(expected)
            function = OpFunction.CAS
        outcome, _ = await self._mutate(
            session, "POST", f"{node.url}{CONFIGS_PATH}", None, params=params
        )
        return self._done(process, function, key, outcome)

    async def _clone_op(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int, rng: random.Random
    ) -> Outcome:
        """Nacos's config clone: copy a write-once config (its content never changes, so
        the copy's is known) by id to a fresh write-once dataId, recorded as a write of that
        content to the copy's key. An acknowledged copy must be on every node after healing,
        and every node's final read must see it (or, for an unknown outcome, nothing)."""
        source, content = rng.choice(list(self.stats.acked_configs.items()))
        params = {"dataId": source, "group": GROUP, "show": "all"}
        try:  # the source's id, unrecorded (its content is known)
            async with session.get(f"{node.url}{CONFIGS_PATH}", params=params) as detail:
                status, raw = detail.status, await detail.read()
        except (aiohttp.ClientError, TimeoutError):
            return Outcome.FAIL
        config_id = body_of(raw).get("id") if status == 200 else None
        if not isinstance(config_id, str):
            return Outcome.FAIL
        copy = f"{CONFIG_SET_PREFIX}clone-{self._unique(process)}"
        key = CONFIG_KEY_PREFIX + copy
        self.stats.config_keys.add(key)
        self._recorder.invoke(process, OpFunction.WRITE, key, content)
        outcome, answer = await self._mutate(
            session,
            "POST",
            f"{node.url}{CONFIGS_PATH}",
            [{"cfgId": config_id, "dataId": copy}],
            params={"clone": "true", "policy": "ABORT"},
        )
        if outcome is Outcome.OK and answer.get("code") != 200:
            outcome = Outcome.FAIL  # Nacos's RestResult: refused, nothing written
        if outcome is Outcome.OK:
            self.stats.acked_configs[copy] = content
        return self._done(process, OpFunction.WRITE, key, outcome)

    async def read_config(
        self, session: aiohttp.ClientSession, node: ChaosNode, process: int | str, data_id: str
    ) -> Outcome:
        """A (linearizable) config get, recorded as a read of `cfg/<dataId>`."""
        key = CONFIG_KEY_PREFIX + data_id
        self.stats.config_keys.add(key)
        self._recorder.invoke(process, OpFunction.READ, key)
        try:
            status, content = await get_config(session, node, data_id)
        except aiohttp.ClientConnectorError:
            return self._done(process, OpFunction.READ, key, Outcome.FAIL)
        except (aiohttp.ClientError, TimeoutError):
            return self._done(process, OpFunction.READ, key, Outcome.INFO)
        if status in (200, 404):
            self._last_seen[key] = content
            return self._done(process, OpFunction.READ, key, Outcome.OK, content)
        return self._done(process, OpFunction.READ, key, Outcome.FAIL)

    # ------------------------------------------------------------------ plumbing

    async def _mutate(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        body: Mapping[str, object] | list[object] | None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> tuple[Outcome, dict[str, Any]]:
        data = orjson.dumps(body) if body is not None else None
        started = time.monotonic_ns()
        try:
            async with session.request(method, url, data=data, params=params) as answer:
                status, raw = answer.status, await answer.read()
        except aiohttp.ClientConnectorError as error:
            self._refused(started, method, url, f"{type(error).__name__} {error}")
            return OUTCOMES[classify_failure(sent=False)], {}
        except (aiohttp.ClientError, TimeoutError) as error:
            self._refused(started, method, url, f"{type(error).__name__} {error}")
            return OUTCOMES[classify_failure(sent=True)], {}
        parsed = body_of(raw)
        outcome = OUTCOMES[classify_write(status, parsed)]
        if outcome is not Outcome.OK:
            self._refused(started, method, url, f"{status} {raw[:200]!r}")
        return outcome, parsed

    def _refused(self, started: int, method: str, url: str, what: str) -> None:
        self.stats.refusals.append(f"{started} {method} {url}: {what}")

    def _done(
        self,
        process: int | str,
        function: OpFunction,
        key: str | None,
        outcome: Outcome,
        value: JsonValue = None,
        *,
        existed: bool | None = None,
    ) -> Outcome:
        record_type = {
            Outcome.OK: RecordType.OK,
            Outcome.FAIL: RecordType.FAIL,
            Outcome.INFO: RecordType.INFO,
        }[outcome]
        self._recorder.record(process, record_type, function, key, value, existed=existed)
        return outcome


def _mark_port(name: str) -> int:
    """The port of the `chaos-marks` instance behind mark key `name` (`m12-1`: its
    generation, 12, after the first port): each generation a fresh instance."""
    return MARK_FIRST_PORT + int(name[1:].partition("-")[0])
