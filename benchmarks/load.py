"""Closed-loop HTTP load generator, run as its own process so that its CPU is never
charged to the servers: `python benchmarks/load.py --target naraft --op put ...`.

N worker coroutines (asyncio + aiohttp on uvloop) share one counter and issue requests
until `--ops` requests were started or `--max-seconds` of measured time passed: every run
is bounded twice. `--warmup` requests before the measured phase are not counted (they open
the connections). Server CPU is read from /proc/PID/stat of `--watch-pids` at the exact
start and end of the measured phase, in this process. The result is one JSON object on
stdout.

Targets and operations (values are `--value-size` bytes, keys `<prefix><10 digits>`):

| target | op | request |
|---|---|---|
| naraft | put | `PUT /naraft/v1/kv/{key}` `{"value": v}` |
| naraft | get | `GET /naraft/v1/kv/{key}` (linearizable: read index on the leader) |
| naraft | register | `POST /nacos/v1/ns/instance?...&ephemeral=false` (a persistent instance) |
| naraft | list | `GET /nacos/v1/ns/instance/list?serviceName=...` (local read) |
| etcd | put | `POST /v3/kv/put` `{"key": b64, "value": b64}` |
| etcd | get | `POST /v3/kv/range` `{"key": b64}` (linearizable) |
| etcd | get-serializable | the same with `"serializable": true` (local read) |
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

import aiohttp
import procstat

JSON_HEADERS: Final = {"Content-Type": "application/json"}
VALUE_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SERVICES: Final = 100  # registrations spread over this many services (unless --services)
WARMUP_BASE_INDEX: Final = 9_000_000_000


def make_value(size_bytes: int) -> str:
    """A deterministic printable value of `size_bytes` bytes."""
    rng = random.Random(12345)
    return "".join(rng.choice(VALUE_ALPHABET) for _ in range(size_bytes))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    body: bytes | None


class Workload:
    """Turns an operation index into a request, and judges the answer."""

    def __init__(
        self, target: str, op: str, key_prefix: str, value: str, services: int = SERVICES
    ) -> None:
        self.target = target
        self.services = services
        self.op = op
        self.key_prefix = key_prefix
        self._naraft_body = json.dumps({"value": value}).encode()
        self._etcd_value = b64(value)
        self._metadata = json.dumps({"v": value})
        self._quoted_value = quote(value, safe="")

    def key(self, index: int) -> str:
        return f"{self.key_prefix}{index:010d}"

    def request(self, base: str, index: int) -> Request:
        key = self.key(index)
        match (self.target, self.op):
            case ("naraft", "put"):
                return Request("PUT", f"{base}/naraft/v1/kv/{key}", self._naraft_body)
            case ("naraft", "get"):
                return Request("GET", f"{base}/naraft/v1/kv/{key}", None)
            case ("naraft", "register"):
                service, ip, port = self.instance(index)
                url = (
                    f"{base}/nacos/v1/ns/instance?serviceName={service}&ip={ip}&port={port}"
                    "&ephemeral=false"
                )
                return Request("POST", url, None)
            case ("naraft", "publish"):
                # a Nacos config publish, parameters in the query string as clients may send
                url = (
                    f"{base}/nacos/v1/cs/configs?dataId={key}&group=DEFAULT_GROUP"
                    f"&content={self._quoted_value}"
                )
                return Request("POST", url, None)
            case ("naraft", "list"):
                service, _, _ = self.instance(index)
                url = f"{base}/nacos/v1/ns/instance/list?serviceName={service}"
                return Request("GET", url, None)
            case ("etcd", "put"):
                body = f'{{"key":"{b64(key)}","value":"{self._etcd_value}"}}'
                return Request("POST", f"{base}/v3/kv/put", body.encode())
            case ("etcd", "get"):
                return Request("POST", f"{base}/v3/kv/range", f'{{"key":"{b64(key)}"}}'.encode())
            case ("etcd", "get-serializable"):
                body = f'{{"key":"{b64(key)}","serializable":true}}'
                return Request("POST", f"{base}/v3/kv/range", body.encode())
        raise ValueError(f"unknown target/op {self.target}/{self.op}")

    def instance(self, index: int) -> tuple[str, str, int]:
        """Service, ip and port of registration `index` (stored data only: nothing is ever
        sent to that address)."""
        prefix = self.key_prefix.replace("/", "-")
        n = index // self.services
        ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        return f"{prefix}svc-{index % self.services}", ip, 8000 + index % 1000

    def ok(self, status: int, body: bytes) -> bool:
        if status != 200:
            return False
        return not (self.target == "etcd" and b'"error"' in body[:200])


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def run(args: argparse.Namespace) -> dict[str, object]:
    workload = Workload(
        args.target, args.op, args.key_prefix, make_value(args.value_size), args.services
    )
    endpoints: list[str] = args.endpoints
    rng = random.Random(args.seed)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    state = {"next": 0, "rr": 0}
    # https endpoints: verified with --cacert; connections are kept alive, so each worker
    # pays for one handshake, in the warm-up
    context = None if args.cacert is None else ssl.create_default_context(cafile=args.cacert)
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, ssl=True if context is None else context
    )
    timeout = aiohttp.ClientTimeout(total=args.timeout)

    def base() -> str:
        if args.mode == "leader":
            return endpoints[0]
        state["rr"] = (state["rr"] + 1) % len(endpoints)
        return endpoints[state["rr"]]

    def index_of(i: int) -> int:
        if args.key_space > 0:  # reads: random keys of what was written before
            return rng.randrange(args.key_space)
        return args.start_index + i

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, at: str | None = None) -> tuple[bool, str]:
            request = workload.request(at or base(), index)
            headers = dict(JSON_HEADERS) if request.body is not None else {}
            if args.token:
                headers["Authorization"] = f"Bearer {args.token}"
            async with session.request(
                request.method, request.url, data=request.body, headers=headers
            ) as answer:
                body = await answer.read()
                return workload.ok(answer.status, body), str(answer.status)

        async def warm(count: int, worker_number: int, at: str | None = None) -> None:
            for i in range(count):
                # writes in the warm-up use indices far above the measured ones
                index = WARMUP_BASE_INDEX + worker_number * 100_000 + i
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await one(rng.randrange(args.key_space) if args.key_space > 0 else index, at)

        per_worker = max(1, args.warmup // args.concurrency)
        if args.warmup > 0:
            await asyncio.gather(*(warm(per_worker, w) for w in range(args.concurrency)))
            if args.mode == "roundrobin":
                # Every node's pool gets `concurrency` connections now (the most the
                # workers can ever hold to one node), so none is opened, and no TLS
                # handshake made, while measuring.
                for at in endpoints:
                    await asyncio.gather(*(warm(1, w, at) for w in range(args.concurrency)))

        cpu0 = procstat.cpu_snapshot(args.watch_pids)
        busy0 = procstat.machine_busy_seconds()
        client0 = time.process_time()
        t_start = time.perf_counter()
        deadline = t_start + args.max_seconds

        async def worker() -> None:
            while True:
                i = state["next"]
                if i >= args.ops or time.perf_counter() >= deadline:
                    return
                state["next"] = i + 1
                t0 = time.perf_counter()
                try:
                    good, what = await one(index_of(i))
                except TimeoutError:
                    good, what = False, "timeout"
                except aiohttp.ClientError as error:
                    good, what = False, type(error).__name__
                if good:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[what] = errors.get(what, 0) + 1
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t_start
        client_cpu = time.process_time() - client0
        busy = procstat.machine_busy_seconds() - busy0
        cpu1 = procstat.cpu_snapshot(args.watch_pids)

    latencies.sort()
    server_cpu = procstat.cpu_delta(cpu0, cpu1)
    total_server = sum(server_cpu.values())
    ok = len(latencies)

    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(1000 * value, 3)

    return {
        "target": args.target,
        "op": args.op,
        "mode": args.mode,
        "concurrency": args.concurrency,
        "attempted": state["next"],
        "ok": ok,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "ops_per_s": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "max_ms": ms(100),
        "server_cpu_s": {str(pid): round(s, 3) for pid, s in server_cpu.items()},
        "server_cpu_cores": round(total_server / elapsed, 3) if elapsed > 0 else None,
        "server_cpu_ms_per_op": round(1000 * total_server / ok, 4) if ok else None,
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_cores": round(client_cpu / elapsed, 3) if elapsed > 0 else None,
        "client_cpu_ms_per_op": round(1000 * client_cpu / ok, 4) if ok else None,
        "foreign_cpu_cores": round(max(0.0, busy - total_server - client_cpu) / elapsed, 3)
        if elapsed > 0
        else None,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=("naraft", "etcd"), required=True)
    ops = ("put", "get", "get-serializable", "register", "list", "publish")
    p.add_argument("--op", choices=ops, default="put")
    p.add_argument("--endpoints", required=True, help="comma-separated base URLs; leader first")
    p.add_argument("--mode", choices=("leader", "roundrobin"), default="leader")
    p.add_argument("--concurrency", "-c", type=int, default=16)
    p.add_argument("--ops", type=int, default=10_000, help="requests started (hard bound)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="measured time (hard bound)")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--key-prefix", default="bench/")
    p.add_argument("--start-index", type=int, default=0)
    p.add_argument("--services", type=int, default=SERVICES, help="register/list: over N services")
    p.add_argument("--key-space", type=int, default=0, help="read random keys in [0, N)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    p.add_argument("--watch-pids", default="", help="comma-separated server PIDs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cacert", default=None, help="CA (PEM) for https endpoints")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--token", default="", help="naraft: an access token, sent as a Bearer header")
    args = p.parse_args(argv)
    args.endpoints = [e.rstrip("/") for e in args.endpoints.split(",") if e]
    args.watch_pids = [int(x) for x in args.watch_pids.split(",") if x.strip()]
    for endpoint in args.endpoints:
        if urlsplit(endpoint).hostname != "127.0.0.1":
            p.error(f"only 127.0.0.1 endpoints are allowed, not {endpoint}")
    if args.ops <= 0 or args.max_seconds <= 0 or args.concurrency <= 0 or args.services <= 0:
        p.error("--ops, --max-seconds, --concurrency and --services must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
