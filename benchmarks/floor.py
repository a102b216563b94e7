# ruff: noqa: T201
"""The floor under a kv put: what one bare aiohttp server spends per request, beside what
etcd 3.4's whole cluster and naraft's whole cluster spend per put, in the same run:
`python benchmarks/floor.py [--rounds 3] [--seconds 6]`.

The floor server is a single process on uvloop with one route, `PUT /naraft/v1/kv/{key}`:
it reads the JSON body, takes its value, and answers a small JSON document, as naraft's
leader must at the least for a client's put (no middleware, no Raft, no disk, no peers).
In each round, interleaved: etcd puts, naraft kv puts (to the leader), floor puts, each a
bounded `load.py` run at c=64 (the same load generator for all three). Prints the medians
of ops/s and of the servers' CPU per operation (all of a system's processes).

What it answers: on a machine where every system is bound by CPU, throughput follows CPU
per operation, and a single-process leader is bound by one core: the leader's CPU per put
is printed apart. The floor is the part of a put's cost on the leader that aiohttp alone
takes, before any of naraft's work.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import procstat
from bench import Bench, Plan
from clusters import Cluster, EtcdCluster, NaraftCluster

from naraft.cluster import free_ports

FLOOR_NODE = "floor"
WARMUP = 300


class FloorServer(Cluster):
    """One bare aiohttp process that load.py can put to as if it were naraft's leader."""

    name = "naraft"  # load.py's target: it speaks naraft's kv API

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir)
        self._port = free_ports(1)[0]

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(FLOOR_NODE)]

    def endpoint(self, node: str) -> str:
        return f"http://127.0.0.1:{self._port}"

    def _command(self, node: str, *, first_start: bool) -> list[str]:
        return [sys.executable, __file__, "--serve", str(self._port)]

    def start(self, timeout_seconds: float = 60.0) -> str:
        self._spawn(FLOOR_NODE, first_start=True)
        return self.wait_healthy(timeout_seconds)

    def wait_healthy(self, timeout_seconds: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            try:
                put = urllib.request.Request(
                    f"{self.endpoint(FLOOR_NODE)}/naraft/v1/kv/ready",
                    data=b'{"value": "x"}',
                    method="PUT",
                )
                with urllib.request.urlopen(put, timeout=1) as answer:
                    answer.read()
                return FLOOR_NODE
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the floor server did not answer within {timeout_seconds} s")

    def max_term(self) -> int:
        return 0  # no elections


def serve(port: int) -> None:
    """The floor server: parse, read the body, decode it, answer; nothing else."""
    import orjson
    import uvloop
    from aiohttp import web

    version = 0

    async def put(request: web.Request) -> web.Response:
        nonlocal version
        value = orjson.loads(await request.read())["value"]
        version += 1
        answer = {"key": request.match_info["key"], "version": version, "size": len(value)}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application()
    app.router.add_put("/naraft/v1/kv/{key:.+}", put)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _print_threads(
    before: dict[int, dict[int, float]], leader_pid: int, run: dict[str, Any]
) -> None:
    """Each naraft process's event-loop thread (the main one) apart from its other threads
    (the store's writer, executors): CPU per put and the share of a core, over the call
    to load.py (its warm-up and waits included, so the shares are slight overestimates)."""
    ops = max(1, int(run["ok"]) + WARMUP)
    elapsed = max(float(run["elapsed_s"]), 1e-9)
    for pid, threads in before.items():
        after = procstat.thread_cpu_seconds(pid)
        main = after.get(pid, 0.0) - threads.get(pid, 0.0)
        rest = sum(after.values()) - sum(threads.values()) - main
        role = "leader" if pid == leader_pid else "follower"
        print(
            f"    {role:<8} event loop {1000 * main / ops:.3f} ms/put ({main / elapsed:.2f}"
            f" of a core over the measured time), other threads {1000 * rest / ops:.3f} ms/put"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--ops", type=int, default=40_000)
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the floor server's port
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    base = Path(tempfile.mkdtemp(prefix="naraft-floor-bench-"))
    etcd = EtcdCluster(base / "etcd")
    naraft = NaraftCluster(base / "naraft")
    floor = FloorServer(base / "floor")
    systems: tuple[tuple[str, Cluster], ...] = (
        ("etcd", etcd),
        ("naraft", naraft),
        ("floor", floor),
    )
    plan = Plan(warmup=WARMUP, quiet_wait_seconds=3.0)
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    leader_cpu: dict[str, list[float]] = {}  # the leader's process alone
    try:
        for _, cluster in systems:
            cluster.start()
        bench = Bench(plan, etcd, naraft)
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}", flush=True)
            for label, cluster in systems:
                leader_pid = cluster.pid(cluster.wait_healthy(60))
                before = procstat.cpu_snapshot(cluster.pids())
                threads = {pid: procstat.thread_cpu_seconds(pid) for pid in cluster.pids()}
                result: dict[str, Any] = bench.load(
                    cluster, op="put", concurrency=64, ops=args.ops, seconds=args.seconds,
                    key_prefix=f"r{number}/", label=f"{label} put",
                )  # fmt: skip
                spent = procstat.cpu_delta(before, procstat.cpu_snapshot(cluster.pids()))
                if label == "naraft":
                    _print_threads(threads, leader_pid, result)
                rates.setdefault(label, []).append(float(result["ops_per_s"]))
                if result["server_cpu_ms_per_op"] is not None and sum(spent.values()) > 0:
                    per_op = float(result["server_cpu_ms_per_op"])
                    cpu.setdefault(label, []).append(per_op)
                    share = spent.get(leader_pid, 0.0) / sum(spent.values())
                    leader_cpu.setdefault(label, []).append(per_op * share)
    finally:
        for _, cluster in systems:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"{'system':<8} {'puts/s':>8} {'server CPU ms/op':>17} {'leader ms/op':>13}  (medians)")
    rate = {label: statistics.median(values) for label, values in rates.items()}
    per_op = {label: statistics.median(values) for label, values in cpu.items()}
    leader = {label: statistics.median(values) for label, values in leader_cpu.items()}
    for label, _ in systems:
        print(
            f"{label:<8} {rate[label]:>8.0f} {per_op.get(label, float('nan')):>17.3f}"
            f" {leader.get(label, float('nan')):>13.3f}"
        )
    print()
    if "etcd" in rate and "floor" in leader:
        goal = 1.5 * rate["etcd"]
        print(
            f"1.5x etcd's puts is {goal:.0f}/s. naraft's leader is one Python process: one "
            f"core at that rate leaves it {1000 / goal:.3f} ms a put, of which a bare aiohttp "
            f"request takes {leader['floor']:.3f} ms; and the whole machine (2 cores: every "
            f"server and the load generator) leaves {2000 / goal:.3f} ms a put for all of them."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
