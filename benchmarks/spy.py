"""Summaries of a py-spy profile in the collapsed-stack format (`py-spy record --format raw`):
one line per distinct stack, `frame;frame;...;leaf COUNT`, each frame `function (file:line)`.

`top_self` ranks frames by the samples in which they are the leaf (where the CPU was);
`top_inclusive` ranks functions by the samples whose stack contains them anywhere.
`python benchmarks/spy.py FILE [--top N]` prints both.
"""

# ruff: noqa: T201
from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_SHORTEN = (
    re.compile(r"^.*/site-packages/"),
    re.compile(r"^.*/src/naraft/"),
    re.compile(r"^.*/lib/python3\.\d+/"),
)


def shorten(path: str) -> str:
    """A readable file name: naraft modules relative to src/naraft, libraries to site-packages."""
    if "/src/naraft/" in path:
        return "naraft/" + _SHORTEN[1].sub("", path)
    for pattern in (_SHORTEN[0], _SHORTEN[2]):
        if pattern.search(path):
            return pattern.sub("", path)
    return path


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for raw in lines:
        line = raw.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _frame_label(frame: str, *, with_line: bool) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    where = shorten(match["file"])
    if with_line and match["line"]:
        where = f"{where}:{match['line']}"
    return f"{match['function']} ({where})"


def top_self(stacks: list[tuple[list[str], int]], n: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for frames, count in stacks:
        counts[_frame_label(frames[-1], with_line=True)] += count
    return counts.most_common(n)


def top_inclusive(stacks: list[tuple[list[str], int]], n: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for frames, count in stacks:
        for label in {_frame_label(f, with_line=False) for f in frames}:
            counts[label] += count
    return counts.most_common(n)


def top_files(stacks: list[tuple[list[str], int]], n: int) -> list[tuple[str, int]]:
    """Self samples by file: which module the CPU was in."""
    counts: Counter[str] = Counter()
    for frames, count in stacks:
        match = _FRAME.match(frames[-1].strip())
        counts[shorten(match["file"]) if match else frames[-1]] += count
    return counts.most_common(n)


def summarize(path: Path, n: int = 25) -> dict[str, object]:
    stacks = parse(path.read_text().splitlines())
    total = sum(count for _, count in stacks) or 1

    def pct(rows: list[tuple[str, int]]) -> list[dict[str, object]]:
        return [{"where": w, "samples": c, "pct": round(100 * c / total, 1)} for w, c in rows]

    return {
        "samples": total,
        "self": pct(top_self(stacks, n)),
        "inclusive": pct(top_inclusive(stacks, n)),
        "files": pct(top_files(stacks, n)),
    }


def print_summary(summary: dict[str, object], n: int = 25) -> None:
    print(
        f"py-spy samples: {summary['samples']} (percentages of all samples; a leaf in "
        "asyncio/runners.py is uvloop's own C code: socket IO and callbacks)"
    )
    for title, key in (("self time (leaf frame)", "self"), ("inclusive", "inclusive"),
                       ("self time by file", "files")):  # fmt: skip
        print(f"\n  {title}")
        rows = summary[key]
        assert isinstance(rows, list)
        for row in rows[:n]:
            print(f"  {row['pct']:5.1f}%  {row['where']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    print_summary(summarize(args.file, args.top), args.top)


if __name__ == "__main__":
    main()
