"""`pip install naraft` from a built wheel: the wheel carries its entry point, its data
(openapi.json), compatible ranges (no exact pins) and uvloop behind a platform marker; and
the commands run where uvloop is missing (the server on asyncio's loop)."""

from __future__ import annotations

import asyncio
import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Final

import pytest

from naraft import __version__

ROOT: Final = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the worktree stays clean): with the
    environment's setuptools when it can build wheels, else in pip's isolated build."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info"))  # fmt: skip
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out)]
    has_bdist_wheel = subprocess.run(
        [sys.executable, "-c", "import setuptools.command.bdist_wheel"],
        capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    if has_bdist_wheel:
        command.append("--no-build-isolation")
    built = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=300, check=False
    )
    if built.returncode != 0 and not has_bdist_wheel and "setuptools" in built.stderr:
        pytest.skip(f"no setuptools with bdist_wheel here, nor PyPI: {built.stderr[-200:]}")
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("naraft-*.whl")
    return found


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"naraft-{__version__}.dist-info/METADATA").decode()
    return email.message_from_string(text)


def test_the_wheel_names_its_command_and_carries_its_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"naraft-{__version__}.dist-info/entry_points.txt").decode()
    assert "naraft = naraft.cli:main" in entry_points
    assert "naraft/api/openapi.json" in names
    # the console's pages, script and stylesheet (no build step: they ship as written)
    assert "naraft/api/console/templates/base.html" in names
    assert "naraft/api/console/static/console.js" in names
    assert "naraft/api/console/static/console.css" in names
    assert "naraft/cli.py" in names
    assert not any(name.startswith("tests/") for name in names)


def test_the_wheel_asks_for_ranges_and_uvloop_only_where_it_installs(wheel: Path) -> None:
    meta = metadata(wheel)
    assert meta["Name"] == "naraft"
    assert meta["Version"] == __version__
    assert meta["Requires-Python"] == ">=3.11"
    runtime = [r for r in meta.get_all("Requires-Dist", []) if "extra ==" not in r]
    assert runtime
    assert not [r for r in runtime if "==" in r.split(";")[0]], runtime
    (uvloop,) = [r for r in runtime if r.startswith("uvloop")]
    assert 'sys_platform != "win32"' in uvloop
    assert 'platform_python_implementation == "CPython"' in uvloop


def test_pip_installs_the_wheel_and_its_command_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    script = target / "bin" / "naraft"
    assert script.exists()
    ran = subprocess.run(
        [sys.executable, str(script), "--version"], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert __version__ in ran.stdout


BLOCK_UVLOOP: Final = "import sys; sys.modules['uvloop'] = None\n"


def test_the_operator_commands_run_without_uvloop() -> None:
    code = BLOCK_UVLOOP + "from naraft.cli import main\nmain(['status', '--help'])\n"
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert "--json" in ran.stdout


@pytest.mark.usefixtures("no_leftover_event_loop")
def test_the_server_loop_falls_back_to_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    from naraft import cli

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    seen: list[str] = []

    async def task() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    cli._run_loop(task())
    assert seen == ["asyncio.unix_events"]
