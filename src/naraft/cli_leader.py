"""`naraft leader transfer`: hand leadership over (Raft thesis §3.10), as etcd's
`etcdctl move-leader`; before a planned restart of the leader, or to move it off a busy
machine."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import click

from naraft.client import login, transfer_leadership
from naraft.tls import client_context

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.group()
def leader() -> None:
    """Leadership of a running cluster."""


@leader.command("transfer")
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
@click.option("--to", "target", default=None, help="member id (default: the most caught up)")
@click.option("--username", default="nacos", show_default=True, help="an admin, with auth on")
@click.option(
    "--password-file",
    type=_FILE,
    default=None,
    help="with auth on: that admin's password (e.g. the cluster's admin.password)",
)
@click.option(
    "--cacert",
    type=_FILE,
    default=None,
    help="CA certificate (PEM) to verify TLS nodes with [default: the system's CAs]",
)
def transfer_command(
    server_url: str,
    target: str | None,
    username: str,
    password_file: Path | None,
    cacert: Path | None,
) -> None:
    """Hand leadership over to another member and wait until it leads."""
    base = server_url.rstrip("/")
    try:
        context = client_context(cacert) if cacert or base.startswith("https") else None
        token = None
        if password_file is not None:
            password = password_file.read_text().strip()
            token = login(base, password, username=username, ssl_context=context)
        answer = transfer_leadership(base, target, token=token, ssl_context=context)
    except urllib.error.HTTPError as error:
        raise click.ClickException(f"transfer refused ({error.code}): {_reason(error)}") from None
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot reach {server_url}: {error}") from None
    click.echo(
        f"leader is now {answer['leader']} (was {answer['previous']}), term {answer['term']}"
    )


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
    except ValueError:
        return str(error.reason)
    return str(body.get("error", error.reason)) if isinstance(body, dict) else str(body)
