"""Post-heal checks of one schedule (docs/fault-campaigns.md).

- `converge`: one agreed leader, every node's commit and applied index equal, within a bound.
- `final_reads`: a linearizable read of every register from every node, into the history.
- `compare_state`: every node holds the same value and version for every key it was asked
  about, and the same commit/applied index and datum count (identical committed state).
- `lost_writes`: every acknowledged write-once key and set instance, on every node.
- `grpc_ephemeral`: every gRPC client connected again (if its connection broke) and its
  ephemeral instances registered on it, then listed on every node within a bound.
- `election_safety`: at most one leader per term over every node's election audit log.
- `tracebacks`: no node log holds a Python traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from naraft.chaos.cluster import AUDIT_FILE, ChaosCluster, ChaosNode
from naraft.chaos.configs import (
    CONFIG_KEY_PREFIX,
    WATCHED,
    ListenerSet,
    get_config,
    local_md5s,
    md5_of,
)
from naraft.chaos.workload import GRPC_SERVICE, NAMING_PREFIX, Workload
from naraft.client import INSTANCE_LIST_PATH, KV_PATH, PUBLISHERS_PATH

POLL_SECONDS: Final = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class Convergence:
    seconds: float | None  # None: not within the bound
    detail: str


async def converge(cluster: ChaosCluster, timeout_seconds: float, since: float) -> Convergence:
    """Wait until every node agrees on one leader and term and has applied the same
    commit index; report how long it took from `since` (loop time: the heal)."""
    loop = asyncio.get_running_loop()
    started = since
    last = "no state yet"
    while loop.time() - started < timeout_seconds:
        states = [await cluster.state(node) for node in cluster.nodes]
        last = _disagreement(states)
        if not last:
            return Convergence(seconds=loop.time() - started, detail="converged")
        await asyncio.sleep(POLL_SECONDS)
    return Convergence(seconds=None, detail=f"not converged in {timeout_seconds:.0f} s: {last}")


def _disagreement(states: list[dict[str, Any] | None]) -> str:
    if any(state is None for state in states):
        return "a node does not answer"
    views = [s for s in states if s is not None]
    leaders = {(v["leader"], v["term"]) for v in views}
    if len(leaders) != 1 or next(iter(leaders))[0] is None:
        return f"leaders/terms disagree: {sorted(map(str, leaders))}"
    if [v["role"] for v in views].count("leader") != 1:
        return "no single node says it leads"
    marks = {(v["commitIndex"], v["appliedIndex"]) for v in views}
    if len(marks) != 1 or any(c != a for c, a in marks):
        return f"commit/applied differ: {sorted(marks)}"
    return ""


async def local_value(
    session: aiohttp.ClientSession, node: ChaosNode, key: str
) -> tuple[int, str | None, int | None]:
    """(status, value, version) of a local read of kv `key` on `node`."""
    async with session.get(f"{node.url}{KV_PATH}/{key}", params={"consistency": "local"}) as answer:
        data = await answer.json(content_type=None)
        if answer.status == 200:
            return 200, str(data["value"]), int(data["version"])
        return answer.status, None, None


async def listed_instances(
    session: aiohttp.ClientSession, node: ChaosNode, service: str
) -> frozenset[str] | None:
    """The instance keys (as the workload names them) a local list on `node` shows."""
    async with session.get(
        f"{node.url}{INSTANCE_LIST_PATH}", params={"serviceName": service}
    ) as answer:
        if answer.status != 200:
            return None
        hosts = (await answer.json(content_type=None)).get("hosts", [])
    return frozenset(f"{NAMING_PREFIX}set/{h['ip']}:{h['port']}" for h in hosts)


async def final_reads(cluster: ChaosCluster, workload: Workload) -> int:
    """A recorded linearizable read of every register key, naming service, mark and config
    from every node; returns how many were not `ok`."""
    failed = 0
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i, node in enumerate(cluster.nodes):
            for key in sorted(workload.stats.register_keys):
                outcome = await workload.read(session, node, f"final-{i}", key)
                failed += outcome.name != "OK"
            for service in sorted(workload.stats.services):
                outcome = await workload.list_service(session, node, f"final-{i}", service)
                failed += outcome.name != "OK"
            for name in sorted(workload.marked):
                outcome = await workload.read_mark(session, node, f"final-{i}", name)
                failed += outcome.name != "OK"
            for name in sorted(workload.cluster_marked):
                outcome = await workload.read_cluster_mark(session, node, f"final-{i}", name)
                failed += outcome.name != "OK"
            for key in sorted(workload.stats.config_keys):
                data_id = key.removeprefix(CONFIG_KEY_PREFIX)
                outcome = await workload.read_config(session, node, f"final-{i}", data_id)
                failed += outcome.name != "OK"
    return failed


@dataclass(frozen=True, slots=True, kw_only=True)
class EphemeralCheck:
    clients: int
    instances: int  # the ephemeral instances the clients hold, each looked for on every node
    missing: tuple[str, ...]  # clients that could not settle, instances some node lacks
    seconds: float | None  # until every node listed them all (None: not within the bound)


async def grpc_ephemeral(
    cluster: ChaosCluster, workload: Workload, *, wait_seconds: float = 20.0
) -> EphemeralCheck:
    """Each gRPC client first does what an SDK does after a heal: connects again if its
    connection broke and registers again what its connection has not acknowledged (within
    `wait_seconds`). Then every instance of every live connection must be listed by every
    node (a local v1 list), and every node must name that connection as the instance's
    publisher (Nacos 2.x's client view: the owner is replicated), within `wait_seconds`
    more."""
    loop = asyncio.get_running_loop()
    missing: list[str] = []
    deadline = loop.time() + wait_seconds
    for session in workload.grpc_sessions:
        while loop.time() < deadline:
            connected = session.live or await workload.reconnect(session)
            if connected and await workload.redo(session):
                break
            await asyncio.sleep(POLL_SECONDS)
        if not session.live or session.redo:
            missing.append(
                f"{session.process} could not connect and register again in {wait_seconds:.0f} s"
            )
    live = [s for s in workload.grpc_sessions if s.live]
    wanted = frozenset().union(*(s.instance_keys() for s in live))
    owners = {
        key: s.client.connection_id
        for s in live
        if s.client is not None
        for key in s.instance_keys()
    }
    started = loop.time()
    lacking: list[str] = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            lacking = []
            for node in cluster.nodes:
                listed = await listed_hosts(http, node, GRPC_SERVICE)
                if listed is None:
                    lacking.append(f"{GRPC_SERVICE} not listed on {node.id}")
                    continue
                lacking += [f"{key} missing on {node.id}" for key in sorted(wanted - listed)]
                published = await publishers(http, node, GRPC_SERVICE)
                if published is None:
                    lacking.append(f"no publisher list of {GRPC_SERVICE} on {node.id}")
                    continue
                lacking += [
                    f"{key} published by {published.get(key)!r} on {node.id}, not {owner!r}"
                    for key, owner in sorted(owners.items())
                    if key in listed and published.get(key) != owner  # (missing: said above)
                ]
            if not lacking or loop.time() - started > wait_seconds:
                break
            await asyncio.sleep(POLL_SECONDS)
    return EphemeralCheck(
        clients=len(live),
        instances=len(wanted),
        missing=tuple(missing + lacking),
        seconds=None if lacking else loop.time() - started,
    )


async def listed_hosts(
    session: aiohttp.ClientSession, node: ChaosNode, service: str
) -> frozenset[str] | None:
    """`ip:port` of every instance (healthy or not) a local v1 list on `node` shows."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(
            f"{node.url}{INSTANCE_LIST_PATH}",
            params={"serviceName": service, "healthyOnly": "false"},
        ) as answer:
            if answer.status == 200:
                hosts = (await answer.json(content_type=None)).get("hosts", [])
                return frozenset(f"{h['ip']}:{h['port']}" for h in hosts)
    return None


async def publishers(
    session: aiohttp.ClientSession, node: ChaosNode, service: str
) -> dict[str, str] | None:
    """`ip:port` -> the client that registered it, as `node`'s publisher list shows."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(
            f"{node.url}{PUBLISHERS_PATH}", params={"serviceName": service}
        ) as answer:
            if answer.status == 200:
                rows = (await answer.json(content_type=None)).get("data") or []
                return {f"{r['ip']}:{r['port']}": str(r["clientId"]) for r in rows}
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigCheck:
    lost_configs: tuple[str, ...]  # acked write-once configs missing on some node
    acked: int
    missed_notifications: tuple[str, ...]  # listeners that never heard of a final value
    notifications: int


async def check_configs(
    cluster: ChaosCluster,
    acked_configs: Mapping[str, str],
    listeners: ListenerSet,
    *,
    wait_seconds: float = 30.0,
) -> ConfigCheck:
    """Every acked write-once config on every node (each node's own state), and every
    listener holding the final MD5 of each watched config within `wait_seconds`."""
    lost: list[str] = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        final: dict[str, str] = {}
        for data_id in WATCHED:
            for node in cluster.nodes:  # a linearizable read through any node that answers
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    status, content = await get_config(session, node, data_id)
                    if status in (200, 404):
                        final[data_id] = md5_of(content)
                        break
            else:
                lost.append(f"no node answered a read of {data_id}")
        expected = {data_id: md5_of(value) for data_id, value in acked_configs.items()}
        names = sorted(expected)
        for node in cluster.nodes:
            for start in range(0, len(names), 500):
                chunk = {name: expected[name] for name in names[start : start + 500]}
                differing = await local_md5s(session, node, chunk)
                if differing is None:
                    lost.append(f"{node.id} did not answer the acked-config probe")
                    break
                lost.extend(f"{name} missing on {node.id}" for name in differing)
    missed = await listeners.wait_until(final, wait_seconds)
    return ConfigCheck(
        lost_configs=tuple(lost),
        acked=len(acked_configs),
        missed_notifications=tuple(missed),
        notifications=sum(listener.notifications for listener in listeners.listeners),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateComparison:
    differences: tuple[str, ...]
    lost_writes: tuple[str, ...]
    keys_compared: int


async def compare_state(
    cluster: ChaosCluster,
    keys: Iterable[str],
    acked_set_keys: Mapping[str, str],
    acked_instances: Iterable[str],
) -> StateComparison:
    """Local reads of `keys` on every node must agree; every acked write must be there."""
    differences: list[str] = []
    lost: list[str] = []
    all_keys = sorted(set(keys) | set(acked_set_keys))
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        states = [await cluster.state(node) for node in cluster.nodes]
        summary = {
            (s["commitIndex"], s["appliedIndex"], s.get("datums"), s.get("instances"))
            for s in states
            if s is not None
        }
        if len(summary) != 1 or None in states:
            differences.append(f"node summaries differ: {sorted(map(str, summary))}")
        for key in all_keys:
            seen = [await local_value(session, node, key) for node in cluster.nodes]
            if len(set(seen)) != 1:
                differences.append(f"{key}: {seen}")
            expected = acked_set_keys.get(key)
            if expected is not None:
                for node, (_, value, _) in zip(cluster.nodes, seen, strict=True):
                    if value != expected:
                        lost.append(f"{key}={expected!r} missing on {node.id} (has {value!r})")
        wanted = frozenset(acked_instances)
        for node in cluster.nodes:
            listed = await listed_instances(session, node, "chaos-set") if wanted else frozenset()
            if listed is None:
                lost.append(f"chaos-set not listed on {node.id}")
                continue
            lost.extend(f"{key} missing on {node.id}" for key in sorted(wanted - listed))
    return StateComparison(
        differences=tuple(differences), lost_writes=tuple(lost), keys_compared=len(all_keys)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectionAudit:
    terms: int
    records: int
    violations: tuple[str, ...]


def election_safety(cluster: ChaosCluster) -> ElectionAudit:
    """At most one leader per term, over every node's audit log (a leader's own record and
    the leader each follower accepted)."""
    leaders: dict[int, set[str]] = {}
    records = 0
    for node in cluster.every_node:
        path = node.data_dir / AUDIT_FILE
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed node
            records += 1
            term = int(record["term"])
            if record["role"] == "leader":
                leaders.setdefault(term, set()).add(str(record["node"]))
            elif record.get("leader"):
                leaders.setdefault(term, set()).add(str(record["leader"]))
    violations = tuple(
        f"term {term}: leaders {sorted(ids)}"
        for term, ids in sorted(leaders.items())
        if len(ids) > 1
    )
    return ElectionAudit(terms=len(leaders), records=records, violations=violations)


def tracebacks(cluster: ChaosCluster) -> dict[str, int]:
    """How many tracebacks each node's log holds (nodes with none are left out)."""
    counts = {node.id: len(node.tracebacks()) for node in cluster.every_node}
    return {node_id: count for node_id, count in counts.items() if count}
