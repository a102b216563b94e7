"""kill -9 of the naraft leader, N times in a row, with the failover benchmark's writers:
the time to the first acknowledged write after each kill, and the election rounds each
kill cost, read from every node's election audit (`election-audit.jsonl`).

    .venv/bin/python benchmarks/failover_kills.py --kills 20 [--out kills.json] [--keep-data]

A round is one term: a kill that elects the next leader in the term after the old one
took one round; every further term is a split vote (or a lost election) lasting a round.
Only naraft runs (no etcd needed). Exit code 1 if any kill took more than `--max-ms`
(1000) or more than `--max-rounds` (1) rounds.
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clusters import NODE_NAMES, NaraftCluster
from failover import FailoverSettings, one_fault


def _audit_lines(cluster: NaraftCluster) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    for node in NODE_NAMES:
        path = cluster.base_dir / f"{node}.data" / "election-audit.jsonl"
        if path.exists():
            lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return lines


def _rounds(audit: Sequence[dict[str, object]], term_before: int) -> tuple[int, list[int]]:
    """(terms until the first term with a leader after `term_before`, the terms that had
    candidates but no leader)."""
    led = sorted({int(str(a["term"])) for a in audit if a["role"] == "leader"})
    first = next((t for t in led if t > term_before), None)
    if first is None:
        return -1, []
    candidates = {int(str(a["term"])) for a in audit if a["role"] == "candidate"}
    split = sorted(t for t in candidates if term_before < t < first)
    return first - term_before, split


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--max-ms", type=float, default=1000.0)
    parser.add_argument("--max-rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--flags", default="", help="extra `naraft server` flags, quoted")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="naraft-kills-"))
    cluster = NaraftCluster(base, extra_flags=tuple(args.flags.split()))
    settings = FailoverSettings(before_seconds=1.0, settle_seconds=1.0)
    results: list[dict[str, object]] = []
    try:
        cluster.start()
        for rep in range(args.kills):
            result = asyncio.run(one_fault(cluster, cluster.name, "kill", rep, settings))
            rounds, split = _rounds(_audit_lines(cluster), int(str(result["term_before"])))
            result["rounds"], result["split_terms"] = rounds, split
            results.append(result)
            print(
                f"kill {rep:2}: recovery {result['recovery_ms']} ms, gap {result['gap_ms']} ms,"
                f" {result['faulted']} -> {result['new_leader']}, rounds {rounds}"
                f" (split terms {split})",
                flush=True,
            )
    finally:
        cluster.stop()
        if not args.keep_data:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"data and logs kept in {base}")
    recoveries = [float(str(r["recovery_ms"])) for r in results if r["recovery_ms"] is not None]
    rounds = [int(str(r["rounds"])) for r in results]
    summary = {
        "kills": len(results),
        "recovered": len(recoveries),
        "median_ms": statistics.median(recoveries) if recoveries else None,
        "max_ms": max(recoveries) if recoveries else None,
        "max_rounds": max(rounds) if rounds else None,
        "kills_with_a_split_vote": sum(1 for r in rounds if r != 1),
    }
    print(json.dumps(summary))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "kills": results}, indent=1))
    ok = (
        len(recoveries) == len(results)
        and summary["max_ms"] is not None
        and float(str(summary["max_ms"])) <= args.max_ms
        and all(0 < r <= args.max_rounds for r in rounds)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
