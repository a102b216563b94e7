"""`run_node(config)` in-process: the wiring serves, subscribes and shuts down.

A standalone node on a loopback port: it elects itself (the election audit records it,
through the replica's role-change subscription), commits a kv write, shows the digest
service's view on /raft/state (the digest is built after the replica and subscribed), takes
a client beat, and the beat keeper's sweep marks a silent ephemeral instance unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest

from naraft.certs import write_cluster_certs
from naraft.config_sources import build_config
from naraft.election_audit import AUDIT_FILE
from naraft.node import StartupError, run_node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_leader(session: aiohttp.ClientSession, base: str) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            async with session.get(f"{base}/nacos/v1/ns/raft/state") as answer:
                state: dict[str, object] = await answer.json()
            if state["role"] == "leader" and state["leader"] == state["id"]:
                return state
            await asyncio.sleep(0.02)


async def register_then_fall_silent(session: aiohttp.ClientSession, base: str) -> None:
    instance = {"serviceName": "s", "ip": "10.0.0.1", "port": "80", "ephemeral": "true"}
    async with session.post(f"{base}/nacos/v1/ns/instance", params=instance) as answer:
        assert (answer.status, await answer.text()) == (200, "ok")
    beat = '{"serviceName": "s", "ip": "10.0.0.1", "port": 80, "cluster": "DEFAULT"}'
    params = {"serviceName": "s", "beat": beat}
    async with session.put(f"{base}/nacos/v1/ns/instance/beat", params=params) as answer:
        assert answer.status == 200, await answer.text()
    detail = {"serviceName": "s", "ip": "10.0.0.1", "port": "80"}
    async with asyncio.timeout(10):
        while True:  # (the list would show it healthy: the protect threshold)
            async with session.get(f"{base}/nacos/v1/ns/instance", params=detail) as answer:
                if not (await answer.json())["healthy"]:
                    return
            await asyncio.sleep(0.05)


async def test_a_standalone_node_wires_serves_and_stops(tmp_path: Path) -> None:
    node_id = f"127.0.0.1:{free_port()}"
    config = build_config(
        {
            "id": node_id,
            "data-dir": tmp_path,
            "standalone": True,
            "tick-ms": 20,
            "sweep-ms": 50,
            "unhealthy-after-ms": 300,
        },
        {},
    )
    ready = asyncio.Event()
    task = asyncio.create_task(run_node(config, ready=ready))
    base = f"http://{node_id}"
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        async with aiohttp.ClientSession() as session:
            state = await wait_for_leader(session, base)
            assert "catchUp" in state  # the digest service's view
            assert "checksum" in state
            async with session.put(f"{base}/naraft/v1/kv/k", data=b'{"value": "v"}') as answer:
                assert answer.status == 200, await answer.text()
            async with session.get(f"{base}/naraft/v1/kv/k") as answer:
                assert (await answer.json())["value"] == "v"
            await register_then_fall_silent(session, base)
        lines = [orjson.loads(line) for line in (tmp_path / AUDIT_FILE).read_bytes().splitlines()]
        assert any(line["role"] == "leader" and line["node"] == node_id for line in lines)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.done()
    # the port and the data directory are released: a second run starts on both
    ready = asyncio.Event()
    again = asyncio.create_task(run_node(config, ready=ready))
    try:
        async with asyncio.timeout(10):
            await ready.wait()
    finally:
        again.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await again


async def test_certificate_files_gone_after_the_checks_stop_the_start_in_one_line(
    tmp_path: Path,
) -> None:
    files = write_cluster_certs(tmp_path / "tls", ["127.0.0.1:1"])["127.0.0.1:1"]
    config = build_config(
        {
            "id": f"127.0.0.1:{free_port()}",
            "data-dir": tmp_path / "data",
            "standalone": True,
            "tls-cert-file": files.cert_file,
            "tls-key-file": files.key_file,
        },
        {},
    )
    files.key_file.unlink()
    with pytest.raises(StartupError, match="cannot load the TLS files"):
        await run_node(config)
    assert not (tmp_path / "data").exists()  # refused before the data directory is touched
