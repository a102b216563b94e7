"""`python -m naraft.checker FILE...`: check JSON-lines histories for linearizability.

Each file is one independent history. Prints one line per key (with an explanation under
each key that is not linearizable), then a one-line summary. Exit status:

* 0: every key of every file is linearizable;
* 1: some key is not linearizable;
* 2: a file is malformed or unreadable, or the arguments are wrong (argparse's convention);
* 3: no violation found, but some key's search ran out of its state budget (unknown).

A worse status wins: 2 over 1 over 3 over 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final, TextIO

from naraft.checker.history import MalformedHistoryError, read_operations_file
from naraft.checker.wgl import DEFAULT_MAX_STATES, CheckResult, Verdict, check_operations

EXIT_LINEARIZABLE: Final = 0
EXIT_NOT_LINEARIZABLE: Final = 1
EXIT_MALFORMED: Final = 2
EXIT_UNKNOWN: Final = 3


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the checker on the files named in `argv`; returns the exit status."""
    out = sys.stdout if out is None else out
    parser = argparse.ArgumentParser(
        prog="python -m naraft.checker",
        description="Check key/value register histories (JSON lines) for linearizability.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="a JSON-lines history")
    parser.add_argument(
        "--max-states",
        type=int,
        default=DEFAULT_MAX_STATES,
        help=f"search budget per key before answering unknown (default {DEFAULT_MAX_STATES})",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print only keys that are not linearizable"
    )
    args = parser.parse_args(argv)
    if args.max_states < 1:
        parser.error("--max-states must be at least 1")

    malformed = 0
    totals = dict.fromkeys(Verdict, 0)
    for path in args.files:
        try:
            operations = read_operations_file(path)
        except (MalformedHistoryError, OSError, UnicodeDecodeError) as error:
            sys.stderr.write(f"{path}: malformed history: {error}\n")
            malformed += 1
            continue
        result = check_operations(operations, max_states=args.max_states)
        _print_result(path, result, out, quiet=args.quiet)
        for verdict in Verdict:
            totals[verdict] += result.count(verdict)

    if malformed:
        status = EXIT_MALFORMED
    elif totals[Verdict.NOT_LINEARIZABLE]:
        status = EXIT_NOT_LINEARIZABLE
    elif totals[Verdict.UNKNOWN]:
        status = EXIT_UNKNOWN
    else:
        status = EXIT_LINEARIZABLE
    word = {
        EXIT_LINEARIZABLE: "LINEARIZABLE",
        EXIT_NOT_LINEARIZABLE: "NOT LINEARIZABLE",
        EXIT_MALFORMED: "MALFORMED INPUT",
        EXIT_UNKNOWN: "UNKNOWN",
    }[status]
    out.write(
        f"summary: {len(args.files)} file(s), {sum(totals.values())} key(s): "
        f"{totals[Verdict.LINEARIZABLE]} linearizable, "
        f"{totals[Verdict.NOT_LINEARIZABLE]} not linearizable, "
        f"{totals[Verdict.UNKNOWN]} unknown, {malformed} malformed file(s) => {word}\n"
    )
    return status


def _print_result(path: str, result: CheckResult, out: TextIO, *, quiet: bool) -> None:
    for key, key_result in result.key_results.items():
        if quiet and key_result.is_linearizable:
            continue
        out.write(
            f"{path}: key {key!r}: {key_result.verdict} "
            f"(ops={key_result.operation_count} searched={key_result.searched_count} "
            f"states={key_result.states_explored})\n"
        )
        if key_result.explanation is not None and not key_result.is_linearizable:
            out.write(f"    {key_result.explanation}\n")


if __name__ == "__main__":
    sys.exit(main())
