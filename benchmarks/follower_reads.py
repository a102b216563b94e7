# ruff: noqa: T201
"""Read-after-write across nodes, naraft beside etcd 3.4 in the same run.

    .venv/bin/python benchmarks/follower_reads.py [--samples 500] [--out results.json]

One client writes a new value through the leader and, as soon as the write is acknowledged,
reads the same key from a follower with a local read (naraft `GET /naraft/v1/kv/{key}?
consistency=local`, etcd `POST /v3/kv/range` with `serializable`). Printed for each system:
how often that first read was stale, and the lag from the acknowledgement to the first read
on the follower that shows the new value (p50, p99; 0 when the first read already did).
This is what a Nacos client sees when it registers through one node and lists through
another.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from clusters import NODE_NAMES, EtcdCluster, NaraftCluster

KEY = "follower-read"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Target:
    """How to write through the leader and read locally on a follower, per system."""

    def __init__(self, cluster: Any) -> None:
        leader = cluster.wait_healthy(60)
        follower = next(n for n in NODE_NAMES if n != leader)
        self.system = cluster.name
        self.leader_url = cluster.endpoint(leader)
        self.follower_url = cluster.endpoint(follower)

    async def write(self, http: aiohttp.ClientSession, value: str) -> None:
        if self.system == "naraft":
            url, body = f"{self.leader_url}/naraft/v1/kv/{KEY}", json.dumps({"value": value})
            async with http.put(url, data=body) as answer:
                await answer.read()
                answer.raise_for_status()
        else:
            body = json.dumps({"key": b64(KEY), "value": b64(value)})
            async with http.post(f"{self.leader_url}/v3/kv/put", data=body) as answer:
                await answer.read()
                answer.raise_for_status()

    async def read(self, http: aiohttp.ClientSession) -> str | None:
        if self.system == "naraft":
            url = f"{self.follower_url}/naraft/v1/kv/{KEY}?consistency=local"
            async with http.get(url) as answer:
                if answer.status == 404:
                    return None
                answer.raise_for_status()
                return str(json.loads(await answer.read())["value"])
        body = json.dumps({"key": b64(KEY), "serializable": True})
        async with http.post(f"{self.follower_url}/v3/kv/range", data=body) as answer:
            answer.raise_for_status()
            kvs = json.loads(await answer.read()).get("kvs") or []
            return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


async def measure(target: Target, samples: int) -> dict[str, Any]:
    stale = 0
    lags: list[float] = []
    async with aiohttp.ClientSession() as http:
        await target.write(http, "warm-up")
        for i in range(samples):
            value = f"v{i}"
            await target.write(http, value)
            acked = time.perf_counter()
            seen = await target.read(http)
            if seen == value:
                lags.append(0.0)
                continue
            stale += 1
            deadline = acked + 5.0
            while seen != value and time.perf_counter() < deadline:
                seen = await target.read(http)
            if seen != value:
                raise RuntimeError(f"{target.system}: the follower never showed {value}")
            lags.append(time.perf_counter() - acked)
    return {"samples": samples, "stale": stale, "lags_s": lags}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="naraft-follower-reads-") as base:
        naraft, etcd = NaraftCluster(Path(base)), EtcdCluster(Path(base))
        try:
            naraft.start()
            etcd.start()
            for cluster in (etcd, naraft):
                results[cluster.name] = asyncio.run(measure(Target(cluster), args.samples))
        finally:
            naraft.stop()
            etcd.stop()
    print(f"{'system':<8}{'stale first reads':>20}{'lag p50 ms':>12}{'lag p99 ms':>12}")
    for name, run in results.items():
        lags = run["lags_s"]
        share = 100 * run["stale"] / run["samples"]
        print(
            f"{name:<8}{run['stale']:>10} ({share:5.1f} %)"
            f"{1000 * percentile(lags, 50):>12.2f}{1000 * percentile(lags, 99):>12.2f}"
        )
    print("goal (issue: performance past etcd): stale no more often than etcd, p99 lag <= 5 ms")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
