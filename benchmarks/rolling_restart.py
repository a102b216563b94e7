"""A rolling restart under write load, naraft beside etcd 3.4 in the same run: every node in
turn gets SIGTERM (a leader hands leadership over first, in both systems), is started again
on its data once it has exited, and the cluster is healthy again before the next one; the
followers go first and the leader last, as an operator would. Writers keep putting values
throughout, spread over the three endpoints (a follower forwards to the leader in both).

    .venv/bin/python benchmarks/rolling_restart.py [--rounds 2] [--out rolling.json]

Printed per system and round: the longest stretch with no acknowledged write during the whole
rolling restart (the issue's goal: under 100 ms for naraft), and per restarted node the
longest gap around its stop, the writes that failed, and the leader before and after.
The writers use the failover benchmark's client rules (`failover.py`: short request
timeouts, move to the next endpoint after a failure, skip an endpoint that refused a
connection for a second).
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from clusters import NODE_NAMES, Cluster, EtcdCluster, NaraftCluster
from failover import WriteEvents, keep_writing
from load import Workload, make_value

GOAL_MS = 100.0


def terminate(cluster: Cluster, node: str) -> None:
    """SIGTERM `node` and wait for it to exit (both systems hand over a leadership first)."""
    process = cluster._processes[node]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def longest_gap(acknowledged: list[float], start: float, end: float) -> float:
    window = [start, *(t for t in acknowledged if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(window))


async def rolling_restart(cluster: Cluster, concurrency: int, round_no: int) -> dict[str, object]:
    leader = cluster.wait_healthy(60)
    workload = Workload(cluster.target, "put", f"roll{round_no}/", make_value(256))
    endpoints = cluster.endpoints
    refused_until = dict.fromkeys(endpoints, 0.0)
    writes = WriteEvents()
    timeout = aiohttp.ClientTimeout(total=0.25)
    restarts: list[dict[str, object]] = []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session,
        asyncio.TaskGroup() as group,
    ):
        for number in range(concurrency):
            group.create_task(
                keep_writing(session, workload, endpoints, number, writes, refused_until, 0.005)
            )
        await asyncio.sleep(2.0)
        started = time.monotonic()
        order = [n for n in NODE_NAMES if n != leader] + [leader]
        for node in order:
            before = await asyncio.to_thread(cluster.wait_healthy, 60)
            stopped_at = time.monotonic()
            await asyncio.to_thread(terminate, cluster, node)
            exited_at = time.monotonic()
            cluster.start_node(node)
            after = await asyncio.to_thread(cluster.wait_healthy, 60)
            healthy_at = time.monotonic()
            await asyncio.sleep(1.0)
            restarts.append(
                {
                    "node": node,
                    "was_leader": node == before,
                    "leader_after": after,
                    "stop_ms": round(1000 * (exited_at - stopped_at)),
                    "back_ms": round(1000 * (healthy_at - exited_at)),
                    "_window": (stopped_at, time.monotonic()),
                }
            )
        finished = time.monotonic()
        writes.stop = True
    acknowledged = sorted(d for _, d, ok in writes.done if ok)
    for restart in restarts:
        start, end = restart.pop("_window")  # type: ignore[misc]
        restart["gap_ms"] = round(1000 * longest_gap(acknowledged, start, end), 1)
        restart["failed_writes"] = sum(
            1 for s, _, ok in writes.done if not ok and start <= s <= end
        )
    return {
        "system": cluster.name,
        "round": round_no,
        "longest_gap_ms": round(1000 * longest_gap(acknowledged, started, finished), 1),
        "acknowledged": sum(1 for _, d, ok in writes.done if ok and started <= d <= finished),
        "failed": sum(1 for s, _, ok in writes.done if not ok and started <= s <= finished),
        "restarts": restarts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-etcd", action="store_true")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="naraft-rolling-"))
    results: list[dict[str, object]] = []
    systems: list[Cluster] = [NaraftCluster(base / "naraft")]
    if not args.skip_etcd:
        systems.append(EtcdCluster(base / "etcd"))
    try:
        for cluster in systems:
            cluster.start()
        for round_no in range(args.rounds):
            for cluster in systems:  # interleaved: both see the same machine load
                result = asyncio.run(rolling_restart(cluster, args.concurrency, round_no))
                results.append(result)
                print(
                    f"{cluster.name:6} round {round_no}: longest write gap "
                    f"{result['longest_gap_ms']} ms, {result['acknowledged']} acknowledged, "
                    f"{result['failed']} failed attempts",
                    flush=True,
                )
                for restart in result["restarts"]:  # type: ignore[attr-defined]
                    print(
                        f"    {restart['node']}{' (leader)' if restart['was_leader'] else ''}:"
                        f" gap {restart['gap_ms']} ms, stop {restart['stop_ms']} ms,"
                        f" back in {restart['back_ms']} ms, failed {restart['failed_writes']},"
                        f" leader after {restart['leader_after']}",
                        flush=True,
                    )
    finally:
        for cluster in systems:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    summary: dict[str, object] = {}
    for name in {str(r["system"]) for r in results}:
        gaps = [float(str(r["longest_gap_ms"])) for r in results if r["system"] == name]
        summary[name] = {"median_longest_gap_ms": statistics.median(gaps), "max": max(gaps)}
    if "naraft" in summary and "etcd" in summary:
        ours = summary["naraft"]["median_longest_gap_ms"]  # type: ignore[index]
        theirs = summary["etcd"]["median_longest_gap_ms"]  # type: ignore[index]
        summary["ratio_naraft_to_etcd"] = round(ours / theirs, 2) if theirs else None
    naraft_gap = summary.get("naraft", {}).get("median_longest_gap_ms")  # type: ignore[attr-defined]
    print(json.dumps(summary))
    print(f"goal: naraft's longest write gap under {GOAL_MS:.0f} ms: "
          f"{'met' if naraft_gap is not None and naraft_gap < GOAL_MS else 'MISSED'}")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
