"""Catch-up and restart benchmarks for compaction and digest sync (README: "Benchmarks:
catch-up and restart").

    .venv/bin/python benchmarks/catchup.py                       # both, 100k keys / 1M instances
    .venv/bin/python benchmarks/catchup.py --only catchup --keys 20000
    .venv/bin/python benchmarks/catchup.py --only restart --instances 200000

1. catch-up: two members' stores are seeded with the same applied state, `--keys` kv datums
   (64-byte values) at index N with the log compacted through N (what a cluster that took N
   writes and compacted holds); they elect a leader; the third member starts with an empty
   data directory (it missed all N writes) and must catch up by digest sync. Measured: from
   its process start until it has applied N (and reports a completed catch-up); the sync's
   own time (digest + fetch + install); peak RSS (VmHWM) of the follower and the leader.
   `--live-writes W` also writes W keys through the leader while the follower catches up.
2. restart: a standalone node's store is seeded with `--instances` persistent instances in
   services of `--per-service` each (real naming datums, as registrations write them).
   Measured: from process start until it leads and answers an instance-list query; peak RSS.

Seeding writes the SQLite files directly with `SqliteStore` (the same code a node uses),
because proposing a million registrations over HTTP would take longer than the benchmark.
Everything binds 127.0.0.1 on free ports; data goes to a temp dir removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from naraft.client import INSTANCE_LIST_PATH, LEADER_PATH, STATE_PATH, kv_path, try_status
from naraft.cluster import NodeProcess, NodeSpec, agreed_leader, free_ports, write_secret_file
from naraft.naming.keys import ServiceKey, instance_datum_key, service_meta_key
from naraft.naming.model import Instance, Service
from naraft.naming.records import encode_instance, encode_service
from naraft.raft import HardState, Index, SnapshotMeta, Term
from naraft.state.datums import Datum
from naraft.state.kv import datum_key
from naraft.storage.base import WriteBatch
from naraft.storage.sqlite import open_store

SECRET = "catchup-benchmark-secret"


def get_json(url: str, timeout: float = 5.0) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            data = json.loads(answer.read())
            return data if isinstance(data, dict) else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def peak_rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def seed(path: Path, node_id: str, datums: dict[str, Datum], index: int) -> None:
    store = open_store(path)
    try:
        store.set_node_id(node_id)
        store.write(
            WriteBatch(
                hard_state=HardState(term=Term(1), voted_for=None, commit=Index(index)),
                snapshot=SnapshotMeta(index=Index(index), term=Term(1)),
                replace_datums=datums,
                applied_index=Index(index),
            )
        )
    finally:
        store.close()


def start(member: str, peers: list[str], data: Path, secret_file: Path) -> NodeProcess:
    alone = len(peers) == 1
    node = NodeProcess(
        NodeSpec(
            node_id=member,
            data_dir=data,
            standalone=alone,
            peers=() if alone else tuple(peers),
            secret_file=None if alone else secret_file,
        )
    )
    node.start()
    return node


def stop(processes: list[NodeProcess]) -> None:
    for process in processes:
        process.terminate()


def bench_catchup(root: Path, keys: int, live_writes: int) -> dict[str, object]:
    ports = free_ports(3)
    members = [f"127.0.0.1:{p}" for p in ports]
    secret_file = root / "secret"
    write_secret_file(secret_file, SECRET)
    dirs = [root / f"n{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    value = b"x" * 64
    datums = {datum_key(f"key-{i:07d}"): Datum(value, i + 1) for i in range(keys)}
    started = time.monotonic()
    for member, d in zip(members[:2], dirs[:2], strict=True):
        seed(d / "naraft.db", member, datums, keys)
    seeding = time.monotonic() - started
    del datums
    processes = [
        start(m, members, d, secret_file) for m, d in zip(members[:2], dirs[:2], strict=True)
    ]
    try:

        def leader() -> str | None:
            statuses = {m: try_status(f"http://{m}") for m in members[:2]}
            return agreed_leader(statuses, members)

        wait(lambda: leader() is not None, 60, "a leader")
        leading = leader()
        assert leading is not None
        follower = members[2]
        t0 = time.monotonic()
        processes.append(start(follower, members, dirs[2], secret_file))
        if live_writes:
            write_kv(leading, live_writes)

        def caught_up() -> bool:
            view = get_json(f"http://{follower}{STATE_PATH}")
            if not view:
                return False
            sync = view.get("catchUp")
            return (
                int(view.get("appliedIndex", 0)) >= keys  # type: ignore[call-overload]
                and isinstance(sync, dict)
                and int(sync.get("completed", 0)) >= 1
            )

        wait(caught_up, 600, "the follower to catch up")
        total = time.monotonic() - t0
        view = get_json(f"http://{follower}{STATE_PATH}") or {}
        sync = view.get("catchUp", {})
        return {
            "keys": keys,
            "seed_seconds": round(seeding, 2),
            "catch_up_seconds_from_process_start": round(total, 2),
            "digest_sync": sync.get("last") if isinstance(sync, dict) else None,
            "follower_datums": view.get("datums"),
            "peak_rss_mib_follower": peak_rss_mib(processes[2].pid),
            "peak_rss_mib_leader": peak_rss_mib(processes[members.index(leading)].pid),
            "live_writes": live_writes,
        }
    finally:
        stop(processes)


def write_kv(leader: str, count: int) -> None:
    import concurrent.futures

    def put(i: int) -> None:
        body = json.dumps({"value": f"live-{i}"}).encode()
        request = urllib.request.Request(
            f"http://{leader}{kv_path(f'live-{i}')}", data=body, method="PUT"
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(count)))


def naming_datums(instances: int, per_service: int) -> dict[str, Datum]:
    datums: dict[str, Datum] = {}
    services = max(1, instances // per_service)
    version = 1
    for s in range(services):
        key = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name=f"svc-{s}")
        datums[service_meta_key(key)] = Datum(encode_service(Service(key=key)), version)
        for member in (
            Instance(
                service=key,
                ip=f"10.{s // 250 % 250}.{s % 250}.{i // 250 % 250}",
                port=8000 + i,
                ephemeral=False,
                metadata={"zone": "z1"},
            )
            for i in range(per_service)
        ):
            datums[instance_datum_key(member.key)] = Datum(encode_instance(member), version)
            version += 1
    return datums


def bench_restart(root: Path, instances: int, per_service: int) -> dict[str, object]:
    port = free_ports(1)[0]
    member = f"127.0.0.1:{port}"
    data = root / "standalone"
    data.mkdir()
    started = time.monotonic()
    datums = naming_datums(instances, per_service)
    index = len(datums)
    seed(data / "naraft.db", member, datums, index)
    seeding = time.monotonic() - started
    size_mib = (data / "naraft.db").stat().st_size / 2**20
    del datums
    t0 = time.monotonic()
    process = start(member, [member], data, root / "unused")
    try:

        def ready() -> bool:
            leader = get_json(f"http://{member}{LEADER_PATH}", timeout=2)
            if not leader:
                return False
            hosts = get_json(f"http://{member}{INSTANCE_LIST_PATH}?serviceName=svc-0", timeout=5)
            return bool(hosts and hosts.get("hosts"))

        wait(ready, 300, "the restarted node to lead and answer")
        ready_seconds = time.monotonic() - t0
        return {
            "instances": instances,
            "services": instances // per_service,
            "db_mib": round(size_mib, 1),
            "seed_seconds": round(seeding, 2),
            "restart_to_ready_seconds": round(ready_seconds, 2),
            "peak_rss_mib": peak_rss_mib(process.pid),
        }
    finally:
        stop([process])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("catchup", "restart"))
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--live-writes", type=int, default=0)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--per-service", type=int, default=100)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="naraft-catchup-"))
    results: dict[str, object] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    try:
        if args.only in (None, "catchup"):
            (root / "catchup").mkdir()
            results["catchup"] = bench_catchup(root / "catchup", args.keys, args.live_writes)
            print(json.dumps(results["catchup"]), flush=True)  # noqa: T201
        if args.only in (None, "restart"):
            (root / "restart").mkdir()
            results["restart"] = bench_restart(root / "restart", args.instances, args.per_service)
            print(json.dumps(results["restart"]), flush=True)  # noqa: T201
    finally:
        if not args.keep_data:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
