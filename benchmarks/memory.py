# ruff: noqa: T201
"""RSS per node: naraft holding N persistent instances beside etcd 3.4 holding N keys (G8).

    .venv/bin/python benchmarks/memory.py [--instances 100000] [--services 1000] [--out FILE]

Starts a 3-node naraft cluster and a 3-node etcd cluster (`clusters.py`, default settings)
and reads every node's RSS (`VmRSS`) three times:

1. **empty**, once both clusters have a leader;
2. **written**: naraft after N persistent Nacos registrations into S services (`load.py
   --op register`, c=64, to the leader; each instance is stored as a 250-byte record), etcd
   after N puts of 256-byte values (`load.py --op put`); each cluster is then waited on
   until every node has applied what its leader committed;
3. **read**: after every node has answered a read of everything once: naraft one instance
   list of each service (which fills its list cache, as clients do), etcd its whole key
   range in pages of 1,000 (serializable: each node answers from its own store).

Prints the RSS of each node at each point and the ratio naraft/etcd of the median node at
"read", against G8 of docs/performance-goals.md (milestone <= 1.5x, goal <= 1.0x).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any, Final

import aiohttp
from clusters import NODE_NAMES, Cluster, EtcdCluster, NaraftCluster
from load import Workload
from tls import Plan, load

MILESTONE: Final = 1.5
GOAL: Final = 1.0
READ_CONCURRENCY: Final = 16
PAGE: Final = 1_000


def rss(cluster: Cluster) -> dict[str, float | None]:
    return cluster.rss_mib()


async def read_every_list(cluster: Cluster, services: int, prefix: str) -> int:
    """One instance list of each of the `services` services, on every node; the hosts seen."""
    workload = Workload("naraft", "list", prefix, "", services)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker(base: str, todo: asyncio.Queue[int]) -> int:
            seen = 0
            while not todo.empty():
                request = workload.request(base, todo.get_nowait())
                async with session.get(request.url) as answer:
                    answer.raise_for_status()
                    seen += len((await answer.json())["hosts"])
            return seen

        hosts = 0
        for endpoint in cluster.endpoints:
            todo: asyncio.Queue[int] = asyncio.Queue()
            for index in range(services):
                todo.put_nowait(index)
            counts = await asyncio.gather(
                *(worker(endpoint, todo) for _ in range(READ_CONCURRENCY))
            )
            hosts += sum(counts)
    return hosts


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def read_every_key(cluster: Cluster, prefix: str) -> int:
    """etcd's whole key range under `prefix`, serializable, in pages, on every node."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    keys = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for endpoint in cluster.endpoints:
            start = prefix
            while True:
                body = {
                    "key": _b64(start),
                    "range_end": _b64(end),
                    "limit": PAGE,
                    "serializable": True,
                }
                async with session.post(f"{endpoint}/v3/kv/range", json=body) as answer:
                    answer.raise_for_status()
                    page = await answer.json()
                kvs = page.get("kvs", [])
                keys += len(kvs)
                if not page.get("more") or not kvs:
                    break
                start = base64.b64decode(kvs[-1]["key"]).decode() + "\0"
    return keys


def write(cluster: Cluster, op: str, instances: int, services: int | None) -> dict[str, Any]:
    plan = Plan(rounds=1, ops=instances, seconds=900.0, warmup=0, quiet_wait_seconds=0.5)
    result = load(
        plan, cluster, [], op=op, mode="leader", key_prefix="mem/", key_space=0,
        services=services,
    )  # fmt: skip
    if result["ok"] < instances:
        raise RuntimeError(f"{cluster.name}: wrote {result['ok']} of {instances}")
    cluster.wait_healthy(120)  # every node has applied (within a few entries of) the commit
    return result


def _median(values: dict[str, float | None]) -> float:
    return statistics.median(v for v in values.values() if v is not None)


def _line(label: str, values: dict[str, float | None]) -> str:
    cells = "".join(f"{values.get(n) or 0:>10.1f}" for n in NODE_NAMES)
    return f"  {label:<24}{cells}{_median(values):>10.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=1_000)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    if not 1 <= args.services <= args.instances <= 1_000_000:
        parser.error("need 1 <= --services <= --instances <= 1000000")
    points: dict[str, dict[str, dict[str, float | None]]] = {"naraft": {}, "etcd": {}}
    with tempfile.TemporaryDirectory(prefix="naraft-memory-") as base:
        naraft = NaraftCluster(Path(base))
        etcd = EtcdCluster(Path(base))
        try:
            naraft.start()
            etcd.start()
            naraft.wait_healthy(60)
            etcd.wait_healthy(60)
            points["naraft"]["empty"], points["etcd"]["empty"] = rss(naraft), rss(etcd)
            write(naraft, "register", args.instances, args.services)
            write(etcd, "put", args.instances, None)
            points["naraft"]["written"], points["etcd"]["written"] = rss(naraft), rss(etcd)
            hosts = asyncio.run(read_every_list(naraft, args.services, "mem/"))
            keys = asyncio.run(read_every_key(etcd, "mem/"))
            if hosts != 3 * args.instances or keys != 3 * args.instances:
                raise RuntimeError(f"read back {hosts} hosts and {keys} keys over 3 nodes")
            points["naraft"]["read"], points["etcd"]["read"] = rss(naraft), rss(etcd)
        finally:
            naraft.stop()
            etcd.stop()
    print(f"RSS MiB, {args.instances} persistent instances in {args.services} services "
          f"(naraft) / {args.instances} keys of 256 bytes (etcd)")  # fmt: skip
    print(f"  {'':<24}" + "".join(f"{n:>10}" for n in NODE_NAMES) + f"{'median':>10}")
    for system, at in points.items():
        for label, values in at.items():
            print(_line(f"{system} {label}", values))
    ratio = _median(points["naraft"]["read"]) / _median(points["etcd"]["read"])
    milestone = "PASS" if ratio <= MILESTONE else "MISS"
    goal = "PASS" if ratio <= GOAL else "MISS"
    print(f"G8 RSS per node, median node, after reads: {ratio:.2f}x etcd "
          f"(milestone <= {MILESTONE}x: {milestone}; goal <= {GOAL}x: {goal})")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)},
                                        "rss_mib": points, "ratio": ratio}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
