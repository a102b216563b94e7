"""`python -m naraft.checker`: per-key lines, a summary line and the exit status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from naraft.checker.__main__ import main


def _write(path: Path, *events: dict[str, object]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def _op(
    process: int, f: str, key: str, start: int, end: int, value: object = None
) -> list[dict[str, object]]:
    invoke: dict[str, object] = {
        "process": process,
        "type": "invoke",
        "f": f,
        "key": key,
        "time": start,
    }
    done: dict[str, object] = {"process": process, "type": "ok", "f": f, "key": key, "time": end}
    if f == "read":
        done["value"] = value
    else:
        invoke["value"] = value
    return [invoke, done]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "good.jsonl",
        *_op(1, "write", "x", 0, 1, "a"),
        {"process": "nemesis", "type": "info", "f": "kill", "value": "n1", "time": 2},
        *_op(2, "read", "x", 3, 4, "a"),
        *_op(2, "read", "y", 5, 6, None),
    )


@pytest.fixture
def stale(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "stale.jsonl",
        *_op(1, "write", "x", 0, 1, "a"),
        *_op(1, "write", "x", 2, 3, "b"),
        *_op(2, "read", "x", 4, 5, "a"),
    )


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out)
    return status, out.getvalue()


def test_a_linearizable_history_exits_zero_with_a_line_per_key_and_a_summary(good: Path) -> None:
    status, output = _run(str(good))
    lines = output.splitlines()
    assert status == 0
    assert lines[0] == f"{good}: key 'x': linearizable (ops=2 searched=2 states=2)"
    assert lines[1].startswith(f"{good}: key 'y': linearizable")
    assert lines[-1] == (
        "summary: 1 file(s), 2 key(s): 2 linearizable, 0 not linearizable, 0 unknown, "
        "0 malformed file(s) => LINEARIZABLE"
    )


def test_a_violation_exits_one_and_explains_itself(good: Path, stale: Path) -> None:
    status, output = _run(str(good), str(stale))
    assert status == 1
    assert f"{stale}: key 'x': not linearizable" in output
    assert 'process 2 read "a" ok (line 5) cannot be placed' in output
    assert output.splitlines()[-1].endswith(
        "1 not linearizable, 0 unknown, 0 malformed file(s) => NOT LINEARIZABLE"
    )


def test_quiet_prints_only_keys_that_are_not_linearizable(good: Path, stale: Path) -> None:
    _, output = _run("--quiet", str(good), str(stale))
    assert str(good) not in output
    assert str(stale) in output


def test_a_malformed_file_exits_two_naming_the_line(
    tmp_path: Path, good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"process": 1, "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 0}\n'
        '{"process": 1, "type": "done"}\n'
    )
    status, output = _run(str(good), str(bad))
    assert status == 2
    assert f"{bad}: malformed history: line 2, field 'type'" in capsys.readouterr().err
    assert output.splitlines()[-1].endswith("1 malformed file(s) => MALFORMED INPUT")


def test_a_missing_file_counts_as_malformed(tmp_path: Path) -> None:
    status, _ = _run(str(tmp_path / "absent.jsonl"))
    assert status == 2


def test_an_exhausted_budget_exits_three(tmp_path: Path) -> None:
    events = [event for p in range(8) for event in _op(p, "write", "x", p, 100, p)]
    events += _op(9, "read", "x", 101, 102, "late") + _op(9, "write", "x", 103, 104, "late")
    path = _write(tmp_path / "hard.jsonl", *events)
    status, output = _run("--max-states", "5", str(path))
    assert status == 3
    assert output.splitlines()[-1].endswith("=> UNKNOWN")


def test_the_module_runs_as_a_program(stale: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "naraft.checker", str(stale)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 1
    assert completed.stdout.splitlines()[-1].startswith("summary: 1 file(s), 1 key(s)")
