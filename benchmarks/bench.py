"""naraft beside etcd 3.4, on this machine, in the same run:
`python benchmarks/bench.py [--quick] [--out results.json] [--profile-seconds N]`.

Starts a 3-node naraft cluster (`python -m naraft server`, a secret file, data in a temp
dir, free loopback ports) and a 3-node etcd cluster (defaults: fsync on, 100 ms heartbeat,
1 s election timeout), then in interleaved rounds (etcd, naraft, etcd, naraft, ...):

1. durable writes at c = 1, 16, 64, 256 (closed loop, to the leader): writes/s, p50/p99,
   server CPU seconds per 1,000 committed writes (all 3 nodes, utime + stime), client CPU,
   and elections during the run (the highest term before and after);
2. persistent registrations at c=64 (naraft) against the round's etcd c=64 writes;
3. reads at c=64: linearizable (naraft kv GET / etcd range, to the leader) and local
   (naraft instance list / etcd serializable range, round-robin over all nodes);

then failover for both: kill -9 of the leader (median of 5) and SIGSTOP of the leader
(median of 3), time to the first acknowledged write. Medians over rounds, naraft/etcd
ratios per round (median), and the goals G1-G7b of docs/performance-goals.md as PASS/MISS.

The load generator (`load.py`) is its own process; every load is bounded by a count and a
time. `--profile-seconds N` also runs py-spy on the naraft leader under c=64 writes.
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import procstat
import spy
from clusters import Cluster, EtcdCluster, NaraftCluster
from failover import FailoverSettings, one_fault

HERE: Final = Path(__file__).resolve().parent
CONCURRENCIES: Final = (1, 16, 64, 256)
SATURATED: Final = (64, 256)  # the runs whose elections count for G4


@dataclass(slots=True)
class Plan:
    rounds: int = 3
    write_ops: int = 40_000
    write_seconds: float = 10.0
    read_ops: int = 40_000
    read_seconds: float = 6.0
    warmup: int = 300
    quiet_wait_seconds: float = 4.0
    kill_reps: int = 5
    pause_reps: int = 3
    failover: FailoverSettings = field(default_factory=FailoverSettings)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            rounds=1,
            write_ops=8_000,
            write_seconds=3.0,
            read_ops=8_000,
            read_seconds=2.0,
            warmup=100,
            quiet_wait_seconds=0.5,
            kill_reps=2,
            pause_reps=1,
            failover=FailoverSettings(before_seconds=1.0, settle_seconds=0.5),
        )


class Bench:
    def __init__(self, plan: Plan, etcd: EtcdCluster, naraft: NaraftCluster) -> None:
        self.plan = plan
        self.etcd = etcd
        self.naraft = naraft
        self.runs: list[dict[str, Any]] = []

    def _all_server_pids(self) -> list[int]:
        return self.etcd.pids() + self.naraft.pids()

    def load(
        self,
        cluster: Cluster,
        *,
        op: str,
        concurrency: int,
        ops: int,
        seconds: float,
        key_prefix: str,
        label: str,
        mode: str = "leader",
        key_space: int = 0,
        token: str = "",
    ) -> dict[str, Any]:
        """One bounded run of load.py against `cluster` (with `token`, as a Bearer header);
        returns its result, annotated."""
        leader = cluster.wait_healthy(60)
        endpoints = [cluster.endpoint(leader)] + [
            e for e in cluster.endpoints if e != cluster.endpoint(leader)
        ]
        quiet = procstat.wait_until_quiet(self.plan.quiet_wait_seconds, self._all_server_pids())
        term_before = cluster.max_term()
        command = [
            sys.executable, str(HERE / "load.py"),
            "--target", cluster.name, "--op", op, "--mode", mode,
            "--endpoints", ",".join(endpoints), "--concurrency", str(concurrency),
            "--ops", str(ops), "--max-seconds", str(seconds), "--warmup", str(self.plan.warmup),
            "--key-prefix", key_prefix, "--key-space", str(key_space),
            "--watch-pids", ",".join(str(p) for p in cluster.pids()),
            *(("--token", token) if token else ()),
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"load.py failed ({done.returncode}): {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        term_after = cluster.max_term()
        result.update(
            label=label,
            system=cluster.name,
            leader=leader,
            elections=term_after - term_before,
            quiet_before_cores=round(quiet, 2),
        )
        self.runs.append(result)
        errors = sum(result["errors"].values())
        print(
            f"  {label:<26} {result['ops_per_s']:>8.0f}/s  p50 {result['p50_ms']} ms  "
            f"p99 {result['p99_ms']} ms  server {result['server_cpu_ms_per_op']} ms/op "
            f"({result['server_cpu_cores']} cores)  client {result['client_cpu_cores']} cores  "
            f"foreign {result['foreign_cpu_cores']}  elections {result['elections']}"
            + (f"  errors {result['errors']}" if errors else ""),
            flush=True,
        )
        return result

    def round(self, number: int) -> None:
        plan = self.plan
        puts: dict[tuple[str, int], dict[str, Any]] = {}
        for c in CONCURRENCIES:
            for cluster in (self.etcd, self.naraft):
                puts[cluster.name, c] = self.load(
                    cluster, op="put", concurrency=c, ops=plan.write_ops,
                    seconds=plan.write_seconds, key_prefix=f"r{number}c{c}/",
                    label=f"r{number} {cluster.name} put c={c}",
                )  # fmt: skip
        self.load(
            self.naraft, op="register", concurrency=64, ops=plan.write_ops,
            seconds=plan.write_seconds, key_prefix=f"r{number}reg/",
            label=f"r{number} naraft register c=64",
        )  # fmt: skip
        for cluster in (self.etcd, self.naraft):
            written = puts[cluster.name, 64]
            self.load(
                cluster, op="get", concurrency=64, ops=plan.read_ops, seconds=plan.read_seconds,
                key_prefix=f"r{number}c64/", key_space=max(1, int(written["ok"])),
                label=f"r{number} {cluster.name} get-lin c=64",
            )  # fmt: skip
        self.load(
            self.etcd, op="get-serializable", concurrency=64, ops=plan.read_ops,
            seconds=plan.read_seconds, key_prefix=f"r{number}c64/", mode="roundrobin",
            key_space=max(1, int(puts["etcd", 64]["ok"])),
            label=f"r{number} etcd get-local c=64",
        )  # fmt: skip
        self.load(
            self.naraft, op="list", concurrency=64, ops=plan.read_ops, seconds=plan.read_seconds,
            key_prefix=f"r{number}reg/", mode="roundrobin", key_space=100,
            label=f"r{number} naraft get-local c=64",
        )  # fmt: skip

    def failovers(self) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        plan = self.plan
        for kind, reps in (("kill", plan.kill_reps), ("pause", plan.pause_reps)):
            for rep in range(reps):
                for cluster in (self.etcd, self.naraft):
                    r = asyncio.run(one_fault(cluster, cluster.name, kind, rep, plan.failover))
                    results.append(r)
                    print(
                        f"  {kind:<5} {cluster.name:<6} rep {rep}: recovery {r['recovery_ms']} ms"
                        f"  gap {r['gap_ms']} ms  {r['faulted']} -> {r['new_leader']}"
                        f"  term {r['term_before']} -> {r['term_after']}",
                        flush=True,
                    )
        return results

    def profile(self, seconds: float, out_dir: Path) -> dict[str, Any] | None:
        """py-spy on the naraft leader while c=64 writes run; returns the summary."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            print("  py-spy not found (pip install py-spy): no profile")
            return None
        leader = self.naraft.wait_healthy(60)
        pid = self.naraft.pid(leader)
        raw = out_dir / "naraft-leader-c64.folded"
        spy_process = subprocess.Popen(
            # --gil: only samples of the thread holding the GIL, i.e. where the Python CPU
            # goes (an idle event loop waits in uvloop's C code, which py-spy cannot tell
            # from work without it); fsync and SQLite's C code release the GIL.
            [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--gil",
             "--rate", "200", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(0.5)
        run = self.load(
            self.naraft, op="put", concurrency=64, ops=10_000_000, seconds=seconds,
            key_prefix="profile/", label="profile naraft put c=64",
        )  # fmt: skip
        try:
            spy_process.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            spy_process.kill()
            spy_process.wait()
        if not raw.exists():
            print("  py-spy wrote nothing:", (spy_process.stderr.read() if spy_process.stderr
                                              else b"").decode()[-500:])  # fmt: skip
            return None
        summary = spy.summarize(raw, 30)
        summary["file"] = str(raw)
        summary["leader_cpu_cores"] = round(
            run["server_cpu_s"].get(str(pid), 0.0) / max(run["elapsed_s"], 1e-9), 3
        )
        return summary


# ---------------------------------------------------------------------- summary


def _runs(runs: Sequence[dict[str, Any]], system: str, op: str, c: int) -> list[dict[str, Any]]:
    return [r for r in runs if r["system"] == system and r["op"] == op and r["concurrency"] == c
            and not r["label"].startswith("profile")]  # fmt: skip


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _paired_ratio(
    runs: Sequence[dict[str, Any]],
    a: tuple[str, str, int],
    b: tuple[str, str, int],
    metric: Callable[[dict[str, Any]], float | None],
) -> float | None:
    """Median over rounds of metric(a) / metric(b), pairing runs of the same round."""
    ratios = []
    for ra, rb in zip(_runs(runs, *a), _runs(runs, *b), strict=False):
        va, vb = metric(ra), metric(rb)
        if va is not None and vb:
            ratios.append(va / vb)
    return _median(ratios)


def _sweep_rows(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    cases = [("put", c) for c in CONCURRENCIES] + [("register", 64), ("get", 64)]
    cases += [("local-read", 64)]
    for op, c in cases:
        e_op = {"register": "put", "local-read": "get-serializable"}.get(op, op)
        n_op = {"local-read": "list"}.get(op, op)
        row: dict[str, Any] = {"case": f"{op} c={c}"}
        for system, sop in (("etcd", e_op), ("naraft", n_op)):
            rs = _runs(runs, system, sop, c)
            row[system] = {
                "ops_per_s": _median([r["ops_per_s"] for r in rs]),
                "p50_ms": _median([r["p50_ms"] for r in rs]),
                "p99_ms": _median([r["p99_ms"] for r in rs]),
                "cpu_s_per_1k": _median([r["server_cpu_ms_per_op"] for r in rs]),
                "server_cores": _median([r["server_cpu_cores"] for r in rs]),
                "client_cores": _median([r["client_cpu_cores"] for r in rs]),
                "foreign_cores": _median([r["foreign_cpu_cores"] for r in rs]),
                "elections": sum(r["elections"] for r in rs),
                "errors": sum(sum(r["errors"].values()) for r in rs),
                "rounds": len(rs),
            }
        a, b = ("naraft", n_op, c), ("etcd", e_op, c)
        row["ratio"] = {
            "ops_per_s": _paired_ratio(runs, a, b, lambda r: r["ops_per_s"]),
            "p50_ms": _paired_ratio(runs, a, b, lambda r: r["p50_ms"]),
            "p99_ms": _paired_ratio(runs, a, b, lambda r: r["p99_ms"]),
            "cpu_s_per_1k": _paired_ratio(runs, a, b, lambda r: r["server_cpu_ms_per_op"]),
        }
        rows.append(row)
    return rows


def _failover_stats(results: Sequence[dict[str, Any]], system: str, kind: str) -> dict[str, Any]:
    values = [r["recovery_ms"] for r in results
              if r["system"] == system and r["kind"] == kind]  # fmt: skip
    measured = [v for v in values if v is not None]
    return {
        "median_ms": _median(measured),
        "max_ms": max(measured) if measured else None,
        "min_ms": min(measured) if measured else None,
        "n": len(values),
        "unrecovered": len(values) - len(measured),
        "all_ms": values,
    }


def _verdict(value: float | None, milestone: Callable[[float], bool],
             goal: Callable[[float], bool]) -> tuple[str, str]:  # fmt: skip
    if value is None:
        return "n/a", "n/a"
    return ("PASS" if milestone(value) else "MISS"), ("PASS" if goal(value) else "MISS")


def goals(runs: Sequence[dict[str, Any]], fail: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def ratio(op_n: str, op_e: str, c: int, key: str) -> float | None:
        return _paired_ratio(runs, ("naraft", op_n, c), ("etcd", op_e, c), lambda r: r[key])

    def med(system: str, op: str, c: int, key: str) -> float | None:
        return _median([r[key] for r in _runs(runs, system, op, c)])

    rows: list[dict[str, Any]] = []

    def add(goal: str, measure: str, naraft: str, etcd: str, value: float | None,
            text: str, milestone: Callable[[float], bool], target: Callable[[float], bool],
            thresholds: str) -> None:  # fmt: skip
        m, g = _verdict(value, milestone, target)
        rows.append({"goal": goal, "measure": measure, "naraft": naraft, "etcd": etcd,
                     "value": value, "shown": text, "milestone": m, "goal_verdict": g,
                     "thresholds": thresholds})  # fmt: skip

    def f(x: float | None, unit: str = "", digits: int = 0) -> str:
        return "n/a" if x is None else f"{x:,.{digits}f}{unit}"

    r = ratio("put", "put", 64, "ops_per_s")
    add("G1", "writes/s c=64 (kv)", f(med("naraft", "put", 64, "ops_per_s"), "/s"),
        f(med("etcd", "put", 64, "ops_per_s"), "/s"), r, f(r, "x", 2),
        lambda x: x >= 1.0, lambda x: x >= 1.5, ">=1.0x / >=1.5x")  # fmt: skip
    r = _paired_ratio(runs, ("naraft", "register", 64), ("etcd", "put", 64),
                      lambda x: x["ops_per_s"])  # fmt: skip
    add("G1", "writes/s c=64 (registration)", f(med("naraft", "register", 64, "ops_per_s"), "/s"),
        f(med("etcd", "put", 64, "ops_per_s"), "/s"), r, f(r, "x", 2),
        lambda x: x >= 1.0, lambda x: x >= 1.5, ">=1.0x / >=1.5x")  # fmt: skip
    own = _paired_ratio(runs, ("naraft", "put", 256), ("naraft", "put", 64),
                        lambda x: x["ops_per_s"])  # fmt: skip
    etcd_own = _paired_ratio(runs, ("etcd", "put", 256), ("etcd", "put", 64),
                             lambda x: x["ops_per_s"])  # fmt: skip
    add("G2", "c=256 / own c=64 writes/s", f(own, "x", 2), f(etcd_own, "x", 2), own,
        f(own, "x", 2), lambda x: x >= 1.0, lambda x: x >= 1.1, ">=1.0x / >=1.1x")  # fmt: skip
    r = ratio("put", "put", 1, "p50_ms")
    add("G3", "p50 latency c=1", f(med("naraft", "put", 1, "p50_ms"), " ms", 2),
        f(med("etcd", "put", 1, "p50_ms"), " ms", 2), r, f(r, "x", 2),
        lambda x: x <= 1.5, lambda x: x <= 1.0, "<=1.5x / <=1.0x")  # fmt: skip
    r = ratio("put", "put", 64, "p99_ms")
    add("G4", "p99 latency c=64", f(med("naraft", "put", 64, "p99_ms"), " ms", 1),
        f(med("etcd", "put", 64, "p99_ms"), " ms", 1), r, f(r, "x", 2),
        lambda x: x <= 1.5, lambda x: x <= 1.0, "<=1.5x / <=1.0x")  # fmt: skip
    n_el = sum(x["elections"] for c in SATURATED for x in _runs(runs, "naraft", "put", c))
    e_el = sum(x["elections"] for c in SATURATED for x in _runs(runs, "etcd", "put", c))
    add("G4", "elections in saturated runs (c=64, 256)", str(n_el), str(e_el), float(n_el),
        str(n_el), lambda x: x == 0, lambda x: x == 0, "0 / 0")  # fmt: skip
    r = ratio("put", "put", 64, "server_cpu_ms_per_op")
    add("G5", "server CPU s per 1k writes c=64 (3 nodes)",
        f(med("naraft", "put", 64, "server_cpu_ms_per_op"), " s", 3),
        f(med("etcd", "put", 64, "server_cpu_ms_per_op"), " s", 3), r, f(r, "x", 2),
        lambda x: x <= 1.0, lambda x: x <= 0.7, "<=1.0x / <=0.7x")  # fmt: skip
    r = ratio("get", "get", 64, "ops_per_s")
    add("G6", "linearizable reads/s c=64", f(med("naraft", "get", 64, "ops_per_s"), "/s"),
        f(med("etcd", "get", 64, "ops_per_s"), "/s"), r, f(r, "x", 2),
        lambda x: x >= 1.0, lambda x: x >= 1.5, ">=1.0x / >=1.5x")  # fmt: skip
    r = ratio("list", "get-serializable", 64, "ops_per_s")
    add("G6", "local reads/s c=64 (instance list vs serializable)",
        f(med("naraft", "list", 64, "ops_per_s"), "/s"),
        f(med("etcd", "get-serializable", 64, "ops_per_s"), "/s"), r, f(r, "x", 2),
        lambda x: x >= 2.0, lambda x: x >= 3.0, ">=2x / >=3x")  # fmt: skip
    nk, ek = _failover_stats(fail, "naraft", "kill"), _failover_stats(fail, "etcd", "kill")
    r = nk["median_ms"] / ek["median_ms"] if nk["median_ms"] and ek["median_ms"] else None
    nmax = nk["max_ms"] if not nk["unrecovered"] else None
    add("G7", "kill -9 leader: time to first ack, median (max)",
        f"{f(nk['median_ms'], ' ms')} ({f(nk['max_ms'], ' ms')})",
        f"{f(ek['median_ms'], ' ms')} ({f(ek['max_ms'], ' ms')})", r, f(r, "x", 2),
        lambda x: x <= 1.0 and nmax is not None and nmax <= 2500,
        lambda x: x <= 0.25 and nmax is not None and nmax <= 1000,
        "<=1.0x & max<=2.5s / <=0.25x & max<=1s")  # fmt: skip
    npz, epz = _failover_stats(fail, "naraft", "pause"), _failover_stats(fail, "etcd", "pause")
    r = npz["median_ms"] / epz["median_ms"] if npz["median_ms"] and epz["median_ms"] else None
    add("G7b", "SIGSTOP leader: time to first ack, median",
        f(npz["median_ms"], " ms"), f(epz["median_ms"], " ms"), r, f(r, "x", 2),
        lambda x: x <= 1.25, lambda x: x <= 1.0, "<=1.25x / <=1.0x")  # fmt: skip
    return rows


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _fmt(x: float | None, digits: int = 0) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def print_report(report: dict[str, Any]) -> None:
    print("\n== throughput, latency and CPU (medians over rounds; ratio = median of per-round "
          "naraft/etcd)")  # fmt: skip
    rows = []
    for row in report["sweep"]:
        e, n, r = row["etcd"], row["naraft"], row["ratio"]
        rows.append([
            row["case"],
            _fmt(e["ops_per_s"]), _fmt(n["ops_per_s"]), _fmt(r["ops_per_s"], 2),
            f"{_fmt(e['p50_ms'], 2)}/{_fmt(e['p99_ms'], 1)}",
            f"{_fmt(n['p50_ms'], 2)}/{_fmt(n['p99_ms'], 1)}",
            _fmt(r["p99_ms"], 2),
            _fmt(e["cpu_s_per_1k"], 3), _fmt(n["cpu_s_per_1k"], 3), _fmt(r["cpu_s_per_1k"], 2),
            f"{_fmt(e['client_cores'], 2)}/{_fmt(n['client_cores'], 2)}",
            f"{_fmt(e['foreign_cores'], 2)}/{_fmt(n['foreign_cores'], 2)}",
            f"{e['elections']}/{n['elections']}",
            f"{e['errors']}/{n['errors']}",
        ])  # fmt: skip
    print(_table(
        ["case", "etcd/s", "naraft/s", "ratio", "etcd p50/p99 ms", "naraft p50/p99 ms",
         "p99 ratio", "etcd CPU s/1k", "naraft CPU s/1k", "CPU ratio", "client cores e/n",
         "foreign cores e/n", "elections e/n", "errors e/n"],
        rows,
    ))  # fmt: skip
    print(
        "   (local-read: etcd serializable range round-robin vs naraft instance/list "
        "round-robin; register: naraft persistent registration vs etcd put)"
    )
    print("\n== failover (time from the fault to the first acknowledged write sent after it)")
    rows = []
    for kind in ("kill", "pause"):
        for system in ("etcd", "naraft"):
            s = report["failover_stats"][f"{system}/{kind}"]
            rows.append([kind, system, _fmt(s["median_ms"]), _fmt(s["min_ms"]),
                         _fmt(s["max_ms"]), f"{s['n'] - s['unrecovered']}/{s['n']}",
                         " ".join(_fmt(v) for v in s["all_ms"])])  # fmt: skip
    print(_table(["fault", "system", "median ms", "min", "max", "recovered", "each ms"], rows))
    print("\n== goals (docs/performance-goals.md): first milestone / goal")
    print(_table(
        ["goal", "measure", "naraft", "etcd", "naraft/etcd", "milestone", "goal", "thresholds"],
        [[g["goal"], g["measure"], g["naraft"], g["etcd"], g["shown"], g["milestone"],
          g["goal_verdict"], g["thresholds"]] for g in report["goals"]],
    ))  # fmt: skip
    rss = report.get("rss_mib_end", {})
    if rss:
        print(
            "\nRSS at the end (MiB): "
            + ", ".join(
                f"{s} " + "/".join(_fmt(v) for v in nodes.values()) for s, nodes in rss.items()
            )
        )
    if report.get("profile"):
        print(
            "\n== py-spy --gil: naraft leader under c=64 writes "
            f"({report['profile']['leader_cpu_cores']} cores; {report['profile']['file']})"
        )
        spy.print_summary(report["profile"], 20)


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (under 2 minutes)")
    p.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument(
        "--profile-seconds",
        type=float,
        default=0.0,
        help="py-spy the naraft leader for N s under c=64 writes (0: off)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the temp dir (logs, data)")
    args = p.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.rounds is not None:
        plan.rounds = max(1, args.rounds)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="naraft-bench-"))
    print(f"naraft benchmark ({'quick' if args.quick else 'full'}); data and logs in {base}")
    etcd = EtcdCluster(base)
    naraft = NaraftCluster(base)
    bench = Bench(plan, etcd, naraft)
    fail: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    rss: dict[str, dict[str, float | None]] = {}
    try:
        print(f"etcd leader {etcd.start()} at {etcd.endpoints}")
        print(f"naraft leader {naraft.start()} at {naraft.endpoints}")
        for number in range(1, plan.rounds + 1):
            print(f"round {number}/{plan.rounds}", flush=True)
            bench.round(number)
        rss = {"etcd": etcd.rss_mib(), "naraft": naraft.rss_mib()}
        if not args.skip_failover:
            print("failover", flush=True)
            fail = bench.failovers()
        if args.profile_seconds > 0:
            print("profile", flush=True)
            profile = bench.profile(args.profile_seconds, base)
    finally:
        etcd.stop()
        naraft.stop()
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "elapsed_s": round(time.monotonic() - started, 1),
        "runs": bench.runs,
        "failover": fail,
        "failover_stats": {
            f"{s}/{k}": _failover_stats(fail, s, k)
            for k in ("kill", "pause")
            for s in ("etcd", "naraft")
        },  # fmt: skip
        "sweep": _sweep_rows(bench.runs),
        "goals": goals(bench.runs, fail),
        "rss_mib_end": rss,
        "profile": profile,
        "data_dir": str(base),
    }
    print_report(report)
    print(f"\ntotal {report['elapsed_s']} s")
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"results in {args.out}")
    if args.keep_data or profile is not None:
        print(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
