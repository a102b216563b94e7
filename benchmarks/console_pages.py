# ruff: noqa: T201
"""How fast the console's pages answer with 10,000 services (the console issue: under 200 ms).

    .venv/bin/python benchmarks/console_pages.py [--services 10000] [--repeat 20]

Starts a 3-node naraft cluster, registers one persistent instance in each of `--services`
services through the leader (64 at a time), then asks a follower for the services page
(first page, a far page, a search) and one service's page, `--repeat` times each, one at a
time. Printed: p50 and max per page, wall time from request to the last byte.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from clusters import NODE_NAMES, NaraftCluster

UI = "/nacos/ui"
GOAL_MS = 200.0


async def register(leader_url: str, services: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(services):
        queue.put_nowait(n)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            params = {
                "serviceName": f"svc-{n:05d}", "ip": "10.0.0.1", "port": "80",
                "ephemeral": "false",
            }  # fmt: skip
            async with http.post(f"{leader_url}/nacos/v1/ns/instance", params=params) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"register answered {answer.status}: {await answer.text()}")

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(64)))


async def time_pages(url: str, pages: dict[str, str], repeat: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name in pages}
    async with aiohttp.ClientSession() as http:
        for _ in range(repeat):
            for name, path in pages.items():
                started = time.perf_counter()
                async with http.get(url + path) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{path} answered {answer.status}")
                timings[name].append(time.perf_counter() - started)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    far = max(1, args.services // 20 - 100)  # 20 rows a page
    pages = {
        "services, first page": f"{UI}/services",
        f"services, page {far}": f"{UI}/services?pageNo={far}",
        "services, a search": f"{UI}/services?serviceNameParam=svc-0999",
        "one service": f"{UI}/service?namespaceId=public&groupName=DEFAULT_GROUP"
        "&serviceName=svc-00042",
    }
    with tempfile.TemporaryDirectory(prefix="naraft-console-bench-") as base:
        cluster = NaraftCluster(Path(base))
        try:
            cluster.start()
            leader = cluster.wait_healthy(60)
            follower = next(n for n in NODE_NAMES if n != leader)
            started = time.perf_counter()
            asyncio.run(register(cluster.endpoint(leader), args.services))
            print(f"registered {args.services} services in {time.perf_counter() - started:.1f} s")
            timings = asyncio.run(time_pages(cluster.endpoint(follower), pages, args.repeat))
        finally:
            cluster.stop()
    print(f"{'page (on a follower)':<32}{'p50 ms':>10}{'max ms':>10}")
    for name, values in timings.items():
        ordered = sorted(values)
        print(f"{name:<32}{1000 * ordered[len(ordered) // 2]:>10.1f}{1000 * ordered[-1]:>10.1f}")
    worst = max(max(values) for values in timings.values())
    verdict = "met" if worst * 1000 < GOAL_MS else "missed"
    print(f"goal: every page under {GOAL_MS:.0f} ms: {verdict} (slowest {1000 * worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
