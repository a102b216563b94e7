# ruff: noqa: T201
"""Ephemeral beats at scale: N instances beating every 5 s across the three nodes.

    .venv/bin/python benchmarks/beats.py [--quick] [--instances 50000] [--out results.json]

What a Nacos 1.x fleet does to its servers: every ephemeral instance sends a light beat
(`PUT /nacos/v1/ns/instance/beat?serviceName=&ip=&port=&clusterName=`, no `beat` JSON, as
Java clients do once the server answers `lightBeatEnabled`) every 5 s to the node its client
talks to. The default, 50,000 instances, is 10,000 beats/s.

1. A 3-node cluster (`clusters.NaraftCluster`), then N ephemeral instances registered through
   the three nodes in turn (`POST /nacos/v1/ns/instance?ephemeral=true`, 64 in flight), in
   services of `--per-service` instances. Each instance starts beating within one interval of
   its registration's answer, at a phase spread evenly over the interval.
2. Once all are registered and one whole interval has passed, `--seconds` are measured:
   beats answered per second against the rate offered, the latency of each beat from its
   write to its answer (p50/p99), the CPU of the three servers and of this generator, and the
   whole machine's busy share (from /proc/stat; the issue's goal: 10,000 beats/s with the
   machine at most half busy).
3. While the beats go on: every service is listed with `healthyOnly=false`. An instance
   missing or unhealthy there, or a beat answered `20404` (unknown instance), was wrongly
   expired: its beats were all sent on time. The leader's term before and after shows
   elections.

The generator is one asyncio process writing pre-built requests, pipelined on keep-alive
connections (8 per node): its own cost per beat is a few microseconds, so the servers, not
the generator, are what is measured. Beats are open-loop: a server that falls behind sees
its answers come later, never fewer beats.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
import procstat
from clusters import NODE_NAMES, NaraftCluster

BEAT_PATH: Final = "/nacos/v1/ns/instance/beat"
INSTANCE_PATH: Final = "/nacos/v1/ns/instance"
LIST_PATH: Final = "/nacos/v1/ns/instance/list"
GROUP: Final = "DEFAULT_GROUP"
TICK_SECONDS: Final = 0.01
REGISTER, BEAT = 0, 1
REGISTRATIONS_IN_FLIGHT: Final = 64
UNKNOWN_INSTANCE: Final = b'"code":20404'
T = TypeVar("T")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(slots=True)
class Fleet:
    """The instances: names and their pre-built requests."""

    count: int
    per_service: int
    registrations: list[bytes] = field(default_factory=list)
    beats: list[bytes] = field(default_factory=list)

    def service(self, index: int) -> str:
        return f"beat-svc-{index // self.per_service:05d}"

    @staticmethod
    def address(index: int) -> tuple[str, int]:
        return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 8000 + index % 7

    def build(self, host: str) -> None:
        for i in range(self.count):
            ip, port = self.address(i)
            query = f"serviceName={self.service(i)}&groupName={GROUP}&ip={ip}&port={port}"
            query += "&clusterName=DEFAULT"
            self.registrations.append(
                _request("POST", f"{INSTANCE_PATH}?{query}&ephemeral=true", host)
            )
            self.beats.append(_request("PUT", f"{BEAT_PATH}?{query}", host))

    @property
    def services(self) -> list[str]:
        return sorted({self.service(i) for i in range(0, self.count, self.per_service)})


def _request(method: str, target: str, host: str) -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: Nacos-Java-Client:v1.4.1\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@dataclass(slots=True)
class Tally:
    """What the answers said, and the schedule the registrations feed."""

    registered: bytearray
    slots: list[list[int]]
    slot_now: int = 0
    measuring: bool = False
    latencies: list[float] = field(default_factory=list)
    answered: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    unknown: set[int] = field(default_factory=set)
    registrations_open: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(REGISTRATIONS_IN_FLIGHT)
    )
    lost: asyncio.Event = field(default_factory=asyncio.Event)  # a node closed a connection

    async def unless_lost(self, work: Coroutine[Any, Any, T]) -> T:
        """`work`, unless a connection to a node is lost first. Then the run fails: a lost
        connection loses its beats in flight, and the run would measure nothing true."""
        task = asyncio.create_task(work)
        lost = asyncio.create_task(self.lost.wait())
        try:
            await asyncio.wait([task, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not task.done():
            task.cancel()
            raise RuntimeError("a node closed a connection mid-run")
        return task.result()

    def answer(self, kind: int, instance: int, status: int, body: bytes, seconds: float) -> None:
        if kind == REGISTER:
            self.registrations_open.release()
            if status == 200 and body == b"ok":
                self.registered[instance] = 1
                # first beat within one interval, at a phase spread evenly over it
                slot = (self.slot_now + 1 + random.randrange(len(self.slots))) % len(self.slots)
                self.slots[slot].append(instance)
            else:
                self.failed[f"register {status} {body[:80]!r}"] += 1
            return
        if status != 200:
            self.failed[f"beat {status} {body[:80]!r}"] += 1
        elif UNKNOWN_INSTANCE in body:
            self.unknown.add(instance)
        if self.measuring:
            self.answered += 1
            self.latencies.append(seconds)


class Pipe(asyncio.Protocol):
    """One keep-alive connection carrying pipelined requests. Answers come back in order,
    so each is matched to the oldest request still in flight."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._pending: list[bytes] = []
        self.in_flight: collections.deque[tuple[float, int, int]] = collections.deque()
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def queue(self, request: bytes, kind: int, instance: int, now: float) -> None:
        self._pending.append(request)
        self.in_flight.append((now, kind, instance))

    def flush(self) -> None:
        if self._pending and self._transport is not None:
            self._transport.write(b"".join(self._pending))
            self._pending.clear()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer
        buffer += data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                return
            status = int(head[9:12])
            body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            sent_at, kind, instance = self.in_flight.popleft()
            self._tally.answer(kind, instance, status, body, now - sent_at)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self._tally.lost.set()

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()


@dataclass(slots=True)
class Window:
    """One measured window: counters and CPU readings at its two ends."""

    seconds: float
    servers_cpu: float
    generator_cpu: float
    machine_busy: float


async def run(
    cluster: NaraftCluster, fleet: Fleet, interval: float, seconds: float, per_node: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    nslots = round(interval / TICK_SECONDS)
    tally = Tally(registered=bytearray(fleet.count), slots=[[] for _ in range(nslots)])
    pipes: list[Pipe] = []
    endpoints = [cluster.endpoint(n) for n in NODE_NAMES]
    for _ in range(per_node):
        for endpoint in endpoints:
            parts = urlsplit(endpoint)
            _, pipe = await loop.create_connection(lambda: Pipe(tally), parts.hostname, parts.port)
            pipes.append(pipe)
    fleet.build(urlsplit(endpoints[0]).netloc)  # Host is not checked against the node
    stop = asyncio.Event()

    async def beat_forever() -> None:
        started = loop.time()
        tick = 0
        while not stop.is_set():
            await asyncio.sleep(max(0.0, started + (tick + 1) * TICK_SECONDS - loop.time()))
            now = time.perf_counter()
            # catch up on every slot that came due (a slow tick skips no beats)
            due_ticks = int((loop.time() - started) / TICK_SECONDS)
            while tick < due_ticks:
                tally.slot_now = tick % nslots
                for i in tally.slots[tally.slot_now]:
                    pipes[i % len(pipes)].queue(fleet.beats[i], BEAT, i, now)
                tick += 1
            for pipe in pipes:
                pipe.flush()

    async def register_all() -> None:
        for i in range(fleet.count):
            await tally.registrations_open.acquire()
            pipe = pipes[i % len(pipes)]
            pipe.queue(fleet.registrations[i], REGISTER, i, time.perf_counter())
            pipe.flush()
        for _ in range(REGISTRATIONS_IN_FLIGHT):  # every answer in
            await tally.registrations_open.acquire()

    term_before = cluster.max_term()
    beating = asyncio.create_task(beat_forever())
    try:
        registering_since = time.monotonic()
        await tally.unless_lost(register_all())
        registration_seconds = time.monotonic() - registering_since
        registered = sum(tally.registered)
        print(f"registered {registered} of {fleet.count} in {registration_seconds:.1f} s")
        await tally.unless_lost(asyncio.sleep(interval))  # every instance beats once
        pids = cluster.pids()
        tally.measuring = True
        cpu0, busy0 = procstat.cpu_snapshot(pids), procstat.machine_busy_seconds()
        own0 = time.process_time()
        t0 = time.monotonic()
        await tally.unless_lost(asyncio.sleep(seconds))
        cpu1, busy1 = procstat.cpu_snapshot(pids), procstat.machine_busy_seconds()
        own1 = time.process_time()
        elapsed = time.monotonic() - t0
        tally.measuring = False
        window = Window(
            seconds=elapsed,
            servers_cpu=sum(procstat.cpu_delta(cpu0, cpu1).values()),
            generator_cpu=own1 - own0,
            machine_busy=busy1 - busy0,
        )
        backlog = sum(len(p.in_flight) for p in pipes)
        health = await tally.unless_lost(check_health(endpoints, fleet))  # beats still going
    finally:
        stop.set()
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        for pipe in pipes:
            pipe.close()
    return {
        "instances": fleet.count,
        "per_service": fleet.per_service,
        "interval_s": interval,
        "registered": registered,
        "registration_s": registration_seconds,
        "offered_per_s": fleet.count / interval,
        "answered_per_s": tally.answered / window.seconds,
        "backlog_at_end": backlog,
        "p50_ms": 1000 * percentile(tally.latencies, 50) if tally.latencies else None,
        "p99_ms": 1000 * percentile(tally.latencies, 99) if tally.latencies else None,
        "max_ms": 1000 * max(tally.latencies) if tally.latencies else None,
        "servers_cores": window.servers_cpu / window.seconds,
        "generator_cores": window.generator_cpu / window.seconds,
        "machine_busy_cores": window.machine_busy / window.seconds,
        "machine_cores": os.cpu_count() or 1,
        "server_us_per_beat": 1e6 * window.servers_cpu / max(1, tally.answered),
        "failed": dict(tally.failed),
        "unknown_instances": len(tally.unknown),
        "elections": cluster.max_term() - term_before,
        **health,
    }


async def check_health(endpoints: list[str], fleet: Fleet) -> dict[str, int]:
    """Every service listed (healthyOnly=false) through the nodes in turn: instances
    listed, and of those, unhealthy."""
    listed = unhealthy = 0
    services = fleet.services
    gate = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def one(index: int, service: str) -> tuple[int, int]:
            params = {"serviceName": service, "groupName": GROUP, "healthyOnly": "false"}
            async with gate, http.get(endpoints[index % 3] + LIST_PATH, params=params) as answer:
                answer.raise_for_status()
                hosts = (await answer.json(content_type=None))["hosts"]
                return len(hosts), sum(1 for h in hosts if not h["healthy"])

        for count, bad in await asyncio.gather(*(one(i, s) for i, s in enumerate(services))):
            listed += count
            unhealthy += bad
    return {"listed": listed, "missing": fleet.count - listed, "unhealthy": unhealthy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5,000 instances")
    parser.add_argument("--instances", type=int, default=50_000)
    parser.add_argument("--per-service", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between beats")
    parser.add_argument("--seconds", type=float, default=30.0, help="the measured window")
    parser.add_argument("--connections", type=int, default=8, help="per node")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.seconds = 5_000, 8.0
    fleet = Fleet(count=args.instances, per_service=args.per_service)
    with tempfile.TemporaryDirectory(prefix="naraft-beats-bench-") as base:
        cluster = NaraftCluster(Path(base))
        try:
            cluster.start()
            quiet = procstat.wait_until_quiet(10.0, cluster.pids())
            print(f"the rest of the machine used {quiet:.2f} cores at the start")
            result = asyncio.run(run(cluster, fleet, args.interval, args.seconds, args.connections))
        finally:
            cluster.stop()
    report(result)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


def report(r: dict[str, Any]) -> None:
    held = (
        r["answered_per_s"] >= 0.99 * r["offered_per_s"]
        and r["backlog_at_end"] < r["offered_per_s"]
    )
    half = r["machine_cores"] / 2
    wrong = r["missing"] + r["unhealthy"] + r["unknown_instances"]
    print(
        f"{r['instances']} ephemeral instances ({r['per_service']} a service), a beat each"
        f" {r['interval_s']:g} s: {r['offered_per_s']:.0f} beats/s offered"
    )
    print(
        f"  answered {r['answered_per_s']:.0f}/s, backlog at the end {r['backlog_at_end']},"
        f" latency p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms max {r['max_ms']:.1f} ms"
    )
    print(
        f"  servers {r['servers_cores']:.2f} cores ({r['server_us_per_beat']:.0f} us a beat),"
        f" generator {r['generator_cores']:.2f}, whole machine {r['machine_busy_cores']:.2f}"
        f" of {r['machine_cores']} cores"
    )
    print(
        f"  listed {r['listed']}, missing {r['missing']}, unhealthy {r['unhealthy']},"
        f" answered 'unknown instance' {r['unknown_instances']}, elections {r['elections']},"
        f" failed answers {sum(r['failed'].values())}"
    )
    print(f"goal: the beats held: {'PASS' if held else 'MISS'}")
    busy = r["machine_busy_cores"] <= half
    print(f"goal: the machine at most half busy ({half:g} cores): {'PASS' if busy else 'MISS'}")
    print(f"goal: no instance wrongly expired: {'PASS' if wrong == 0 else 'MISS'}")


if __name__ == "__main__":
    main()
