"""Before and after: one workload on an earlier revision and on the working tree, with etcd
3.4 as the anchor, in interleaved rounds of one run:
`python benchmarks/versus.py --base REV [--workload local-reads] [--rounds 3] [--tls]`.

The base revision is checked out into a temporary git worktree and its `src` is run by the
same interpreter and dependencies (`NaraftCluster(source=...)`), or by `--base-python`'s
(another virtualenv: how a dependency upgrade is measured); the worktree is removed at the
end. Three 3-node clusters run side by side: base, head, etcd. Each round runs the
workload on base, head, then etcd (`tls.load`: c=64 unless `-c`, closed loop, own process).
Workloads:

- `local-reads`: both naraft clusters first get the same number of persistent instances
  (`--instances`, by count), then instance lists round-robin over the nodes; etcd:
  serializable range over keys written before the rounds;
- `linearizable-reads`: kv GET to the leader over keys written before; etcd: range;
- `writes`: kv PUT to the leader; etcd: put;
- `publishes`: Nacos config publishes (`POST /nacos/v1/cs/configs`, a new config each) to
  the leader; etcd: put;
- `registrations`: persistent Nacos registrations to the leader (`load.py`'s services, which
  grow by a few hundred instances a round); etcd: put. With `--service-size N`, both naraft
  clusters first get `--instances` registrations in services of N instances each
  (`--instances / N` services), and the rounds register new instances into those services:
  what one registration costs in a service of 10, or of 10,000.

Printed: each run, then per cluster the median ops/s, server CPU per op and p99, and per
round head/base and head/etcd throughput ratios and the head/base ratio of server CPU per
op, with their medians (and the CPU ratio's range). Only ratios from one run mean anything
on a shared machine.
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from clusters import Cluster, EtcdCluster, NaraftCluster
from tls import Plan, load

REPO: Final = Path(__file__).resolve().parent.parent
WORKLOADS: Final = {  # name -> (naraft op, etcd op, mode)
    "local-reads": ("list", "get-serializable", "roundrobin"),
    "linearizable-reads": ("get", "get", "leader"),
    "writes": ("put", "put", "leader"),
    "registrations": ("register", "put", "leader"),
    "publishes": ("publish", "put", "leader"),
}
SEED_KEYS: Final = 3_000  # what the read workloads read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the earlier revision (any git rev)")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="local-reads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--instances", type=int, default=SEED_KEYS)
    parser.add_argument("--service-size", type=int, default=0, help="registrations: see above")
    parser.add_argument("--tls", action="store_true", help="client TLS and peer mTLS for all")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="closed-loop clients")
    parser.add_argument(
        "--base-python", default=sys.executable, help="the base's interpreter (its virtualenv)"
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.instances <= 100_000:
        parser.error("--rounds must be 1..20 and --instances 1..100000")
    if not 1 <= args.concurrency <= 1024:
        parser.error("--concurrency must be 1..1024")
    if args.service_size and (
        args.workload != "registrations" or not 1 <= args.service_size <= args.instances
    ):
        parser.error("--service-size is for registrations, and must be 1..--instances")
    base_dir = Path(tempfile.mkdtemp(prefix="naraft-versus-"))
    worktree = base_dir / "base-src"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.base],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    clusters: dict[str, Cluster] = {}
    try:  # the worktree goes even if a cluster cannot be made (etcd missing, say)
        clusters["base"] = NaraftCluster(
            base_dir / "base", python=args.base_python, tls=args.tls, source=worktree / "src"
        )
        clusters["head"] = NaraftCluster(base_dir / "head", tls=args.tls)
        clusters["etcd"] = EtcdCluster(base_dir / "etcd", tls=args.tls)
        for cluster in clusters.values():
            cluster.start()
        runs = measure(args, clusters)
    finally:
        for cluster in clusters.values():
            cluster.stop()
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(base_dir, ignore_errors=True)
    workload = args.workload
    if args.service_size:
        workload += f" into {args.instances // args.service_size} services of {args.service_size}"
    report(args.base, workload, args.concurrency, runs)


def measure(args: argparse.Namespace, clusters: dict[str, Cluster]) -> dict[str, list[Any]]:
    naraft_op, etcd_op, mode = WORKLOADS[args.workload]
    plan = Plan(rounds=1, ops=40_000, seconds=args.seconds, warmup=300, quiet_wait_seconds=2.0)
    seed = Plan(rounds=1, ops=args.instances, seconds=900.0, warmup=0, quiet_wait_seconds=0.5)
    # --service-size: registrations into services of that size, seeded like the lists' ones
    services = args.instances // args.service_size if args.service_size else None
    for name, cluster in clusters.items():  # the same data in each, written by count
        seeds_lists = naraft_op == "list" or services is not None
        op = "register" if name != "etcd" and seeds_lists else "put"
        prefix = "reg/" if op == "register" else "seed/"
        written = load(
            seed, cluster, [], op=op, mode="leader", key_prefix=prefix, key_space=0,
            services=services,
        )  # fmt: skip
        if written["ok"] < args.instances:
            raise RuntimeError(f"{name}: seeded {written['ok']} of {args.instances}")
    runs: dict[str, list[Any]] = {name: [] for name in clusters}
    for number in range(args.rounds):
        print(f"round {number + 1}/{args.rounds}", flush=True)
        for name, cluster in clusters.items():
            others = [c for c in clusters.values() if c is not cluster]
            op = etcd_op if name == "etcd" else naraft_op
            start = 0
            if services is not None and name != "etcd":  # new instances, the seeded services
                prefix, key_space, start = "reg/", 0, args.instances + number * plan.ops
            elif args.workload in ("writes", "registrations", "publishes"):
                # a dataId takes no "/": new configs under r0-, r1-, ...
                prefix, key_space = f"r{number}{'-' if op == 'publish' else '/'}", 0
            elif op == "list":
                prefix, key_space = "reg/", args.instances
            else:
                prefix, key_space = "seed/", args.instances
            runs[name].append(
                load(
                    plan,
                    cluster,
                    others,
                    op=op,
                    mode=mode,
                    key_prefix=prefix,
                    key_space=key_space,
                    concurrency=args.concurrency,
                    services=services,
                    start_index=start,
                )  # fmt: skip
            )
    return runs


def report(base: str, workload: str, concurrency: int, runs: dict[str, list[Any]]) -> None:
    print(f"\n{workload}, c={concurrency}: base = {base}, head = the working tree")
    for name, results in runs.items():
        print(
            f"  {name:<5} {statistics.median(r['ops_per_s'] for r in results):>8.0f}/s"
            f"  server {statistics.median(r['server_cpu_ms_per_op'] for r in results):.3f} ms/op"
            f"  p50 {statistics.median(r['p50_ms'] for r in results):.2f} ms"
            f"  p99 {statistics.median(r['p99_ms'] for r in results):.1f} ms  (medians)"
        )
    over_base, over_etcd, cpu_over_base = [], [], []
    for number, (b, h, e) in enumerate(zip(runs["base"], runs["head"], runs["etcd"], strict=True)):
        over_base.append(_ratio(h["ops_per_s"], b["ops_per_s"]))
        over_etcd.append(_ratio(h["ops_per_s"], e["ops_per_s"]))
        cpu_over_base.append(_ratio(h["server_cpu_ms_per_op"], b["server_cpu_ms_per_op"]))
        print(
            f"  round {number + 1}: head/base {over_base[-1]:.2f}  head/etcd {over_etcd[-1]:.2f}"
            f"  server CPU per op head/base {cpu_over_base[-1]:.2f}"
        )
    print(
        f"  median: head/base {statistics.median(over_base):.2f}"
        f"  head/etcd {statistics.median(over_etcd):.2f}"
        f"  server CPU per op head/base {statistics.median(cpu_over_base):.2f}"
        f" ({min(cpu_over_base):.2f}-{max(cpu_over_base):.2f})"
    )


def _ratio(numerator: float | None, denominator: float | None) -> float:
    """A ratio of two measures, NaN where one is missing or the denominator is 0."""
    if not numerator or not denominator:
        return float("nan")
    return numerator / denominator


if __name__ == "__main__":
    main()
