"""The cost of tokens: the same loads against a naraft cluster with `--auth off` and one
with `--auth on`, beside etcd 3.4 (no auth) from the same run:
`python benchmarks/auth_cost.py [--rounds 2] [--seconds 5]`.

Three 3-node clusters on loopback. In each round, interleaved (etcd, naraft off, naraft on):

- writes: naraft persistent registrations at c=64 (`POST /nacos/v1/ns/instance`), which
  with auth on carry the token of a user holding `rw` on `public` (a token check and a
  permission check per request); naraft kv puts at c=64 (the admin's token); etcd puts;
- reads: naraft instance lists at c=64 round-robin over the nodes (local reads, the same
  user's token) of 2,000 instances in 100 services, registered alike in both clusters before
  the rounds; etcd serializable ranges.

Prints writes/s and reads/s per system (medians over rounds) and the token's cost as
1 - on/off (the issue's goal: at most 10 %).
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import Bench, Plan
from clusters import EtcdCluster, NaraftCluster

from naraft.client import bearer, login
from naraft.cluster import wait_for

USER, PASSWORD = "bench", "bench-password"
LISTED_INSTANCES = 2000  # 20 in each of load.py's 100 services


def _post(url: str, params: dict[str, str], token: str) -> None:
    query = urllib.parse.urlencode(params)
    request = urllib.request.Request(f"{url}?{query}", method="POST", headers=bearer(token))
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def tokens_for(cluster: NaraftCluster, admin_password: str) -> tuple[str, str]:
    """The admin's token and a token of `bench`, a user with rw on the public namespace."""
    base = cluster.endpoint(cluster.wait_healthy(60))

    def admin_login() -> str | None:
        try:
            return login(base, admin_password)
        except OSError:
            return None

    # the first leader bootstraps the key and the admin: wait for it (bounded)
    admin = wait_for(admin_login, timeout_seconds=30, what="the admin's login")
    auth = f"{base}/nacos/v1/auth"
    _post(f"{auth}/users", {"username": USER, "password": PASSWORD}, admin)
    _post(f"{auth}/roles", {"role": "bench-rw", "username": USER}, admin)
    _post(f"{auth}/permissions", {"role": "bench-rw", "resource": "public", "action": "rw"}, admin)
    return admin, login(base, PASSWORD, username=USER)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--ops", type=int, default=30_000)
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="naraft-auth-bench-"))
    password_file = base / "admin.password"
    password_file.write_text("bench-admin-password\n")
    password_file.chmod(0o600)
    etcd = EtcdCluster(base / "etcd")
    off = NaraftCluster(base / "off", extra_flags=("--auth", "off"))
    on = NaraftCluster(
        base / "on", extra_flags=("--auth", "on", "--admin-password-file", str(password_file))
    )
    plan = Plan(warmup=300, quiet_wait_seconds=3.0)
    clusters = (etcd, off, on)
    try:
        for cluster in clusters:
            cluster.start()
        admin, user = tokens_for(on, "bench-admin-password")
        bench = Bench(plan, etcd, off)
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}

        def run(system: str, cluster: Any, op: str, **options: Any) -> None:
            result = bench.load(
                cluster, op=op, concurrency=64, ops=args.ops, seconds=args.seconds,
                label=f"{system} {op}", **options,
            )  # fmt: skip
            results.setdefault((system, op), []).append(float(result["ops_per_s"]))
            if result["server_cpu_ms_per_op"] is not None:
                cpu.setdefault((system, op), []).append(float(result["server_cpu_ms_per_op"]))

        # The lists read the same instances in both clusters: one registration round bounded
        # by its count, not its time (a time-bounded round writes fewer where it is slower).
        for system, cluster, token in (("naraft-off", off, ""), ("naraft-on", on, user)):
            bench.load(
                cluster, op="register", concurrency=64, ops=LISTED_INSTANCES, seconds=300,
                key_prefix="listed/", label=f"{system} seed the lists", token=token,
            )  # fmt: skip
        for number in range(args.rounds):
            print(f"round {number + 1}/{args.rounds}", flush=True)
            run("etcd", etcd, "put", key_prefix=f"r{number}/")
            run("naraft-off", off, "put", key_prefix=f"r{number}/")
            run("naraft-on", on, "put", key_prefix=f"r{number}/", token=admin)
            run("naraft-off", off, "register", key_prefix=f"r{number}reg/")
            run("naraft-on", on, "register", key_prefix=f"r{number}reg/", token=user)
            run("etcd", etcd, "get-serializable", key_prefix=f"r{number}/", mode="roundrobin",
                key_space=1000)  # fmt: skip
            run("naraft-off", off, "list", key_prefix="listed/", mode="roundrobin",
                key_space=100)  # fmt: skip
            run("naraft-on", on, "list", key_prefix="listed/", mode="roundrobin",
                key_space=100, token=user)  # fmt: skip
        print()
        print(f"{'system':<12} {'op':<18} {'ops/s':>8} {'server CPU ms/op':>17}  (medians)")
        medians = {key: statistics.median(values) for key, values in results.items()}
        cpu_medians = {key: statistics.median(values) for key, values in cpu.items()}
        for (system, op), value in sorted(medians.items()):
            print(f"{system:<12} {op:<18} {value:>8.0f} {cpu_medians.get((system, op), 0):>17.3f}")
        print()
        # On a shared machine ops/s moves with everyone else's load; the servers' own CPU
        # per operation moves much less, so both are shown.
        for op in ("put", "register", "list"):
            off_rate, on_rate = medians[("naraft-off", op)], medians[("naraft-on", op)]
            cost = 1 - on_rate / off_rate if off_rate else float("nan")
            off_cpu = cpu_medians.get(("naraft-off", op), 0.0)
            on_cpu = cpu_medians.get(("naraft-on", op), 0.0)
            cpu_cost = on_cpu / off_cpu - 1 if off_cpu else float("nan")
            print(f"token cost on {op:<9}: throughput {100 * cost:+.1f} %, "
                  f"server CPU per op {100 * cpu_cost:+.1f} % (goal <= 10 %)")  # fmt: skip
    finally:
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
