"""`naraft server` loads the server and nothing of the tools: the subcommands of their own
modules (and rich, which they draw with) are imported only when named, and so are
`cryptography` (certificates, PyJWT) and jinja2 (the console's first page). Every command
is still listed and runs."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from naraft.cli import main

TOOLS = ("chaos", "import-nacos", "import-nacos-users", "leader", "member", "repair", "snapshot")


def test_what_the_server_imports_holds_no_tool_rich_cryptography_or_jinja2() -> None:
    # what `naraft server` imports before it runs the node, in a fresh interpreter
    probe = (
        "import sys, naraft.cli, naraft.node; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rich', 'cryptography', 'jwt', 'jinja2') or m.startswith('naraft.cli_'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []


def test_every_command_is_listed_and_found() -> None:
    ctx = click.Context(main)
    names = main.list_commands(ctx)
    assert set(TOOLS) | {"server", "cluster", "status"} == set(names)
    for name in names:
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.name == name
    shown = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in shown for name in TOOLS), shown
    assert main.get_command(ctx, "no-such-command") is None


def test_a_lazy_group_runs_its_subcommands() -> None:
    answer = CliRunner().invoke(main, ["member", "--help"])
    assert answer.exit_code == 0, answer.output
    assert "add" in answer.output
    assert "remove" in answer.output
