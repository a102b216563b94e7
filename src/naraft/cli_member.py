"""`naraft member list|add|remove`: change a running cluster's members one at a time.

`add ID` makes ID a learner (it receives the log, does not vote), waits until its match
index reaches the leader's commit index (a progress bar), then promotes it to voter, so
that adding a member never leaves a majority waiting on an empty log. The node ID must be
running with `naraft server --join URL` (or be restarted with the new member list).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from naraft.client import change_member, list_members, login
from naraft.tls import client_context

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
CATCH_UP_POLL_SECONDS: Final = 0.2


class _Target:
    """The cluster to talk to: a base URL, a TLS context, an admin token."""

    def __init__(
        self, server: str, username: str, password_file: Path | None, cacert: Path | None
    ) -> None:
        self.base = server.rstrip("/")
        self.context: ssl.SSLContext | None = (
            client_context(cacert) if cacert or self.base.startswith("https") else None
        )
        self.token: str | None = None
        if password_file is not None:
            password = password_file.read_text().strip()
            self.token = login(self.base, password, username=username, ssl_context=self.context)

    def members(self) -> Any:
        return list_members(self.base, token=self.token, ssl_context=self.context)

    def change(self, member: str, action: str) -> Any:
        return change_member(self.base, member, action, token=self.token, ssl_context=self.context)


def _options(command: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--server", "server_url", default="http://127.0.0.1:8848", help="any member"
            ),
            click.option(
                "--username", default="nacos", show_default=True, help="an admin, with auth on"
            ),
            click.option(
                "--password-file",
                type=_FILE,
                default=None,
                help="with auth on: that admin's password (e.g. the cluster's admin.password)",
            ),
            click.option(
                "--cacert",
                type=_FILE,
                default=None,
                help="CA certificate (PEM) to verify TLS nodes with [default: the system's CAs]",
            ),
        ]
    ):
        command = option(command)
    return command


def _connect(
    server_url: str, username: str, password_file: Path | None, cacert: Path | None
) -> _Target:
    try:
        return _Target(server_url, username, password_file, cacert)
    except urllib.error.HTTPError as error:
        raise click.ClickException(f"login refused ({error.code}): {_reason(error)}") from None
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot reach {server_url}: {error}") from None


@click.group()
def member() -> None:
    """The members of a running cluster."""


@member.command("list")
@_options
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON")
def list_command(
    server_url: str, username: str, password_file: Path | None, cacert: Path | None, as_json: bool
) -> None:
    """Show the voters and learners, the leader, and how far each member is behind."""
    target = _connect(server_url, username, password_file, cacert)
    answer = _call(server_url, "list refused", target.members)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    table = Table(title=f"members (term {answer['term']}, commit {answer['commitIndex']})")
    for column in ("id", "role", "leader", "match", "lag", "reachable"):
        table.add_column(column)
    for row in answer["members"]:
        table.add_row(
            row["id"],
            row["role"],
            "yes" if row["leader"] else "",
            _text(row["matchIndex"]),
            _text(row["lag"]),
            _text(row["reachable"]),
        )
    Console().print(table)


@member.command("add")
@click.argument("node_id", metavar="ID")
@_options
@click.option("--learner-only", is_flag=True, help="stop once it is a learner (no promotion)")
@click.option(
    "--timeout-seconds",
    type=click.IntRange(1, 86_400),
    default=600,
    show_default=True,
    help="how long it may take to catch up",
)
def add_command(
    node_id: str,
    server_url: str,
    username: str,
    password_file: Path | None,
    cacert: Path | None,
    learner_only: bool,
    timeout_seconds: int,
) -> None:
    """Add ID (host:port, started with `naraft server --join`) as a learner, wait until it
    has caught up with the leader, then promote it to voter."""
    target = _connect(server_url, username, password_file, cacert)
    members = _call(server_url, "list refused", target.members)
    known = {row["id"]: row["role"] for row in members["members"]}
    if known.get(node_id) == "voter":
        raise click.ClickException(f"{node_id} is a voter already")
    if node_id not in known:
        _call(server_url, "add refused", lambda: target.change(node_id, "add"))
        click.echo(f"{node_id} is a learner")
    if learner_only:
        return
    _wait_caught_up(target, server_url, node_id, timeout_seconds)
    answer = _call(server_url, "promote refused", lambda: target.change(node_id, "promote"))
    click.echo(f"{node_id} is a voter; voters are {','.join(answer['voters'])}")


@member.command("remove")
@click.argument("node_id", metavar="ID")
@_options
def remove_command(
    node_id: str, server_url: str, username: str, password_file: Path | None, cacert: Path | None
) -> None:
    """Remove ID (a voter or a learner) from the cluster."""
    target = _connect(server_url, username, password_file, cacert)
    answer = _call(server_url, "remove refused", lambda: target.change(node_id, "remove"))
    click.echo(f"{node_id} removed; voters are {','.join(answer['voters'])}")


def _wait_caught_up(target: _Target, server_url: str, node_id: str, timeout_seconds: int) -> None:
    """Until `node_id`'s match index reaches the leader's commit index, with a bar."""
    deadline = time.monotonic() + timeout_seconds
    columns = (
        TextColumn(f"catching up {node_id}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} entries"),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("catch-up", total=None)
        while True:
            answer = _call(server_url, "list refused", target.members)
            row = next((r for r in answer["members"] if r["id"] == node_id), None)
            if row is None:
                raise click.ClickException(f"{node_id} is no longer a member")
            commit, match = answer["commitIndex"], row["matchIndex"]
            if match is not None:
                progress.update(task, total=commit, completed=min(match, commit))
                if match >= commit:
                    return
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"{node_id} did not catch up in {timeout_seconds} s (match {match}, "
                    f"commit {commit}); it stays a learner: is it running with --join?"
                )
            time.sleep(CATCH_UP_POLL_SECONDS)


def _call(server_url: str, what: str, action: Any) -> Any:
    try:
        return action()
    except urllib.error.HTTPError as error:
        hint = ""
        if error.code in (401, 403):
            hint = " (with auth on: an admin's --username and --password-file)"
        raise click.ClickException(f"{what} ({error.code}): {_reason(error)}{hint}") from None
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot reach {server_url}: {error}") from None


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
    except ValueError:
        return str(error.reason)
    return str(body.get("error", error.reason)) if isinstance(body, dict) else str(body)
