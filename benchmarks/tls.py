"""The cost of TLS: writes/s and reads/s with and without it, naraft and etcd, same run:
`python benchmarks/tls.py [--quick] [--out results.json]`.

Two phases, so that at most six servers share the machine at once:

1. naraft: a plaintext 3-node cluster and one with client TLS and peer mutual TLS
   (`--tls-cert-file`, `--peer-tls-*`; throwaway CA and node certificates from
   `naraft.tls`), started together;
2. etcd 3.4: the same pair (`--cert-file`/`--key-file`, `--peer-*` with
   `--peer-client-cert-auth`, the same kind of certificates).

In each phase, rounds interleave plaintext and TLS (plain, tls, plain, tls, ...) on the
same workloads at c=64, closed loop (`load.py`, its own process, keep-alive connections:
a handshake per connection, in the warm-up): durable writes to the leader, linearizable
reads to the leader, local reads round-robin over the three nodes (naraft instance list,
etcd serializable range). Reported: medians over rounds of ops/s, p50/p99, server CPU per
op, and the median of the per-round TLS/plaintext throughput ratios (the issue's goal:
TLS costs at most 25 %). Only ratios from the same run mean anything on a shared machine.
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import procstat
from clusters import Cluster, EtcdCluster, NaraftCluster

HERE: Final = Path(__file__).resolve().parent
CONCURRENCY: Final = 64
WORKLOADS: Final = {  # name -> (naraft op, etcd op, mode)
    "writes": ("put", "put", "leader"),
    "linearizable reads": ("get", "get", "leader"),
    "local reads": ("list", "get-serializable", "roundrobin"),
}
GOAL_COST: Final = 0.25


@dataclasses.dataclass(slots=True)
class Plan:
    rounds: int = 3
    ops: int = 30_000
    seconds: float = 6.0
    warmup: int = 300
    quiet_wait_seconds: float = 3.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(rounds=1, ops=6_000, seconds=2.0, warmup=100, quiet_wait_seconds=0.5)


def load(plan: Plan, cluster: Cluster, others: Sequence[Cluster], *, op: str, mode: str,
         key_prefix: str, key_space: int, concurrency: int = CONCURRENCY,
         services: int | None = None, start_index: int = 0) -> dict[str, Any]:  # fmt: skip
    """One bounded load.py run against `cluster`'s leader (first endpoint)."""
    leader = cluster.wait_healthy(60)
    endpoints = [cluster.endpoint(leader)] + [
        e for e in cluster.endpoints if e != cluster.endpoint(leader)
    ]
    procstat.wait_until_quiet(
        plan.quiet_wait_seconds, [p for c in (cluster, *others) for p in c.pids()]
    )
    command = [
        sys.executable, str(HERE / "load.py"), "--target", cluster.target, "--op", op,
        "--mode", mode, "--endpoints", ",".join(endpoints), "-c", str(concurrency),
        "--ops", str(plan.ops), "--max-seconds", str(plan.seconds),
        "--warmup", str(plan.warmup), "--key-prefix", key_prefix, "--key-space", str(key_space),
        "--watch-pids", ",".join(str(p) for p in cluster.pids()),
        "--start-index", str(start_index),
    ]  # fmt: skip
    if services is not None:
        command += ["--services", str(services)]
    if cluster.ca_file is not None:
        command += ["--cacert", str(cluster.ca_file)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=plan.seconds + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"load.py failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["cluster"] = cluster.name
    errors = f"  errors {result['errors']}" if sum(result["errors"].values()) else ""
    print(
        f"  {cluster.name:<10} {op:<17} {result['ops_per_s']:>8.0f}/s  p50 {result['p50_ms']} ms"
        f"  p99 {result['p99_ms']} ms  server {result['server_cpu_ms_per_op']} ms/op"
        f"  foreign {result['foreign_cpu_cores']}{errors}",
        flush=True,
    )
    return result


def phase(plan: Plan, plain: Cluster, tls: Cluster) -> dict[str, list[dict[str, Any]]]:
    """Interleaved rounds over a plaintext and a TLS cluster of one system."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in WORKLOADS}
    system = plain.target
    written: dict[str, int] = {}  # keys 0..N-1 of round 0's writes, per cluster: what reads read
    if system == "naraft":  # the local-read workload lists the services these fill
        for cluster in (plain, tls):
            load(plan, cluster, [], op="register", mode="leader", key_prefix="reg/", key_space=0)
    for number in range(plan.rounds):
        print(f"{system} round {number + 1}/{plan.rounds}", flush=True)
        for workload, (naraft_op, etcd_op, mode) in WORKLOADS.items():
            op = naraft_op if system == "naraft" else etcd_op
            for cluster in (plain, tls):
                others = [tls if cluster is plain else plain]
                if workload == "writes":
                    prefix, key_space = f"r{number}/w/", 0
                elif op == "list":
                    prefix, key_space = "reg/", plan.ops
                else:
                    prefix, key_space = "r0/w/", max(1, written[cluster.name])
                result = load(
                    plan, cluster, others, op=op, mode=mode, key_prefix=prefix,
                    key_space=key_space,
                )  # fmt: skip
                if workload == "writes" and number == 0:
                    written[cluster.name] = int(result["ok"])
                result["round"] = number
                runs[workload].append(result)
    return runs


def summarize(system: str, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for workload, results in runs.items():
        by = {
            name: [r for r in results if r["cluster"] == name] for name in (system, f"{system}-tls")
        }
        plain, tls = by[system], by[f"{system}-tls"]
        ratios = [
            t["ops_per_s"] / p["ops_per_s"]
            for p, t in zip(plain, tls, strict=True)
            if p["ops_per_s"] > 0
        ]

        def med(rs: list[dict[str, Any]], key: str) -> float | None:
            values = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(values) if values else None

        rows.append({
            "system": system, "workload": workload,
            "plain_ops_s": med(plain, "ops_per_s"), "tls_ops_s": med(tls, "ops_per_s"),
            "plain_p99_ms": med(plain, "p99_ms"), "tls_p99_ms": med(tls, "p99_ms"),
            "plain_cpu_ms_op": med(plain, "server_cpu_ms_per_op"),
            "tls_cpu_ms_op": med(tls, "server_cpu_ms_per_op"),
            "plain_client_ms_op": med(plain, "client_cpu_ms_per_op"),
            "tls_client_ms_op": med(tls, "client_cpu_ms_per_op"),
            "foreign_cores": med(plain + tls, "foreign_cpu_cores"),
            "tls_over_plain": round(statistics.median(ratios), 3) if ratios else None,
        })  # fmt: skip
    return rows


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_report(rows: Sequence[dict[str, Any]]) -> None:
    headers = ("system", "workload (c=64)", "plain ops/s", "TLS ops/s", "TLS/plain",
               "cost", "p99 plain", "p99 TLS", "server ms/op", "server ms/op TLS",
               "client ms/op", "client ms/op TLS", "foreign cores")  # fmt: skip
    table = [
        (r["system"], r["workload"], _fmt(r["plain_ops_s"]), _fmt(r["tls_ops_s"]),
         _fmt(r["tls_over_plain"], 3),
         "-" if r["tls_over_plain"] is None else f"{100 * (1 - r['tls_over_plain']):.0f} %",
         _fmt(r["plain_p99_ms"], 1), _fmt(r["tls_p99_ms"], 1),
         _fmt(r["plain_cpu_ms_op"], 3), _fmt(r["tls_cpu_ms_op"], 3),
         _fmt(r["plain_client_ms_op"], 3), _fmt(r["tls_client_ms_op"], 3),
         _fmt(r["foreign_cores"], 2))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *table, strict=True)]
    for line in (headers, *table):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    for r in rows:
        if r["system"] == "naraft" and r["tls_over_plain"] is not None:
            verdict = "PASS" if 1 - r["tls_over_plain"] <= GOAL_COST else "MISS"
            print(f"goal: TLS costs <= 25 % of naraft {r['workload']}: {verdict}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round per phase")
    parser.add_argument("--out", type=Path, default=None, help="write every run as JSON")
    parser.add_argument("--skip-etcd", action="store_true")
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    base = Path(tempfile.mkdtemp(prefix="naraft-bench-tls-"))
    report: dict[str, Any] = {"plan": dataclasses.asdict(plan)}
    rows: list[dict[str, Any]] = []
    try:
        systems: list[tuple[type[Cluster], str]] = [(NaraftCluster, "naraft")]
        if not args.skip_etcd:
            if shutil.which("etcd") is None:
                print("etcd not found: apt-get install -y etcd-server (or --skip-etcd)")
                return 2
            systems.append((EtcdCluster, "etcd"))
        for kind, system in systems:
            plain, tls = kind(base), kind(base, tls=True)
            try:
                plain.start()
                tls.start()
                runs = phase(plan, plain, tls)
            finally:
                plain.stop()
                tls.stop()
            report[system] = runs
            rows += summarize(system, runs)
        print()
        print_report(rows)
        report["summary"] = rows
        if args.out is not None:
            args.out.write_text(json.dumps(report, indent=1, default=str))
    finally:
        if not args.keep_data:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
