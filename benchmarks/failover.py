"""Leader failover as a client sees it: steady writes, then the leader is killed (`kill -9`)
or paused (SIGSTOP), and we time how long until a write *sent after* the fault is
acknowledged.

`concurrency` writers spread over all three endpoints (followers forward to the leader,
in etcd and in naraft). Every request has a short timeout (`request_timeout_seconds`, the
granularity of the measurement); a writer whose request fails moves to the next endpoint
and retries after `retry_pause_seconds`, skipping endpoints that refused a connection in
the last second. Per fault we record:

- `recovery_ms`: from the fault until the first acknowledged write sent after it;
- `gap_ms`: the longest stretch without any acknowledgement around the fault;
- `new_leader`, `term_before`/`term_after`, the failed attempts after the fault.

Then the killed node is restarted on its data (or the paused one resumed), the cluster
must be healthy again (one leader, everyone caught up), and it settles before the next rep.
Bounded: at most `max_after_seconds` of load after each fault.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import aiohttp
from clusters import Cluster
from load import JSON_HEADERS, Workload, make_value


@dataclass(slots=True)
class FailoverSettings:
    concurrency: int = 8
    before_seconds: float = 3.0
    max_after_seconds: float = 20.0
    after_recovery_seconds: float = 0.5
    settle_seconds: float = 2.0
    request_timeout_seconds: float = 0.25
    retry_pause_seconds: float = 0.005
    value_size_bytes: int = 256


@dataclass(slots=True)
class WriteEvents:
    done: list[tuple[float, float, bool]] = field(default_factory=list)  # (sent, done, ok)
    stop: bool = False
    counter: int = 0


async def keep_writing(
    session: aiohttp.ClientSession,
    workload: Workload,
    endpoints: list[str],
    number: int,
    events: WriteEvents,
    refused_until: dict[str, float],
    pause_seconds: float,
) -> None:
    """One writer until `events.stop`: each attempt recorded in `events.done`; after a
    failure, the next endpoint (skipping one that refused a connection in the last second)."""
    position = number
    while not events.stop:
        now = time.monotonic()
        live = [e for e in endpoints if refused_until[e] <= now] or endpoints
        base = live[position % len(live)]
        events.counter += 1
        request = workload.request(base, events.counter)
        sent = time.monotonic()
        ok = False
        try:
            async with session.request(
                request.method, request.url, data=request.body, headers=JSON_HEADERS
            ) as answer:
                ok = workload.ok(answer.status, await answer.read())
        except aiohttp.ClientConnectorError:
            refused_until[base] = time.monotonic() + 1.0
        except (TimeoutError, aiohttp.ClientError):
            pass
        events.done.append((sent, time.monotonic(), ok))
        if not ok:
            position += 1
            await asyncio.sleep(pause_seconds)


async def one_fault(
    cluster: Cluster, target: str, kind: str, rep: int, settings: FailoverSettings
) -> dict[str, object]:
    """One fault of `kind` ("kill" or "pause") on the current leader; see the module doc."""
    leader = cluster.wait_healthy(60)
    term_before = cluster.max_term()
    workload = Workload(target, "put", f"fo-{kind}{rep}/", make_value(settings.value_size_bytes))
    endpoints = cluster.endpoints
    refused_until = dict.fromkeys(endpoints, 0.0)
    events = WriteEvents()
    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_seconds)

    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session,
        asyncio.TaskGroup() as group,
    ):
        for number in range(settings.concurrency):
            group.create_task(
                keep_writing(
                    session, workload, endpoints, number, events,
                    refused_until, settings.retry_pause_seconds,
                ),
                name=f"writer-{number}",
            )  # fmt: skip
        await asyncio.sleep(settings.before_seconds)
        fault_at = time.monotonic()
        if kind == "kill":
            cluster.kill(leader)
        else:
            cluster.pause(leader)
        recovered_at: float | None = None
        while time.monotonic() < fault_at + settings.max_after_seconds:
            await asyncio.sleep(0.02)
            if recovered_at is None:
                firsts = [d for s, d, ok in events.done if ok and s >= fault_at]
                recovered_at = min(firsts) if firsts else None
            if recovered_at is not None and (
                time.monotonic() > recovered_at + settings.after_recovery_seconds
            ):
                break
        events.stop = True

    acknowledged = sorted(d for _, d, ok in events.done if ok)
    gap_ms: float | None = None
    if recovered_at is not None:
        before = [d for d in acknowledged if d <= fault_at]
        window = before[-1:] + [d for d in acknowledged if fault_at < d <= recovered_at]
        if len(window) >= 2:
            gap_ms = round(1000 * max(b - a for a, b in itertools.pairwise(window)), 1)
    result: dict[str, object] = {
        "system": cluster.name,
        "kind": kind,
        "rep": rep,
        "faulted": leader,
        "recovery_ms": round(1000 * (recovered_at - fault_at), 1)
        if recovered_at is not None
        else None,
        "gap_ms": gap_ms,
        "failed_attempts_after": sum(1 for s, _, ok in events.done if not ok and s >= fault_at),
        "acknowledged": len(acknowledged),
        "term_before": term_before,
    }
    if kind == "kill":
        cluster.start_node(leader)
    else:
        cluster.resume(leader)
    result["new_leader"] = cluster.wait_healthy(60)
    result["term_after"] = cluster.max_term()
    await asyncio.sleep(settings.settle_seconds)
    return result
