"""Snapshot save and restore of 1M naming instances (README: "Backup and restore:
`snapshot.py`"); goal < 10 s each (docs/performance-goals.md, issue "Change a running
cluster").

    .venv/bin/python benchmarks/snapshot.py                      # 1M instances, 100 per service
    .venv/bin/python benchmarks/snapshot.py --instances 200000

1. A standalone node's store is seeded with `--instances` persistent instances in services of
   `--per-service` each: real naming datums, written with `SqliteStore` as the applied state
   (`catchup.py`'s seeding; proposing a million registrations over HTTP would take longer
   than the benchmark). The node is started on it and waited for until it answers.
2. save: `naraft snapshot save FILE --server URL`, the real command, timed from its start to
   its exit (login-free: loopback, auth off). Printed: seconds, file MB, MB/s.
3. restore: `naraft snapshot restore FILE --data-dir DIR --id ID`, timed the same way;
   printed: seconds, store MB. Then the restored node is started and asked for one service,
   to show the restore is whole (not timed).
"""
# ruff: noqa: T201

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from catchup import get_json, naming_datums, seed, start, stop, wait

from naraft.client import INSTANCE_LIST_PATH, LEADER_PATH
from naraft.cluster import free_ports


def naraft(*args: str) -> tuple[float, float]:
    """Run `naraft ARGS` to its end: its wall time and its CPU time (user + system), in
    seconds. The CPU time is what the command costs on a machine busy with other work."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "naraft", *args], capture_output=True, text=True, check=False
    )
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"naraft {args[0]} {args[1]} failed: {done.stderr.strip()}")
    print(done.stdout.strip().splitlines()[-1])
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return seconds, cpu


def process_cpu(pid: int | None) -> float:
    """User + system seconds of a running process (`/proc/PID/stat`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serving(member: str, service: str) -> bool:
    if not get_json(f"http://{member}{LEADER_PATH}", timeout=2):
        return False
    hosts = get_json(f"http://{member}{INSTANCE_LIST_PATH}?serviceName={service}", timeout=5)
    return bool(hosts and hosts.get("hosts"))


def bench(root: Path, instances: int, per_service: int) -> dict[str, object]:
    source_port, restored_port = free_ports(2)
    member = f"127.0.0.1:{source_port}"
    data = root / "source"
    data.mkdir()
    datums = naming_datums(instances, per_service)
    seed(data / "naraft.db", member, datums, len(datums))
    keys = len(datums)
    del datums
    process = start(member, [member], data, root / "unused")
    try:
        wait(lambda: serving(member, "svc-0"), 300, "the seeded node to answer")
        file = root / "backup.snap"
        node_cpu = process_cpu(process.pid)
        save_seconds, save_cpu = naraft(
            "snapshot", "save", str(file), "--server", f"http://{member}"
        )
        node_cpu = process_cpu(process.pid) - node_cpu
    finally:
        stop([process])
    file_mb = file.stat().st_size / 1e6
    target = root / "restored"
    restored_member = f"127.0.0.1:{restored_port}"
    restore_seconds, restore_cpu = naraft(
        "snapshot", "restore", str(file), "--data-dir", str(target), "--id", restored_member
    )
    store_mb = (target / "naraft.db").stat().st_size / 1e6
    process = start(restored_member, [restored_member], target, root / "unused")
    try:
        last = f"svc-{instances // per_service - 1}"
        wait(lambda: serving(restored_member, last), 300, "the restored node to answer")
    finally:
        stop([process])
    return {
        "instances": instances,
        "services": instances // per_service,
        "datums": keys,
        "save_seconds": round(save_seconds, 2),
        "save_cpu_seconds_client": round(save_cpu, 2),
        "save_cpu_seconds_node": round(node_cpu, 2),
        "file_mb": round(file_mb, 1),
        "save_mb_per_second": round(file_mb / save_seconds, 1),
        "restore_seconds": round(restore_seconds, 2),
        "restore_cpu_seconds": round(restore_cpu, 2),
        "restored_store_mb": round(store_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--per-service", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="naraft-snapshot-"))
    try:
        print(json.dumps({"load_avg": os.getloadavg(), "cpus": os.cpu_count()}))
        print(json.dumps(bench(root, args.instances, args.per_service), indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
