"""The `naraft` command: `server`, `cluster up`, `status`.

Exit codes: 0 success; 1 an expected failure (one line on stderr, no traceback);
2 a usage error (click's convention).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import secrets
import signal
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import click

from naraft.client import INSTANCE_LIST_PATH, INSTANCE_PATH, LOGIN_PATH, STATE_PATH, fetch_json
from naraft.cluster import GRPC_PORT_OFFSET, ProcessCluster, node_data_dir, taken_ports
from naraft.config import (
    AuthMode,
    NodeConfig,
    Profile,
    check_cluster_token,
    is_loopback,
)
from naraft.config_sources import build_config, flags_given, merge, server_options
from naraft.errors import NaraftError
from naraft.logs import setup_logging
from naraft.storage.base import StoreError
from naraft.tls import client_context
from naraft.transport.auth import (
    SecretError,
)

if TYPE_CHECKING:  # rich is imported by the commands that draw with it
    from rich.console import Console

logger = logging.getLogger("naraft")


def _fail(message: str) -> None:
    click.echo(f"naraft: {message}", err=True)
    raise SystemExit(1)


class _LazyGroup(click.Group):
    """The group whose tools (`chaos`, the importers, `repair`, `leader`, `snapshot`,
    `member`) are imported only when named: `naraft server` then loads none of them, nor
    the rich tables and progress bars they draw with (about 4 MiB of a node's memory).
    `naraft --help` lists them all, importing each for its one-line help."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)  # command name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self._lazy.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = where.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=_LazyGroup,
    lazy={
        "chaos": "naraft.cli_chaos:chaos",
        "import-nacos": "naraft.cli_import:import_nacos",
        "import-nacos-users": "naraft.cli_import:import_nacos_users",
        "repair": "naraft.cli_repair:repair",
        "leader": "naraft.cli_leader:leader",
        "snapshot": "naraft.cli_snapshot:snapshot",
        "member": "naraft.cli_member:member",
    },
)
@click.version_option(package_name="naraft")
def main() -> None:
    """naraft: a Nacos-compatible service registry replicated by Raft."""


# ---------------------------------------------------------------------- server


@main.command()
@server_options
@click.pass_context
def server(ctx: click.Context, /, config_file: Path | None, **values: object) -> None:
    """Run one node in the foreground.

    Every setting comes from its flag, else its NARAFT_* variable, else the --config file,
    else its default."""
    # Everything the node creates (database, WAL, audit log, lock) is its user's alone.
    os.umask(0o077)
    try:
        merged = merge(flags=flags_given(ctx, values), env=os.environ, file=config_file)
        config = build_config(merged, os.environ)
    except (NaraftError, SecretError, OSError) as error:
        _fail(str(error))
        return
    setup_logging(config.log)
    from naraft.node import StartupError  # the server's imports are only paid by `server`

    try:
        _run_until_signal(config)
    except StoreError as error:
        _fail(f"cannot open the store: {error}")
    except StartupError as error:
        _fail(str(error))


def _run_loop(main_task: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop where it is installed (pyproject's marker), else on
    asyncio's own loop: the node behaves the same, a little slower."""
    try:
        import uvloop
    except ImportError:
        logger.info("uvloop is not installed: running on asyncio's event loop")
        asyncio.run(main_task)
        return
    uvloop.run(main_task)


def _run_until_signal(config: NodeConfig) -> None:
    from naraft.node import StartupError, run_node

    # Everything imported so far lives as long as the process: keep it out of the
    # collector's generations, and collect young objects less often. Measured by the
    # benchmark helper: full collections of ~64 ms were ~7 % of the leader's CPU.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    async def main_task() -> None:
        # SIGTERM: a leader hands over first, then the node stops (a second SIGTERM stops it
        # at once); SIGINT (Ctrl-C): a clean stop now, without a hand-over.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_sigterm() -> None:
            if stop.is_set():
                task.cancel()
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        loop.add_signal_handler(signal.SIGINT, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_node(config, stop=stop)
        logger.info("node %s stopped", config.id)

    try:
        _run_loop(main_task())
    except* (StoreError, StartupError) as group:
        # The store error may sit in nested groups (the replica's TaskGroup inside the node's):
        # re-raise the error itself so that `server` prints it as one line, not a traceback.
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


# ---------------------------------------------------------------------- cluster up


@main.group()
def cluster() -> None:
    """Run a local cluster."""


@cluster.command("up")
@click.option("--nodes", type=click.IntRange(1, 9), default=3)
@click.option("--base-port", type=click.IntRange(1, 65000), default=8848)
@click.option("--host", default="127.0.0.1")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("data"))
@click.option(
    "--profile", type=click.Choice([p.value for p in Profile]), default=Profile.DEFAULT.value
)
@click.option(
    "--tls",
    is_flag=True,
    help="make a throwaway CA and node certificates under DATA_DIR/tls and run with client"
    " TLS and mutual TLS between the nodes",
)
@click.option(
    "--auth",
    type=click.Choice([m.value for m in AuthMode]),
    default=AuthMode.AUTO.value,
    help="logins and permissions; auto: on unless --host is loopback",
)
def cluster_up(
    nodes: int, base_port: int, host: str, data_dir: Path, profile: str, tls: bool, auth: str
) -> None:
    """Start NODES local nodes in the foreground; Ctrl-C stops them all cleanly."""
    from rich.console import Console

    auth_on = auth == AuthMode.ON or (auth == AuthMode.AUTO and not is_loopback(host))
    console = Console()
    members = [f"{host}:{base_port + i}" for i in range(nodes)]
    client_ports = [base_port + i for i in range(nodes)]
    taken = taken_ports(host, [*client_ports, *(p + GRPC_PORT_OFFSET for p in client_ports)])
    if taken:
        port, why = next(iter(taken.items()))
        more = f" (and {len(taken) - 1} more of its ports)" if len(taken) > 1 else ""
        _fail(f"cannot start the cluster: {host}:{port}: {why}{more}; try another --base-port")
        return
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = cluster_token_for(data_dir, members)
    except (NaraftError, OSError) as error:
        _fail(f"cannot use {data_dir / CLUSTER_TOKEN_FILE}: {error}")
        return
    try:
        local = ProcessCluster(
            data_dir,
            nodes,
            host=host,
            ports=[base_port + i for i in range(nodes)],
            cluster_token=token,
            auth="on" if auth_on else "off",
            extra_args=("--profile", profile),
            tls=tls,
        )
    except OSError as error:
        _fail(f"cannot prepare {data_dir}: {error}")
        return
    stopping = False
    failed = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        local.start()
        _show_cluster(console, local, _wait_for_leader(local, lambda: stopping), data_dir)
        _show_auth(console, local)
        while not stopping:
            for node in local.nodes:
                if not node.running:
                    console.print(f"[yellow]{node.id} exited with {node.exit_code}[/yellow]")
                    stopping = failed = True
            time.sleep(0.5)
    finally:
        local.stop()
        console.print("all nodes stopped")
    if failed:
        _fail("a node exited on its own; see its log")


def _show_auth(console: Console, local: ProcessCluster) -> None:
    if local.admin_password_file is None:
        console.print("auth: off (loopback only; --auth on to try logins and tokens)")
        return
    console.print(
        f"auth: on. The admin user is [bold]nacos[/bold]; its password is in "
        f"[bold]{local.admin_password_file}[/bold] (0600). Log in with:"
    )
    console.print(
        f"  curl -X POST '{local.nodes[0].url}{LOGIN_PATH}?username=nacos&password='"
        f'"$(cat {local.admin_password_file})"'
    )
    console.print("  then add accessToken=<token> to every request (or Authorization: Bearer)")


CLUSTER_TOKEN_FILE = "cluster.token"
NODE_DB_FILE = "naraft.db"  # node.DB_FILE; not imported, so that `cluster up` stays light


def cluster_token_for(data_dir: Path, members: Sequence[str]) -> str:
    """The token of the local cluster: a fresh random one whenever no member has data yet
    (a new cluster, or one wiped: a new incarnation, whose id differs even with the same
    secret), else the one kept in `cluster.token` beside the secret."""
    token_file = data_dir / CLUSTER_TOKEN_FILE
    fresh = not any((node_data_dir(data_dir, m) / NODE_DB_FILE).exists() for m in members)
    if not fresh and token_file.exists():
        return check_cluster_token(token_file.read_text().strip())
    token = secrets.token_hex(16)
    partial = token_file.with_name(f"{CLUSTER_TOKEN_FILE}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, token_file)
    return token


def _wait_for_leader(
    local: ProcessCluster, stopping: Callable[[], bool], timeout_seconds: float = 30.0
) -> str | None:
    """The leader by `naraft.cluster`'s rule, once there is one; None on timeout or Ctrl-C."""
    deadline = time.monotonic() + timeout_seconds
    while not stopping() and time.monotonic() < deadline:
        leader = local.find_leader()
        if leader is not None:
            return leader.id
        time.sleep(0.2)
    return None


def _show_cluster(
    console: Console, local: ProcessCluster, leader: str | None, data_dir: Path
) -> None:
    from rich.table import Table

    table = Table(title=f"naraft: {local.size}-node cluster (data in {data_dir})")
    for column in ("node", "address", "pid", "log"):
        table.add_column(column)
    for node in local.nodes:
        mark = " (leader)" if node.id == leader else ""
        table.add_row(node.id + mark, node.url, str(node.pid), str(node.log_path))
    console.print(table)
    if leader is None:
        console.print("[red]no leader elected within 30 s; see the logs[/red]")
        return
    first, last = local.nodes[0].url, local.nodes[-1].url
    curl = "curl" if local.ca_file is None else f"curl --cacert {local.ca_file}"
    console.print(f"leader: [bold]{leader}[/bold]. Try:")
    console.print(
        f"  {curl} -X POST '{first}{INSTANCE_PATH}?"
        "serviceName=demo&ip=10.0.0.1&port=8080&ephemeral=false'"
    )
    console.print(f"  {curl} '{last}{INSTANCE_LIST_PATH}?serviceName=demo'")
    if local.ca_file is not None:
        console.print(
            f"  naraft status --server {first} --cacert {local.ca_file}\n"
            f"TLS: clients verify the nodes with {local.ca_file}; the nodes talk to each"
            " other over mutual TLS with certificates from the same throwaway CA."
        )
    console.print("Ctrl-C stops every node.")


# ---------------------------------------------------------------------- status


STATUS_COLUMNS: Final = (
    "member", "role", "term", "leader", "commit", "applied", "last log", "lag",
)  # fmt: skip


@main.command()
@click.option(
    "--server", "server_url", default="http://127.0.0.1:8848", help="any member (https for TLS)"
)
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA certificate (PEM) to verify TLS nodes with [default: the system's CAs]",
)
@click.option("--json", "as_json", is_flag=True, help="print every member's state as JSON")
def status(server_url: str, cacert: Path | None, as_json: bool) -> None:
    """Show every member's role, term and log positions: a table on a terminal, plain
    columns with full ids when piped, JSON with --json. Exits 1 when a member is down."""
    try:
        context = client_context(cacert) if cacert or server_url.startswith("https") else None
        rows = asyncio.run(_collect_status(server_url.rstrip("/"), context))
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError) as error:
        _fail(f"cannot reach {server_url}: {error}")  # ssl.SSLError is an OSError
        return
    down = [member for member, row in rows.items() if not row]
    if as_json:
        members = [{"member": m, "reachable": bool(row), **row} for m, row in rows.items()]
        click.echo(json.dumps({"members": members}, sort_keys=True))
    else:
        _print_status(rows)
    if down:
        _fail(f"{len(down)} of {len(rows)} members unreachable: {', '.join(down)}")


def _status_cells(rows: dict[str, dict[str, Any]]) -> list[list[str]]:
    leader_last = max((int(r.get("lastLogIndex", 0)) for r in rows.values() if r), default=0)
    cells = []
    for member, row in rows.items():
        if not row:
            cells.append([member, "unreachable", "", "", "", "", "", ""])
            continue
        cells.append(
            [
                member,
                str(row["role"]),
                str(row["term"]),
                str(row["leader"]),
                str(row["commitIndex"]),
                str(row["appliedIndex"]),
                str(row["lastLogIndex"]),
                str(leader_last - int(row["appliedIndex"])),
            ]
        )
    return cells


def _print_status(rows: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    cells = _status_cells(rows)
    console = Console(soft_wrap=True)
    if console.is_terminal:
        table = Table(title="naraft cluster")
        id_width = max(len(line[0]) for line in cells)
        for column in STATUS_COLUMNS:  # ids whole; the numbers give way first
            whole = column in ("member", "leader")
            table.add_column(column, no_wrap=whole, min_width=id_width if whole else None)
        for line in cells:
            styled = [f"[red]{c}[/red]" if c == "unreachable" else c for c in line]
            table.add_row(*styled)
        console.print(table)
    else:  # piped: whole ids in aligned columns, for grep and awk
        table_lines = [list(STATUS_COLUMNS), *cells]
        widths = [max(len(line[i]) for line in table_lines) for i in range(len(STATUS_COLUMNS))]
        for line in table_lines:
            click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    auth = {str(member): row.get("authEnabled") for member, row in rows.items() if row}
    if auth:
        on = sorted(m for m, enabled in auth.items() if enabled)
        off = sorted(m for m, enabled in auth.items() if not enabled)
        where = "on" if not off else "off" if not on else f"on at {', '.join(on)} only"
        console.print(f"auth: {where} (log in with POST {LOGIN_PATH})")
    recorded = max((row.get("clusterVersion") or 1 for row in rows.values() if row), default=1)
    if recorded > 1:
        console.print(
            f"peer protocol: the cluster records version {recorded}; a member cannot go back"
            " to a build before it (docs/deploy.md, rolling upgrades)"
        )
    for member, row in rows.items():
        if row.get("diskFull"):
            console.print(f"[red]{member}: disk full, refusing writes:[/red] {row['diskFull']}")
        if row.get("quotaAlarm"):
            used = f"{row.get('stateBytes')} of {row.get('quotaBytes')} bytes"
            console.print(f"[red]{member}: state quota alarm, refusing writes:[/red] {used}")
    from naraft.digest.progress import catch_up_view  # only `status` pays for it

    catching_up = catch_up_view(rows)
    if catching_up is not None:
        console.print(catching_up)


async def _collect_status(
    server_url: str, context: ssl.SSLContext | None
) -> dict[str, dict[str, Any]]:
    scheme = server_url.partition("://")[0] if "://" in server_url else "http"
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=3),
        connector=aiohttp.TCPConnector(ssl=True if context is None else context),
    ) as session:
        first = await fetch_json(session, f"{server_url}{STATE_PATH}")
        rows: dict[str, dict[str, Any]] = {}
        for member in first.get("members", [first["id"]]):
            try:
                rows[member] = await fetch_json(session, f"{scheme}://{member}{STATE_PATH}")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                rows[member] = {}
        return rows
