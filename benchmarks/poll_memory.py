# ruff: noqa: T201
"""Where the memory of a held config long poll goes: `tracemalloc` inside one node.

    PYTHONPATH=src .venv/bin/python benchmarks/poll_memory.py [--polls 2000] [--top 30]

`configs.py` measures what 10,000 idle polls add to a node's RSS; this says what each one is
made of. One in-process node serves the config API exactly as `naraft server` does (the same
`make_app` and `GuardedSite` on a loopback socket, asyncio's loop), with a state machine
that applies at once (no proposal is made: nothing is published). A client process opens
`--polls` keep-alive connections, each sending one long poll (`Long-Pulling-Timeout:
30000`) on a config that does not exist, so every poll is held. `tracemalloc` runs only
while those connections arrive (after a warm-up of 50), so what it counts is what the held
polls added: the total per poll, then the source lines that allocated most, per poll.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import linecache
import socket
import sys
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlencode

# The in-process node of the config API tests: a proposer that applies at once, a fixed
# clock, the leader's beat table fed directly (run from a checkout, as every benchmark is).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.api.conftest import FakeClock, LocalBeats, guarded_site
from tests.api.test_configs import MachineProposer

from naraft.api import make_app
from naraft.api.edge import EdgeLimits
from naraft.api.v1.configs import ConfigApi
from naraft.configs.listeners import ListenerHub
from naraft.configs.service import ConfigService
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigState
from naraft.machine import NodeStateMachine
from naraft.naming.push import PushTargets
from naraft.naming.service import NamingService
from naraft.naming.state import NamingState
from naraft.state.datums import DatumTable

WARM_UP = 50
HOLD_MS = 30_000


async def _until_held(hub: ListenerHub, count: int, timeout_seconds: float = 60.0) -> None:
    """Until the hub holds `count` polls. It has no event for its count, so this looks ten
    times a second (a measurement tool, not a test)."""
    async with asyncio.timeout(timeout_seconds):
        while hub.held < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _site_path(filename: str) -> str:
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def _serve(polls: int, top: int) -> None:
    datums = DatumTable()
    naming_state = NamingState(datums)
    configs = ConfigState(datums)
    machine = NodeStateMachine(datums, naming_state, configs=configs)
    hub = ListenerHub(configs, max_polls=polls + WARM_UP, max_keys=10)
    proposer = MachineProposer(machine, [hub])
    settings = ConfigSettings(
        max_content_bytes=1 << 20, max_held_polls=polls + WARM_UP, max_poll_keys=10
    )
    api = ConfigApi(
        service=ConfigService(configs, proposer, FakeClock(), settings),
        hub=hub,
        count=lambda _route: None,
    )
    naming = NamingService(naming_state, proposer, FakeClock(), LocalBeats(), PushTargets())
    limits = EdgeLimits(
        header_timeout_seconds=10.0,
        body_timeout_seconds=10.0,
        max_clients=polls + 2 * WARM_UP,
        max_peers=4,
    )
    async with guarded_site(
        make_app(naming, configs=api), limits,
        idle_timeout_seconds=HOLD_MS / 1000 + 60, backlog=4096,
    ) as served:  # fmt: skip
        await _measure(hub, served.port, polls, top)


async def _measure(hub: ListenerHub, port: int, polls: int, top: int) -> None:
    client = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), "--polls", str(polls),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None
    assert client.stdout is not None
    try:
        await client.stdout.readline()  # the warm-up polls are sent
        await _until_held(hub, WARM_UP)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        await client.stdout.readline()  # all sent
        await _until_held(hub, WARM_UP + polls)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        held = hub.held - WARM_UP  # counted before the client leaves: that frees its polls
    finally:
        client.kill()
        await client.wait()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    total = sum(stat.size_diff for stat in stats)
    print(f"{held} polls held: {total / 2**20:.1f} MiB traced, {total / held:,.0f} bytes per poll")
    print(f"{'bytes/poll':>10} {'blocks/poll':>11}  where")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        line = linecache.getline(frame.filename, frame.lineno).strip()[:60]
        print(
            f"{stat.size_diff / held:>10,.0f} {stat.count_diff / held:>11.2f}"
            f"  {_site_path(frame.filename)}:{frame.lineno}  {line}"
        )


def _client(port: int, polls: int) -> None:
    """Open the warm-up polls, wait for the word, open the measured ones, then hold them."""
    body = urlencode({"Listening-Configs": "absent.yaml\x02DEFAULT_GROUP\x02\x01"}).encode()
    request = (
        f"POST /nacos/v1/cs/configs/listener HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Long-Pulling-Timeout: {HOLD_MS}\r\n"
        "Content-Type: application/x-www-form-urlencoded;charset=UTF-8\r\n"
        "User-Agent: Nacos-Python-Client:v2.0.11\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    held: list[socket.socket] = []
    for phase, count in (("warm", WARM_UP), ("held", polls)):
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(request)
            held.append(connection)
        print(phase, flush=True)
        if phase == "warm":
            sys.stdin.readline()
    time.sleep(HOLD_MS / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.polls <= 20_000:
        parser.error("--polls must be 1..20000")
    if args.client:
        _client(args.client, args.polls)
    else:
        asyncio.run(_serve(args.polls, args.top))


if __name__ == "__main__":
    main()
