"""`python -m naraft.sim --seed N [--trace]`: replay one seeded run and print what happened."""

from __future__ import annotations

import argparse
import sys
import time

from naraft.sim.invariants import SafetyViolationError
from naraft.sim.runs import draw_shape, run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m naraft.sim", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seeds", type=int, default=1, help="run SEED .. SEED+N-1")
    parser.add_argument("--ticks", type=int, default=600)
    parser.add_argument("--trace", action="store_true", help="print every fault and role change")
    parser.add_argument("--hunt", action="store_true", help="the harsher hunt-mode fault mixes")
    args = parser.parse_args(argv)
    failed = 0
    events = 0
    started = time.perf_counter()
    for seed in range(args.seed, args.seed + args.seeds):
        trace = print if args.trace else None
        try:
            result = run_seed(seed, ticks=args.ticks, trace=trace, hunt=args.hunt)
        except SafetyViolationError as violation:
            size, faults, pre_vote, check_quorum = draw_shape(seed, hunt=args.hunt)
            print(f"seed={seed} VIOLATION: {violation}")
            print(f"  nodes={size} prevote={pre_vote} checkquorum={check_quorum} {faults}")
            hunt = " --hunt" if args.hunt else ""
            print(f"  replay: python -m naraft.sim --seed {seed}{hunt} --trace")
            failed += 1
            continue
        print(f"seed={seed} ok events={result.events} acked_writes={result.acked_writes}")
        events += result.events
    seconds = time.perf_counter() - started
    if args.seeds > 1 and seconds > 0:
        print(f"{events} events in {seconds:.1f} s: {events / seconds:,.0f} events/s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
