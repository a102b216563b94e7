# ruff: noqa: T201
"""What 2.x gRPC connections cost a naraft node, beside the v1 HTTP beat model.

    .venv/bin/python benchmarks/grpc_connections.py [--quick] [--clients-per-node N] [--out F]

A 3-node naraft cluster; N gRPC clients per node (`GrpcTestClient`, one connection each),
held by worker processes (`--per-worker` clients each: many channels in one Python process
cost a lot of client CPU). Client k connects to node k % 3, registers one ephemeral
instance (`InstanceRequest` registerInstance, service `bench-svc-<k % S>`) and subscribes
(`SubscribeServiceRequest`) to `bench-fan-<(k // 3) % F>`, F chosen so that every fan
service has about `--fan-subscribers` subscribers spread over the three nodes.

Measured: per-node RSS before and with the connections, per 1,000; each node's CPU while
they idle; registrations/s with `--concurrency` in flight (server and client CPU per
registration); push fan-out: a new instance of `bench-fan-0` registered through the leader,
the time from that write's acknowledgement to each subscriber's NotifySubscriberRequest
carrying it (`--changes` times; goal p99 <= 100 ms). Then, on a fresh cluster, the same N
on the v1 model: `POST /nacos/v1/ns/instance` and a light beat every 5 s each
(`PUT /nacos/v1/ns/instance/beat`): RSS, CPU while beating, registrations/s.

Workers speak one JSON object per line on stdin/stdout (`--worker`). Arrival times are
CLOCK_MONOTONIC, which all processes of the machine share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import procstat
import spy
from clusters import NODE_NAMES, NaraftCluster

from naraft.grpc.client import GrpcTestClient, grpc_address

HERE = Path(__file__).parent
NAMESPACE = "public"
GROUP = "DEFAULT_GROUP"
FAN_GOAL_P99_S = 0.100
BEAT_INTERVAL_S = 5.0
BEAT_CONNECTIONS = 32
KEEP_ALIVE_S = 5.0  # a 2.x SDK's keepAliveTime: a HealthCheckRequest after 5 s of silence


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ip_of(k: int) -> str:
    return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"


def instance_body(service: str, ip: str, kind: str = "registerInstance") -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "groupName": GROUP,
        "serviceName": service,
        "type": kind,
        "instance": {
            "ip": ip,
            "port": 8080,
            "weight": 1.0,
            "healthy": True,
            "enabled": True,
            "ephemeral": True,
            "clusterName": "DEFAULT",
            "metadata": {},
        },
    }


def subscribe_body(service: str) -> dict[str, Any]:
    return {
        "namespace": NAMESPACE,
        "groupName": GROUP,
        "serviceName": service,
        "clusters": "",
        "subscribe": True,
    }


def self_usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


# --------------------------------------------------------------------------- worker


@dataclass
class Worker:
    """One worker process: its clients, their subscriptions, the pushes they saw."""

    grpc_endpoints: list[str]
    http_endpoints: list[str]
    ids: list[int]
    services: int
    fans: int
    clients: dict[int, GrpcTestClient] = field(default_factory=dict)
    drains: list[asyncio.Task[None]] = field(default_factory=list)
    # (service, ip) -> client id -> first arrival (monotonic)
    seen: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    fan_members: dict[str, int] = field(default_factory=dict)  # service -> subscribers here
    http: aiohttp.ClientSession | None = None
    beaters: list[asyncio.Task[None]] = field(default_factory=list)
    beats: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    beat_errors: list[str] = field(default_factory=list)

    def fan_of(self, k: int) -> str:
        return f"bench-fan-{(k // 3) % self.fans}"

    async def bounded(self, concurrency: int, job: Any, ids: list[int]) -> dict[str, Any]:
        """Run `job(k)` for every id with at most `concurrency` in flight."""
        gate = asyncio.Semaphore(max(1, concurrency))
        errors: list[str] = []
        latencies: list[float] = []

        async def one(k: int) -> None:
            async with gate:
                t0 = time.monotonic()
                try:
                    await job(k)
                    latencies.append(time.monotonic() - t0)
                except Exception as error:  # counted and sampled
                    errors.append(f"{type(error).__name__}: {str(error)[:200]}")

        cpu0 = self_usage()["cpu_s"]
        start = time.monotonic()
        await asyncio.gather(*(one(k) for k in ids))
        end = time.monotonic()
        return {
            "ok": len(latencies),
            "failed": len(errors),
            "errors": errors[:3],
            "start": start,
            "end": end,
            "cpu_s": self_usage()["cpu_s"] - cpu0,
            "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99),
        }

    async def connect_one(self, k: int) -> None:
        client = GrpcTestClient(self.grpc_endpoints[k % 3], timeout_seconds=30.0)
        await client.connect()
        self.clients[k] = client
        self.drains.append(asyncio.create_task(self.drain(k, client)))

    async def drain(self, k: int, client: GrpcTestClient) -> None:
        """Record when each pushed instance of a fan service first reached this client
        (GrpcTestClient has answered the push already)."""
        while True:
            push = await client.pushes.get()
            arrived = time.monotonic()
            if push.type != "NotifySubscriberRequest":
                continue
            service = str(push.body.get("serviceName", ""))
            if not service.startswith("bench-fan-"):
                continue
            hosts = push.body.get("serviceInfo", {}).get("hosts", [])
            for host in hosts:
                self.seen.setdefault((service, str(host.get("ip"))), {}).setdefault(k, arrived)

    async def register_one(self, k: int) -> None:
        answer = await self.clients[k].request(
            "InstanceRequest", instance_body(f"bench-svc-{k % self.services}", ip_of(k))
        )
        if not answer.ok:
            raise RuntimeError(f"{answer.type} {answer.body}")

    async def subscribe_one(self, k: int) -> None:
        answer = await self.clients[k].request(
            "SubscribeServiceRequest", subscribe_body(self.fan_of(k))
        )
        if not answer.ok:
            raise RuntimeError(f"{answer.type} {answer.body}")
        self.fan_members[self.fan_of(k)] = self.fan_members.get(self.fan_of(k), 0) + 1

    async def keepalive(self, live: list[int], seconds: float) -> dict[str, Any]:
        """What an idle 2.x SDK sends: a HealthCheckRequest after KEEP_ALIVE_S of silence,
        each client on its own schedule (starts spread over one period), for `seconds`."""
        stop_at = time.monotonic() + seconds
        counts = {"ok": 0, "failed": 0}
        cpu0 = self_usage()["cpu_s"]

        async def one(i: int, k: int) -> None:
            await asyncio.sleep(KEEP_ALIVE_S * i / max(1, len(live)))
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    answer = await self.clients[k].request("HealthCheckRequest", {})
                    counts["ok" if answer.ok else "failed"] += 1
                except Exception:  # counted
                    counts["failed"] += 1
                await asyncio.sleep(max(0.0, KEEP_ALIVE_S - (time.monotonic() - started)))

        await asyncio.gather(*(one(i, k) for i, k in enumerate(live)))
        return {**counts, "cpu_s": self_usage()["cpu_s"] - cpu0}

    async def fan_wait(self, service: str, ip: str, wait_s: float) -> dict[str, Any]:
        want = self.fan_members.get(service, 0)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if len(self.seen.get((service, ip), {})) >= want:
                break
            await asyncio.sleep(0.01)
        arrivals = list(self.seen.get((service, ip), {}).values())
        return {"arrivals": arrivals, "missing": want - len(arrivals)}

    async def http_register(self, concurrency: int) -> dict[str, Any]:
        """Register every instance over HTTP (`concurrency` in flight); each starts beating
        every BEAT_INTERVAL_S right after its registration, as a 1.x SDK does, on up to
        BEAT_CONNECTIONS keep-alive connections, until http_stop."""
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=BEAT_CONNECTIONS))
        gate = asyncio.Semaphore(max(1, concurrency))
        http = self.http

        def params(k: int) -> dict[str, str]:
            service = f"bench-http-{k % self.services}"
            return {"serviceName": service, "ip": ip_of(k), "port": "8080"}

        async def beater(k: int) -> None:
            while True:
                await asyncio.sleep(BEAT_INTERVAL_S)
                base = self.http_endpoints[k % 3]
                try:
                    async with http.put(
                        f"{base}/nacos/v1/ns/instance/beat", params=params(k)
                    ) as answer:
                        text = await answer.text()
                    if answer.status != 200 or '"code":10200' not in text.replace(" ", ""):
                        raise RuntimeError(f"{answer.status} {text[:200]}")
                    self.beats["ok"] += 1
                except Exception as error:  # counted and sampled
                    self.beats["failed"] += 1
                    if len(self.beat_errors) < 3:
                        self.beat_errors.append(f"{type(error).__name__}: {str(error)[:200]}")

        async def register(k: int) -> None:
            base = self.http_endpoints[k % 3]
            async with (
                gate,
                http.post(
                    f"{base}/nacos/v1/ns/instance", params={**params(k), "ephemeral": "true"}
                ) as answer,
            ):
                text = await answer.text()
            if answer.status != 200 or text != "ok":
                raise RuntimeError(f"{answer.status} {text[:200]}")
            self.beaters.append(asyncio.create_task(beater(k)))

        return await self.bounded(concurrency, register, self.ids)

    async def http_stop(self) -> dict[str, Any]:
        for task in self.beaters:
            task.cancel()
        await asyncio.gather(*self.beaters, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        return {**self.beats, "errors": self.beat_errors, **self_usage()}

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command["cmd"]
        concurrency = int(command.get("concurrency", 16))
        if cmd == "connect":
            return await self.bounded(concurrency, self.connect_one, self.ids)
        live = [k for k in self.ids if k in self.clients]
        if cmd == "register":
            return await self.bounded(concurrency, self.register_one, live)
        if cmd == "subscribe":
            return await self.bounded(concurrency, self.subscribe_one, live)
        if cmd == "keepalive":
            return await self.keepalive(live, float(command["seconds"]))
        if cmd == "fan":
            return await self.fan_wait(command["service"], command["ip"], command["timeout"])
        if cmd == "http_register":
            return await self.http_register(concurrency)
        if cmd == "http_stop":
            return await self.http_stop()
        if cmd == "usage":
            ended = sum(1 for c in self.clients.values() if c.stream_ended.is_set())
            return {
                **self_usage(),
                "clients": len(self.clients),
                "streams_ended": ended,
                "fds": len(os.listdir("/proc/self/fd")),
            }
        if cmd == "close":
            for task in self.drains:
                task.cancel()
            await asyncio.gather(
                *(c.close() for c in self.clients.values()), return_exceptions=True
            )
            return {"closed": len(self.clients)}
        raise ValueError(f"unknown command {cmd}")


async def worker_main(spec: dict[str, Any]) -> None:
    worker = Worker(
        grpc_endpoints=spec["grpc"],
        http_endpoints=spec["http"],
        ids=spec["ids"],
        services=spec["services"],
        fans=spec["fans"],
    )
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        try:
            reply = await worker.handle(command)
        except Exception as error:  # reported to the parent
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if command["cmd"] == "close":
            return


# --------------------------------------------------------------------------- parent


class Workers:
    """The worker processes, addressed all at once: `ask` sends one command to each and
    gathers the replies."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for spec in specs
        ]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    async def ask(self, command: dict[str, Any], limit_s: float = 600.0) -> list[dict[str, Any]]:
        def one(process: subprocess.Popen[str]) -> dict[str, Any]:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                return {"error": f"worker {process.pid} exited ({process.poll()})"}
            reply: dict[str, Any] = json.loads(line)
            return reply

        async with asyncio.timeout(limit_s):
            replies = await asyncio.gather(*(asyncio.to_thread(one, p) for p in self.processes))
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(reply["error"])
        return list(replies)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def summarize(
    phase: str,
    replies: list[dict[str, Any]],
    seconds_override: float | None = None,
    server_cpu_s: float | None = None,
) -> dict[str, Any]:
    ok = sum(r["ok"] for r in replies)
    failed = sum(r["failed"] for r in replies)
    seconds = seconds_override or (
        max(r["end"] for r in replies) - min(r["start"] for r in replies)
    )
    client_cpu = sum(r["cpu_s"] for r in replies)
    errors = [e for r in replies for e in r.get("errors", [])][:3]
    out = {
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "per_s": ok / seconds if seconds else 0.0,
        "client_cpu_ms_per_op": 1000 * client_cpu / max(1, ok),
        "p50_ms_worst_worker": max(r["p50_ms"] for r in replies),
        "p99_ms_worst_worker": max(r["p99_ms"] for r in replies),
        "errors": errors,
    }
    if server_cpu_s is not None:
        out["server_cpu_ms_per_op"] = 1000 * server_cpu_s / max(1, ok)
    line = (
        f"{phase:<26} {ok:>6} ok {failed:>4} failed in {seconds:6.1f} s = {out['per_s']:7.1f}/s"
        f"  client {out['client_cpu_ms_per_op']:.2f} ms CPU/op"
    )
    if server_cpu_s is not None:
        line += f"  servers {out['server_cpu_ms_per_op']:.2f} ms CPU/op"
    print(line)
    if errors:
        print(f"  errors, e.g.: {errors}")
    return out


def node_cpu(cluster: NaraftCluster) -> dict[str, float | None]:
    return {n: procstat.process_cpu_seconds(cluster.pid(n)) for n in NODE_NAMES}


def cpu_diff(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, float]:
    return {n: (b[n] or 0.0) - (a[n] or 0.0) for n in NODE_NAMES}


async def measure_window(
    cluster: NaraftCluster, seconds: float, worker_pids: list[int]
) -> dict[str, Any]:
    cpu0, busy0, t0 = node_cpu(cluster), procstat.machine_busy_seconds(), time.monotonic()
    wcpu0 = procstat.cpu_snapshot(worker_pids)
    await asyncio.sleep(seconds)
    cpu1, busy1, t1 = node_cpu(cluster), procstat.machine_busy_seconds(), time.monotonic()
    wcpu = sum(procstat.cpu_delta(wcpu0, procstat.cpu_snapshot(worker_pids)).values())
    nodes = cpu_diff(cpu0, cpu1)
    elapsed = t1 - t0
    return {
        "seconds": elapsed,
        "node_cpu_percent": {n: 100 * v / elapsed for n, v in nodes.items()},
        "workers_cpu_percent": 100 * wcpu / elapsed,
        "foreign_cores": (busy1 - busy0 - sum(nodes.values()) - wcpu) / elapsed,
    }


def worker_specs(
    cluster: NaraftCluster, total: int, per_worker: int, services: int, fans: int
) -> list[dict[str, Any]]:
    grpc = [grpc_address(e.removeprefix("http://")) for e in cluster.endpoints]
    ids = list(range(total))
    return [
        {
            "grpc": grpc,
            "http": cluster.endpoints,
            "ids": ids[i : i + per_worker],
            "services": services,
            "fans": fans,
        }
        for i in range(0, total, per_worker)
    ]


def print_nodes(
    title: str,
    leader: str,
    before: dict[str, float | None],
    after: dict[str, float | None],
    idle: dict[str, Any],
    per_node: int,
) -> dict[str, Any]:
    print(f"{title}: {per_node} per node")
    print(
        f"  {'node':<10}{'RSS before':>12}{'RSS after':>12}{'MiB/1000':>10}"
        f"{'CPU %':>9}{'% /1000':>9}"
    )
    rows = {}
    for n in NODE_NAMES:
        b, a = before[n] or 0.0, after[n] or 0.0
        per_k = (a - b) * 1000 / max(1, per_node)
        cpu = idle["node_cpu_percent"][n]
        role = f"{n}{'*' if n == leader else ''}"
        cpu_k = cpu * 1000 / max(1, per_node)
        print(f"  {role:<10}{b:>12.1f}{a:>12.1f}{per_k:>10.1f}{cpu:>9.2f}{cpu_k:>9.2f}")
        rows[n] = {
            "rss_before_mib": b,
            "rss_after_mib": a,
            "mib_per_1000": per_k,
            "cpu_percent": cpu,
            "cpu_percent_per_1000": cpu_k,
        }
    print(
        f"  (* leader; CPU over {idle['seconds']:.1f} s; client workers "
        f"{idle['workers_cpu_percent']:.1f} %, others on the machine "
        f"{idle['foreign_cores']:.2f} cores)"
    )
    return {"nodes": rows, "window": idle}


async def grpc_phase(
    cluster: NaraftCluster, args: argparse.Namespace, total: int
) -> dict[str, Any]:
    leader = cluster.wait_healthy(60)
    fans = max(1, total // args.fan_subscribers)
    specs = worker_specs(cluster, total, args.per_worker, args.services, fans)
    rss_before = cluster.rss_mib()
    workers = Workers(specs)
    per = max(1, args.concurrency // len(specs))
    results: dict[str, Any] = {"workers": len(specs), "fan_services": fans}
    try:
        print(f"gRPC: {total} clients in {len(specs)} worker processes, {per} in flight each")
        cpu0 = node_cpu(cluster)
        replies = await workers.ask({"cmd": "connect", "concurrency": per})
        results["connect"] = summarize(
            "connect (handshake)",
            replies,
            server_cpu_s=sum(cpu_diff(cpu0, node_cpu(cluster)).values()),
        )
        cpu0 = node_cpu(cluster)
        replies = await workers.ask({"cmd": "register", "concurrency": per})
        results["register"] = summarize(
            "register (InstanceRequest)",
            replies,
            server_cpu_s=sum(cpu_diff(cpu0, node_cpu(cluster)).values()),
        )
        cpu0 = node_cpu(cluster)
        replies = await workers.ask({"cmd": "subscribe", "concurrency": per})
        results["subscribe"] = summarize(
            "subscribe", replies, server_cpu_s=sum(cpu_diff(cpu0, node_cpu(cluster)).values())
        )
        await asyncio.sleep(2)  # let the last forwards and beats settle
        rss_after = cluster.rss_mib()
        idle = await measure_window(cluster, args.idle_seconds, workers.pids())
        results["idle"] = print_nodes(
            "gRPC connections idle", leader, rss_before, rss_after, idle, total // 3
        )
        asking = asyncio.create_task(
            workers.ask({"cmd": "keepalive", "seconds": args.idle_seconds + KEEP_ALIVE_S + 1})
        )
        await asyncio.sleep(KEEP_ALIVE_S)  # every client has sent one
        window = await measure_window(cluster, args.idle_seconds, workers.pids())
        checks = await asking
        sent, failed = sum(r["ok"] for r in checks), sum(r["failed"] for r in checks)
        results["keepalive"] = print_nodes(
            f"gRPC connections idle with an SDK's HealthCheckRequest every {KEEP_ALIVE_S:.0f} s",
            leader, rss_before, cluster.rss_mib(), window, total // 3,
        )  # fmt: skip
        print(f"  health checks: {sent} ok, {failed} failed")
        results["keepalive"]["checks"] = {"ok": sent, "failed": failed}
        results["fanout"] = await fanout(cluster, workers, args, fans, leader, total)
        usage = await workers.ask({"cmd": "usage"})
        results["worker_usage"] = usage
        ended = sum(u["streams_ended"] for u in usage)
        print(
            f"client workers: max RSS {max(u['rss_mib'] for u in usage):.0f} MiB, "
            f"{sum(u['cpu_s'] for u in usage):.1f} CPU s in all, "
            f"max fds {max(u['fds'] for u in usage)}, streams ended early: {ended}"
        )
        await workers.ask({"cmd": "close"}, limit_s=120)
    finally:
        workers.stop()
    return results


async def fanout(
    cluster: NaraftCluster,
    workers: Workers,
    args: argparse.Namespace,
    fans: int,
    leader: str,
    total: int,
) -> dict[str, Any]:
    service = "bench-fan-0"
    subscribers = len([k for k in range(total) if (k // 3) % fans == 0])
    latencies: list[float] = []
    early = missing = 0
    address = grpc_address(cluster.endpoint(leader).removeprefix("http://"))
    cpu0, wcpu0 = node_cpu(cluster), procstat.cpu_snapshot(workers.pids())
    busy0, t0 = procstat.machine_busy_seconds(), time.monotonic()
    follower = next(n for n in NODE_NAMES if n != leader)
    profiler = start_profile(cluster.pid(follower), args.profile_dir)
    async with GrpcTestClient(address, timeout_seconds=30.0) as writer:
        for i in range(args.changes):
            ip = f"10.250.{i // 256}.{i % 256}"
            answer = await writer.request("InstanceRequest", instance_body(service, ip))
            acked = time.monotonic()
            if not answer.ok:
                raise RuntimeError(f"fan write answered {answer.type} {answer.body}")
            replies = await workers.ask(
                {"cmd": "fan", "service": service, "ip": ip, "timeout": 15.0}
            )
            for reply in replies:
                missing += reply["missing"]
                for arrived in reply["arrivals"]:
                    early += arrived < acked
                    latencies.append(max(0.0, arrived - acked))
            await asyncio.sleep(0.2)
    by_node = cpu_diff(cpu0, node_cpu(cluster))
    server_cpu = sum(by_node.values())
    worker_cpu = sum(procstat.cpu_delta(wcpu0, procstat.cpu_snapshot(workers.pids())).values())
    busy_cores = (procstat.machine_busy_seconds() - busy0) / (time.monotonic() - t0)
    if profiler is not None:
        stop_profile(profiler, f"follower {follower} during the fan-out")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    held = p99 <= FAN_GOAL_P99_S and missing == 0
    pushes = len(latencies)
    print(
        f"push fan-out: {args.changes} changes of {service} ({subscribers} subscribers over 3 "
        f"nodes, write through the leader {leader}): p50 {1000 * p50:.1f} ms  p99 "
        f"{1000 * p99:.1f} ms  max {1000 * max(latencies, default=0):.1f} ms; "
        f"{pushes} pushes seen, {missing} missing, {early} before the ack"
    )
    print(
        f"  goal p99 <= {1000 * FAN_GOAL_P99_S:.0f} ms: {'held' if held else 'MISSED'}; "
        f"servers {1000 * server_cpu / max(1, pushes):.2f} ms CPU per push delivered"
    )
    per_change = {n: 1000 * v / max(1, args.changes) for n, v in by_node.items()}
    shares = ", ".join(f"{n}{'*' if n == leader else ''} {v:.0f}" for n, v in per_change.items())
    print(
        f"  server CPU per change (ms): {shares}; the subscribers' workers "
        f"{1000 * worker_cpu / max(1, pushes):.2f} ms CPU per push received; "
        f"machine busy {busy_cores:.2f} of {os.cpu_count()} cores"
    )
    return {
        "subscribers": subscribers,
        "changes": args.changes,
        "p50_s": p50,
        "p99_s": p99,
        "max_s": max(latencies, default=0.0),
        "pushes": pushes,
        "missing": missing,
        "before_ack": early,
        "goal_p99_s": FAN_GOAL_P99_S,
        "goal_held": held,
        "server_cpu_ms_per_push": 1000 * server_cpu / max(1, pushes),
        "server_cpu_ms_per_change": per_change,
        "client_cpu_ms_per_push": 1000 * worker_cpu / max(1, pushes),
        "machine_busy_cores": busy_cores,
    }


Profiler = tuple[subprocess.Popen[bytes], Path]


def start_profile(pid: int, out_dir: Path | None) -> Profiler | None:
    """py-spy (--gil: where the Python CPU goes) on `pid` until stop_profile."""
    if out_dir is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found (pip install py-spy): no profile")
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / f"fanout-{pid}.folded"
    command = [py_spy, "record", "--pid", str(pid), "--gil", "--rate", "200",
               "--format", "raw", "--output", str(raw)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, raw


def stop_profile(profiler: Profiler, what: str) -> None:
    process, raw = profiler
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if raw.exists():
        print(f"== py-spy --gil of the {what} ({raw})")
        spy.print_summary(spy.summarize(raw, 25), 25)


async def http_phase(
    cluster: NaraftCluster, args: argparse.Namespace, total: int
) -> dict[str, Any]:
    leader = cluster.wait_healthy(60)
    specs = worker_specs(cluster, total, args.per_worker, args.services, 1)
    rss_before = cluster.rss_mib()
    workers = Workers(specs)
    per = max(1, args.concurrency // len(specs))
    results: dict[str, Any] = {"workers": len(specs)}
    try:
        print(f"HTTP v1: {total} instances from {len(specs)} worker processes")
        cpu0, beat_start = node_cpu(cluster), time.monotonic()
        replies = await workers.ask({"cmd": "http_register", "concurrency": per})
        results["register"] = summarize(
            "register (POST instance)",
            replies,
            server_cpu_s=sum(cpu_diff(cpu0, node_cpu(cluster)).values()),
        )
        await asyncio.sleep(BEAT_INTERVAL_S)  # the last registered has beaten once too
        window = await measure_window(cluster, args.beat_seconds, workers.pids())
        rss_after = cluster.rss_mib()
        replies = await workers.ask({"cmd": "http_stop"})
        beats = sum(r["ok"] for r in replies)
        failed = sum(r["failed"] for r in replies)
        errors = [e for r in replies for e in r["errors"]][:3]
        beat_s = time.monotonic() - beat_start
        rate, due = beats / beat_s, total / BEAT_INTERVAL_S
        print(
            f"beats: {beats} ok, {failed} failed in {beat_s:.0f} s from the first registration"
            f" = {rate:.0f}/s (due once all beat: {due:.0f}/s)"
            f"{', e.g. ' + str(errors) if errors else ''}"
        )
        results["beats"] = {"ok": beats, "failed": failed, "errors": errors,
                            "per_s": rate, "due_per_s": due}  # fmt: skip
        results["beating"] = print_nodes(
            f"HTTP instances beating every {BEAT_INTERVAL_S:.0f} s",
            leader,
            rss_before,
            rss_after,
            window,
            total // 3,
        )
    finally:
        workers.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (100 per node)")
    parser.add_argument("--clients-per-node", type=int, help="default 1000 (--quick: 100)")
    parser.add_argument("--per-worker", type=int, default=500, help="clients per worker process")
    parser.add_argument("--services", type=int, default=100, help="S: bench-svc-<k %% S>")
    parser.add_argument("--fan-subscribers", type=int, help="per fan service (default 1000)")
    parser.add_argument("--concurrency", type=int, default=64, help="in flight, all workers")
    parser.add_argument("--changes", type=int, help="fan-out samples (default 20)")
    parser.add_argument("--idle-seconds", type=float, help="default 10")
    parser.add_argument("--beat-seconds", type=float, help="default 15")
    parser.add_argument("--skip-http", action="store_true", help="only the gRPC phase")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--profile-dir", type=Path, help="py-spy a follower during fan-out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        asyncio.run(worker_main(json.loads(args.worker)))
        return
    per_node = args.clients_per_node or (100 if args.quick else 1000)
    args.fan_subscribers = args.fan_subscribers or min(1000, 3 * per_node)
    args.changes = args.changes or (5 if args.quick else 20)
    args.idle_seconds = args.idle_seconds or (5.0 if args.quick else 10.0)
    args.beat_seconds = args.beat_seconds or (5.0 if args.quick else 15.0)
    if args.quick:
        args.per_worker = min(args.per_worker, 100)
    total = 3 * per_node
    flags = (
        "--max-connections",
        str(max(1000, 2 * total)),
        "--grpc-max-connections",
        str(max(20_000, 2 * per_node)),
    )
    results: dict[str, Any] = {"clients_per_node": per_node, "total": total}
    with tempfile.TemporaryDirectory(prefix="naraft-grpc-bench-") as base:
        cluster = NaraftCluster(Path(base) / "grpc", extra_flags=flags)
        try:
            cluster.start()
            results["grpc"] = asyncio.run(grpc_phase(cluster, args, total))
        finally:
            cluster.stop()
        if not args.skip_http:
            cluster = NaraftCluster(Path(base) / "http", extra_flags=flags)
            try:
                cluster.start()
                results["http"] = asyncio.run(http_phase(cluster, args, total))
            finally:
                cluster.stop()
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
