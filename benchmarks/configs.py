# ruff: noqa: T201
"""The config service beside etcd 3.4, same machine, same run.

    .venv/bin/python benchmarks/configs.py [--quick] [--out results.json]

1. Publishes/s at c=64 (naraft `POST /nacos/v1/cs/configs` to the leader) beside etcd puts
   at c=64 (`POST /v3/kv/put`) and naraft's own kv puts, each a bounded `load.py` run.
2. Notify latency: a long poll held on a follower, a publish through the leader; the time
   from the publish's acknowledgement to the poll's answer, p50/p99. etcd anchor: a watch
   stream on a follower (JSON gateway `/v3/watch`), a put through the leader, the time from
   the put's acknowledgement to the event. A negative sample (the answer came before the
   acknowledgement) counts as 0.
3. 10,000 idle long polls held on one follower: the server's RSS before and with them held,
   and its CPU while they idle.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import procstat
from clusters import NODE_NAMES, EtcdCluster, NaraftCluster

HERE = Path(__file__).parent
GROUP = "DEFAULT_GROUP"
LISTENER = "/nacos/v1/cs/configs/listener"
CONFIGS = "/nacos/v1/cs/configs"
RAMP_BATCH = 500


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load(cluster: Any, op: str, concurrency: int, ops: int, seconds: float) -> dict[str, Any]:
    leader = cluster.wait_healthy(60)
    endpoints = [cluster.endpoint(leader)] + [
        e for e in cluster.endpoints if e != cluster.endpoint(leader)
    ]
    command = [
        sys.executable, str(HERE / "load.py"), "--target", cluster.name, "--op", op,
        "--endpoints", ",".join(endpoints), "--concurrency", str(concurrency),
        "--ops", str(ops), "--max-seconds", str(seconds), "--warmup", "300",
        "--key-prefix", f"cfg-{op}-", "--watch-pids", ",".join(str(p) for p in cluster.pids()),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load.py failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def split(cluster: Any) -> tuple[str, str]:
    leader = cluster.wait_healthy(60)
    follower = next(n for n in NODE_NAMES if n != leader)
    return cluster.endpoint(leader), cluster.endpoint(follower)


async def naraft_notify(cluster: NaraftCluster, samples: int) -> list[float]:
    leader_url, follower_url = split(cluster)
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        md5 = ""
        for i in range(samples):
            content = f"value {i}"
            probe = f"notify\x02{GROUP}\x02{md5}\x01"
            poll = asyncio.create_task(
                http.post(
                    follower_url + LISTENER,
                    data={"Listening-Configs": probe},
                    headers={"Long-Pulling-Timeout": "30000"},
                )
            )
            await asyncio.sleep(0.05)  # the poll is held (loopback: well within this)
            answer = await http.post(
                leader_url + CONFIGS, data={"dataId": "notify", "group": GROUP, "content": content}
            )
            acked = time.perf_counter()
            text = await answer.text()
            if text != "true":
                raise RuntimeError(f"publish answered {answer.status}: {text[:300]}")
            polled = await poll
            await polled.read()
            latencies.append(max(0.0, time.perf_counter() - acked))
            md5 = hashlib.md5(content.encode()).hexdigest()
        async with http.get(follower_url + "/metrics") as metrics:
            text = await metrics.text()
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("naraft_config_notify_seconds_sum "):
            total = float(line.split()[1])
        elif line.startswith("naraft_config_notify_seconds_count "):
            count = float(line.split()[1])
    if count:
        print(
            f"follower: apply -> poll answered, mean {1000 * total / count:.2f} ms (n={count:.0f})"
        )
    return latencies


async def etcd_notify(cluster: EtcdCluster, samples: int) -> list[float]:
    leader_url, follower_url = split(cluster)
    latencies: list[float] = []
    key = b64("notify")
    async with aiohttp.ClientSession() as http:
        watch = await http.post(
            follower_url + "/v3/watch", data=json.dumps({"create_request": {"key": key}})
        )
        await watch.content.readline()  # {"result": {"created": true}}
        for i in range(samples):
            answer = await http.post(
                leader_url + "/v3/kv/put",
                data=json.dumps({"key": key, "value": b64(f"value {i}")}),
            )
            await answer.read()
            acked = time.perf_counter()
            await watch.content.readline()
            latencies.append(max(0.0, time.perf_counter() - acked))
        watch.close()
    return latencies


async def idle_polls(cluster: NaraftCluster, count: int, idle_seconds: float) -> dict[str, float]:
    _leader_url, follower_url = split(cluster)
    node = next(n for n in NODE_NAMES if cluster.endpoint(n) == follower_url)
    pid = cluster.pid(node)
    rss_before = procstat.rss_mib(pid) or 0.0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def hold(i: int) -> None:
            probe = f"idle-{i}\x02{GROUP}\x02\x01"
            async with http.post(
                follower_url + LISTENER,
                data={"Listening-Configs": probe},
                headers={"Long-Pulling-Timeout": "290000"},
                timeout=aiohttp.ClientTimeout(total=400),
            ) as answer:
                await answer.read()

        # opened 500 at a time, each batch held before the next: 10,000 connections made in
        # one burst from one client process miss the node's 5 s header deadline
        tasks: list[asyncio.Task[None]] = []
        held = 0
        for start in range(0, count, RAMP_BATCH):
            tasks += [asyncio.create_task(hold(i)) for i in range(start, start + RAMP_BATCH)]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                held = await held_polls(http, follower_url)
                if held >= len(tasks):
                    break
                await asyncio.sleep(0.2)
        rss_held = procstat.rss_mib(pid) or 0.0
        cpu0 = procstat.process_cpu_seconds(pid) or 0.0
        await asyncio.sleep(idle_seconds)
        cpu1 = procstat.process_cpu_seconds(pid) or 0.0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "polls": float(held),
        "rss_before_mib": rss_before,
        "rss_held_mib": rss_held,
        "rss_added_mib": rss_held - rss_before,
        "cpu_percent_of_core": 100 * (cpu1 - cpu0) / idle_seconds,
    }


async def held_polls(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith("naraft_config_listeners_held "):
                return int(float(line.split()[1]))
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    samples = 50 if args.quick else 300
    polls = 2000 if args.quick else 10_000
    ops, seconds = (8000, 3.0) if args.quick else (40_000, 10.0)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="naraft-config-bench-") as base:
        naraft = NaraftCluster(Path(base), extra_flags=("--max-connections", "12000"))
        etcd = EtcdCluster(Path(base))
        try:
            naraft.start()
            etcd.start()
            results["etcd_put_c64"] = load(etcd, "put", 64, ops, seconds)
            results["naraft_publish_c64"] = load(naraft, "publish", 64, ops, seconds)
            results["naraft_put_c64"] = load(naraft, "put", 64, ops, seconds)
            results["naraft_notify_s"] = asyncio.run(naraft_notify(naraft, samples))
            results["etcd_watch_s"] = asyncio.run(etcd_notify(etcd, samples))
            results["idle_polls"] = asyncio.run(idle_polls(naraft, polls, 20.0))
        finally:
            naraft.stop()
            etcd.stop()
    put, pub = results["etcd_put_c64"], results["naraft_publish_c64"]
    print(f"{'c=64 writes':<34}{'ops/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    kv = results["naraft_put_c64"]
    for name, run in (("etcd put", put), ("naraft config publish", pub), ("naraft kv put", kv)):
        print(f"{name:<34}{run['ops_per_s']:>10.0f}{run['p50_ms']:>10.1f}{run['p99_ms']:>10.1f}")
    ratio = pub["ops_per_s"] / put["ops_per_s"]
    print(f"publish / put: {ratio:.2f}x (goal >= 1.5x)")
    for name, key in (("naraft publish -> poll answer", "naraft_notify_s"),
                      ("etcd put -> watch event", "etcd_watch_s")):  # fmt: skip
        values = results[key]
        print(
            f"{name:<34} p50 {1000 * percentile(values, 50):6.2f} ms"
            f"  p99 {1000 * percentile(values, 99):6.2f} ms  (n={len(values)})"
        )
    idle = results["idle_polls"]
    print(
        f"{int(idle['polls'])} idle long polls on one node: +{idle['rss_added_mib']:.1f} MiB RSS "
        f"({idle['rss_before_mib']:.1f} -> {idle['rss_held_mib']:.1f}), "
        f"{idle['cpu_percent_of_core']:.2f} % of a core idle (goal <= 100 MiB, <= 5 %)"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
