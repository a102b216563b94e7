"""`naraft leader transfer`: hand leadership over (Raft thesis §3.10), as etcd's
`etcdctl move-leader`; before a planned restart of the leader, or to move it off a busy
machine."""

from __future__ import annotations

import json
import urllib.error

import click

from naraft.client import transfer_leadership


@click.group()
def leader() -> None:
    """Leadership of a running cluster."""


@leader.command("transfer")
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
@click.option("--to", "target", default=None, help="member id (default: the most caught up)")
def transfer_command(server_url: str, target: str | None) -> None:
    """Hand leadership over to another member and wait until it leads."""
    try:
        answer = transfer_leadership(server_url.rstrip("/"), target)
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
