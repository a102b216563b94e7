"""One campaign: K seeded schedules, each on a fresh cluster, each checked after healing.

`run_schedule` is the whole life of one schedule: start the cluster behind its proxies,
wait for a leader, run the clients and the nemesis for the schedule's seconds, stop the
clients, heal, wait for convergence, read every key from every node, compare, check the
history and the election audit logs, stop the cluster. Everything a human needs to look
at stays in the schedule's directory: `history.jsonl`, `result.json`, each node's log and
election audit log (database files are deleted when the schedule passed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from naraft.chaos import checks, inputs
from naraft.chaos.cluster import ChaosCluster, ChaosNode
from naraft.chaos.configs import ListenerSet
from naraft.chaos.inputs import DEFAULT_KINDS, InputNemesis, ProbeKind
from naraft.chaos.schedules import AIMS, CI_KINDS, NEEDS_TMPFS, STEPS, Nemesis, ScheduleKind
from naraft.chaos.workload import Workload, WorkloadConfig
from naraft.checker import HistoryRecorder, Verdict, check_history

logger = logging.getLogger(__name__)

FAILPOINTS: Final = "storage.powerloss=1"
"""What every node runs with: the power-loss bookkeeping, and the transport debug route."""
LEADER_TIMEOUT_SECONDS: Final = 30.0
RESTART_TIMEOUT_SECONDS: Final = 30.0
NEMESIS_GRACE_SECONDS: Final = 35.0  # past the schedule: replace-node may finish its change (30 s)
TMPFS_SIZE: Final = "256m"  # each node's data directory, for the kinds in NEEDS_TMPFS


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignConfig:
    history_dir: Path
    nodes: int = 3
    schedules: int = 6
    seconds: float = 25.0
    seed: int = 0
    kinds: tuple[ScheduleKind, ...] = CI_KINDS
    only: int | None = None  # run just this schedule index (a replay)
    clients: int = 6
    grpc_clients: int = 2
    failpoints: str = FAILPOINTS
    node_args: tuple[str, ...] = ()
    input_nemesis: bool = True  # extreme and malformed requests alongside the faults
    nemesis_kinds: tuple[ProbeKind, ...] = DEFAULT_KINDS

    @property
    def convergence_seconds(self) -> float:
        return 10.0 if self.nodes <= 3 else 15.0

    def kind_of(self, index: int) -> ScheduleKind:
        return self.kinds[index % len(self.kinds)]

    def seed_of(self, index: int) -> int:
        return (self.seed * 1_000_003 + index) % (1 << 63)

    def replay_command(self, index: int) -> str:
        kinds = ",".join(self.kinds)
        nemesis = (
            f"--input-nemesis --nemesis-kinds {inputs.kinds_text(self.nemesis_kinds)}"
            if self.input_nemesis
            else "--no-input-nemesis"
        )
        return (
            f"naraft chaos --nodes {self.nodes} --schedules {self.schedules} "
            f"--seconds {self.seconds:g} --seed {self.seed} --kinds {kinds} --only {index} "
            f"--clients {self.clients} --grpc-clients {self.grpc_clients} "
            f"--failpoints '{self.failpoints}' {nemesis} "
            f"--history-dir {self.history_dir}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOutcome:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleResult:
    index: int
    kind: ScheduleKind
    seed: int
    run_dir: Path
    ops: int
    ok: int
    fail: int
    info: int
    nemesis_actions: int
    acked_writes_checked: int
    lost_writes: int
    violations: int  # keys not linearizable + extra leaders + state differences
    convergence_seconds: float | None
    checks: tuple[CheckOutcome, ...]
    replay: str
    input_nemesis: dict[str, object] | None = None  # what it sent, by kind, and the answers
    grpc: dict[str, int] | None = None  # what the gRPC clients did, and what was checked

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed_checks(self) -> tuple[CheckOutcome, ...]:
        return tuple(check for check in self.checks if not check.passed)


@dataclass(frozen=True, slots=True)
class CampaignResult:
    config: CampaignConfig
    results: tuple[ScheduleResult, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)


def run_campaign(
    config: CampaignConfig, on_result: Callable[[ScheduleResult], None] | None = None
) -> CampaignResult:
    """Run the campaign's schedules one after the other (each on its own event loop)."""
    indexes = [config.only] if config.only is not None else list(range(config.schedules))
    results = []
    for index in indexes:
        result = asyncio.run(run_schedule(config, index))
        results.append(result)
        if on_result is not None:
            on_result(result)
    return CampaignResult(config, tuple(results))


async def run_schedule(config: CampaignConfig, index: int) -> ScheduleResult:
    kind = config.kind_of(index)
    seed = config.seed_of(index)
    run_dir = config.history_dir / f"{index:03d}-{kind}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    rng = random.Random(seed)
    outcomes: list[CheckOutcome] = []
    history_path = run_dir / "history.jsonl"
    with history_path.open("w") as sink:
        recorder = HistoryRecorder(sink)
        recorder.nemesis(
            {"f": "start", "schedule": str(kind), "aim": AIMS[kind], "seed": seed, "index": index}
        )
        cluster = ChaosCluster(
            run_dir / "cluster", config.nodes, failpoints=config.failpoints,
            extra_args=config.node_args,
            tmpfs_size=TMPFS_SIZE if kind in NEEDS_TMPFS else None,
        )  # fmt: skip
        try:
            workload = Workload(
                cluster,
                recorder,
                random.Random(rng.getrandbits(64)),
                WorkloadConfig(clients=config.clients, grpc_clients=config.grpc_clients),
            )
            nemesis = Nemesis(cluster, recorder, random.Random(rng.getrandbits(64)))
            senders = (
                InputNemesis(
                    cluster,
                    random.Random(rng.getrandbits(64)),
                    config.nemesis_kinds,
                    log_path=run_dir / inputs.LOG_FILE,
                )
                if config.input_nemesis and config.nemesis_kinds
                else None
            )
            listeners = ListenerSet(cluster)
            convergence: checks.Convergence | None = None
            ephemeral: checks.EphemeralCheck | None = None
            comparison: checks.StateComparison | None = None
            async with cluster:
                leader = await _wait_leader(cluster)
                outcomes.append(
                    CheckOutcome(
                        name="initial leader",
                        passed=leader is not None,
                        detail=f"{leader.id}" if leader else "no leader elected in 30 s",
                    )
                )
                if leader is not None:
                    listeners.start()
                    await _run_faults(config, kind, workload, nemesis, senders)
                    outcomes.append(_unexpected_exits(cluster))
                    healed_at = asyncio.get_running_loop().time()
                    await nemesis.heal()
                    serving = await cluster.wait_serving(RESTART_TIMEOUT_SECONDS)
                    outcomes.append(await _members_outcome(cluster, kind))
                    convergence = await checks.converge(
                        cluster, config.convergence_seconds, since=healed_at
                    )
                    outcomes.append(
                        CheckOutcome(
                            name="convergence",
                            passed=serving and convergence.seconds is not None,
                            detail=convergence.detail
                            if convergence.seconds is None
                            else f"{convergence.seconds:.2f} s",
                        )
                    )
                    try:
                        failed_reads = await checks.final_reads(cluster, workload)
                        outcomes.append(
                            CheckOutcome(
                                name="final reads",
                                passed=failed_reads == 0,
                                detail=f"{failed_reads} of the final linearizable reads failed",
                            )
                        )
                        comparison = await checks.compare_state(
                            cluster,
                            workload.stats.register_keys,
                            workload.stats.acked_set_keys,
                            workload.stats.acked_instances,
                        )
                        outcomes.append(
                            CheckOutcome(
                                name="identical state",
                                passed=not comparison.differences,
                                detail=f"{comparison.keys_compared} keys on "
                                f"{len(cluster.nodes)} nodes"
                                if not comparison.differences
                                else "; ".join(comparison.differences[:5]),
                            )
                        )
                        acked = len(workload.stats.acked_set_keys) + len(
                            workload.stats.acked_instances
                        )
                        over_grpc = workload.stats.acked_grpc_instances
                        outcomes.append(
                            CheckOutcome(
                                name="acked writes present",
                                passed=not comparison.lost_writes,
                                detail=f"{acked} acked write-once keys/instances "
                                f"({over_grpc} over gRPC) on every node"
                                if not comparison.lost_writes
                                else "; ".join(comparison.lost_writes[:5]),
                            )
                        )
                        if workload.grpc_sessions:
                            ephemeral = await checks.grpc_ephemeral(cluster, workload)
                            outcomes.append(_ephemeral_outcome(ephemeral, len(cluster.nodes)))
                        outcomes += await _config_checks(cluster, workload, listeners)
                        if senders is not None:
                            outcomes += await _input_checks(cluster, senders)
                    except (
                        aiohttp.ClientError,
                        TimeoutError,
                        OSError,
                        KeyError,
                        ValueError,
                    ) as error:
                        outcomes.append(
                            CheckOutcome(
                                name="post-heal reads",
                                passed=False,
                                detail=f"a node did not answer: {type(error).__name__}: {error}",
                            )
                        )
                await listeners.stop()
                await workload.close()
                recorder.nemesis({"f": "end"})
            audit = checks.election_safety(cluster)
            outcomes.append(
                CheckOutcome(
                    name="one leader per term",
                    passed=not audit.violations and audit.records > 0,
                    detail=f"{audit.terms} terms, {audit.records} audit records"
                    if not audit.violations
                    else "; ".join(audit.violations[:5]),
                )
            )
            traces = checks.tracebacks(cluster)
            outcomes.append(
                CheckOutcome(
                    name="no tracebacks",
                    passed=not traces,
                    detail="none" if not traces else f"{traces}",
                )
            )
        finally:
            cluster.release()
    started = time.monotonic()
    verdict = check_history(recorder.records)
    bad_keys = verdict.count(Verdict.NOT_LINEARIZABLE) + verdict.count(Verdict.UNKNOWN)
    explanations = [
        result.explanation or str(result.verdict)
        for result in verdict.key_results.values()
        if not result.is_linearizable
    ]
    outcomes.append(
        CheckOutcome(
            name="linearizable",
            passed=verdict.ok,
            detail=f"{len(verdict.key_results)} keys in {time.monotonic() - started:.2f} s"
            if verdict.ok
            else "; ".join(explanations[:3]),
        )
    )
    stats = workload.stats
    lost = len(comparison.lost_writes) if comparison is not None else 0
    differences = len(comparison.differences) if comparison is not None else 0
    result = ScheduleResult(
        index=index,
        kind=kind,
        seed=seed,
        run_dir=run_dir,
        ops=stats.ops,
        ok=stats.outcomes["ok"],
        fail=stats.outcomes["fail"],
        info=stats.outcomes["info"],
        nemesis_actions=nemesis.actions,
        acked_writes_checked=len(stats.acked_set_keys) + len(stats.acked_instances),
        lost_writes=lost,
        violations=bad_keys + len(audit.violations) + differences,
        convergence_seconds=convergence.seconds if convergence is not None else None,
        checks=tuple(outcomes),
        replay=config.replay_command(index),
        input_nemesis=senders.summary() if senders is not None else None,
        grpc=_grpc_summary(workload, ephemeral),
    )
    _write_result(result)
    (run_dir / "refusals.log").write_text("".join(f"{line}\n" for line in stats.refusals))
    if result.passed:
        for db_file in (run_dir / "cluster").glob("*/naraft.db*"):
            db_file.unlink(missing_ok=True)
    return result


async def _wait_leader(cluster: ChaosCluster) -> ChaosNode | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEADER_TIMEOUT_SECONDS
    while loop.time() < deadline:
        leader = await cluster.leader()
        if leader is not None:
            return leader
        await asyncio.sleep(0.2)
    return None


async def _run_faults(
    config: CampaignConfig,
    kind: ScheduleKind,
    workload: Workload,
    nemesis: Nemesis,
    senders: InputNemesis | None,
) -> None:
    """Clients (and the input nemesis) for `config.seconds`; the nemesis stops faulting 2 s
    before the end."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    deadline = loop.time() + max(1.0, config.seconds - 2.0)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(workload.run(stop), name="chaos-workload")
        if senders is not None:
            tasks.create_task(senders.run(stop), name="chaos-input-nemesis")
        fault_task = tasks.create_task(STEPS[kind](nemesis, deadline), name="chaos-nemesis")
        await asyncio.sleep(config.seconds)
        stop.set()
        try:
            async with asyncio.timeout(NEMESIS_GRACE_SECONDS):
                await asyncio.shield(fault_task)
        except TimeoutError:
            fault_task.cancel()


async def _config_checks(
    cluster: ChaosCluster, workload: Workload, listeners: ListenerSet
) -> list[CheckOutcome]:
    """Acked write-once configs on every node; every listener heard every final value."""
    result = await checks.check_configs(cluster, workload.stats.acked_configs, listeners)
    return [
        CheckOutcome(
            name="acked configs present",
            passed=not result.lost_configs,
            detail=f"{result.acked} acked write-once configs on every node"
            if not result.lost_configs
            else "; ".join(result.lost_configs[:5]),
        ),
        CheckOutcome(
            name="no lost notification",
            passed=not result.missed_notifications,
            detail=f"every listener reached the final values ({result.notifications} notifications)"
            if not result.missed_notifications
            else "; ".join(result.missed_notifications[:5]),
        ),
    ]


async def _input_checks(cluster: ChaosCluster, senders: InputNemesis) -> list[CheckOutcome]:
    """The input nemesis's acked writes on every node; its answers held to their contract."""
    problems = await inputs.check(cluster, senders.stats)
    acked = len(senders.stats.acked)
    contract = senders.stats.contract
    sent = sum(senders.stats.sent.values())
    return [
        CheckOutcome(
            name="input nemesis acked writes present",
            passed=not problems,
            detail=f"{acked} acked kv writes/registrations/switches on every node, gRPC serving"
            if not problems
            else "; ".join(problems[:5]),
        ),
        CheckOutcome(
            name="input nemesis answers",
            passed=not contract,
            detail=f"{sent} requests, each answered as its input deserves"
            if not contract
            else f"{len(contract)} wrong answers: " + "; ".join(contract[:5]),
        ),
    ]


def _ephemeral_outcome(result: checks.EphemeralCheck, nodes: int) -> CheckOutcome:
    return CheckOutcome(
        name="gRPC ephemeral instances listed",
        passed=not result.missing,
        detail=f"{result.instances} instances of {result.clients} live gRPC connections "
        f"on {nodes} nodes, each published by its connection, in {result.seconds:.2f} s"
        if result.seconds is not None and not result.missing
        else "; ".join(result.missing[:5]),
    )


def _grpc_summary(workload: Workload, ephemeral: checks.EphemeralCheck | None) -> dict[str, int]:
    summary = {
        "clients": len(workload.grpc_sessions),
        **workload.stats.grpc,
        "acked_set_instances": workload.stats.acked_grpc_instances,
    }
    if ephemeral is not None:
        summary["ephemeral_checked"] = ephemeral.instances
        summary["live_checked"] = ephemeral.clients
    return summary


async def _members_outcome(cluster: ChaosCluster, kind: ScheduleKind) -> CheckOutcome:
    """The leader's member list after the heal: every member a voter, and the nodes the
    checks ask (`cluster.nodes`) exactly the members. A joining node listed late is adopted
    here, a member removed late retired; the replace-node schedule must have replaced one."""
    listing = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTART_TIMEOUT_SECONDS
    while listing is None and loop.time() < deadline:
        listing = await cluster.members()
    if listing is None:
        return CheckOutcome(name="members", passed=False, detail="no leader listed the members")
    rows = {str(row["id"]): str(row["role"]) for row in listing["members"]}
    for node in list(cluster.joining):
        if node.id in rows:
            cluster.adopt(node)
    for node in list(cluster.nodes):
        if node.id not in rows:
            cluster.retire(node)
            await node.stop()
    problems = [f"{member} is a {role}" for member, role in rows.items() if role != "voter"]
    problems += [
        f"{member} is not a node of the campaign" for member in set(rows) - set(cluster.ids)
    ]
    if kind is ScheduleKind.REPLACE_NODE and not (cluster.retired and not cluster.joining):
        problems.append(
            f"not replaced: joining {[n.id for n in cluster.joining]}, "
            f"removed {[n.id for n in cluster.retired]}"
        )
    return CheckOutcome(
        name="members",
        passed=not problems,
        detail=f"voters {sorted(rows)}" if not problems else "; ".join(problems),
    )


def _unexpected_exits(cluster: ChaosCluster) -> CheckOutcome:
    """Nodes that died though nobody killed them (fail-stop or a crash)."""
    dead = [n.id for n in cluster.nodes if not n.running and not n.killed]
    return CheckOutcome(
        name="no unexpected exits",
        passed=not dead,
        detail="none" if not dead else f"exited on their own: {dead}",
    )


def _write_result(result: ScheduleResult) -> None:
    data = {
        "index": result.index,
        "kind": str(result.kind),
        "seed": result.seed,
        "passed": result.passed,
        "ops": result.ops,
        "ok": result.ok,
        "fail": result.fail,
        "info": result.info,
        "nemesis_actions": result.nemesis_actions,
        "acked_writes_checked": result.acked_writes_checked,
        "lost_writes": result.lost_writes,
        "violations": result.violations,
        "convergence_seconds": result.convergence_seconds,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.checks],
        "replay": result.replay,
        "input_nemesis": result.input_nemesis,
        "grpc": result.grpc,
    }
    (result.run_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")
