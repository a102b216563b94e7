"""The `naraft` command: `server`, `cluster up`, `status`.

Exit codes: 0 success; 1 an expected failure (one line on stderr, no traceback);
2 a usage error (click's convention).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import click
import uvloop
from rich.console import Console
from rich.table import Table

from naraft.config import (
    CLUSTER_TOKEN_ENV_VAR,
    DEFAULT_CLUSTER_TOKEN,
    DEFAULT_QUOTA_BYTES,
    PROFILES,
    HealthTimings,
    HttpLimits,
    NodeConfig,
    Profile,
    Timers,
    check_cluster_token,
    check_members,
    parse_address,
    read_cluster_conf,
)
from naraft.errors import NaraftError
from naraft.naming.push import DEFAULT_ACK_TIMEOUT_MS, DEFAULT_MAX_RETRIES, PushTimings
from naraft.storage.base import StoreError
from naraft.transport.auth import (
    INSECURE_FILE_OPTION,
    SECRET_ENV_VAR,
    SecretError,
    generate_secret,
    load_secret,
)

logger = logging.getLogger("naraft")


def _fail(message: str) -> None:
    click.echo(f"naraft: {message}", err=True)
    raise SystemExit(1)


@click.group()
@click.version_option(package_name="naraft")
def main() -> None:
    """naraft: a Nacos-compatible service registry replicated by Raft."""


# ---------------------------------------------------------------------- server


@main.command()
@click.option("--id", "node_id", required=True, help="this node's address, host:port")
@click.option("--listen", default=None, help="address to bind, host:port (default: --id)")
@click.option("--peers", default=None, help="every member, comma-separated host:port")
@click.option(
    "--cluster-conf",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Nacos cluster.conf: one host:port a line",
)
@click.option("--standalone", is_flag=True, help="one-node mode: commits locally")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--profile", type=click.Choice([p.value for p in Profile]), default=Profile.DEFAULT.value
)
@click.option("--tick-ms", type=click.IntRange(1, 10_000), default=None)
@click.option("--election-ticks", type=click.IntRange(2, 10_000), default=None)
@click.option("--heartbeat-ticks", type=click.IntRange(1, 10_000), default=None)
@click.option(
    "--cluster-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"file holding the peer secret (or set {SECRET_ENV_VAR})",
)
@click.option(
    INSECURE_FILE_OPTION,
    "allow_insecure_secret_file",
    is_flag=True,
    help="accept a secret file that its group or others may read (refused otherwise)",
)
@click.option(
    "--header-timeout-ms",
    type=click.IntRange(100, 600_000),
    default=5000,
    help="close a connection whose request headers take longer, from their first byte",
)
@click.option(
    "--body-timeout-ms",
    type=click.IntRange(100, 600_000),
    default=15_000,
    help="close a connection whose request body takes longer, once its headers are in",
)
@click.option(
    "--idle-timeout-ms",
    type=click.IntRange(100, 3_600_000),
    default=60_000,
    help="close a keep-alive connection idle for longer",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    help="client connections at once; more are answered 503 (peers are counted apart)",
)
@click.option(
    "--max-params",
    type=click.IntRange(1, 100_000),
    default=256,
    help="query plus form parameters of one request; more are answered 400",
)
@click.option(
    "--cluster-token",
    envvar=CLUSTER_TOKEN_ENV_VAR,
    default=DEFAULT_CLUSTER_TOKEN,
    show_default=True,
    help="with the member list, gives the cluster id kept in the data directory; use a new"
    f" one for every new cluster (or set {CLUSTER_TOKEN_ENV_VAR})",
)
@click.option("--unhealthy-after-ms", type=click.IntRange(1), default=15_000)
@click.option("--remove-after-ms", type=click.IntRange(1), default=30_000)
@click.option("--sweep-ms", type=click.IntRange(10), default=1000)
@click.option(
    "--push-ack-timeout-ms",
    type=click.IntRange(10),
    default=DEFAULT_ACK_TIMEOUT_MS,
    help="UDP push: resend an unacked packet after this long (Nacos: 10 s)",
)
@click.option(
    "--push-retries",
    type=click.IntRange(0, 100),
    default=DEFAULT_MAX_RETRIES,
    help="UDP push: resends of an unacked packet (Nacos: 1)",
)
@click.option(
    "--compact-entries",
    type=click.IntRange(1),
    default=10_000,
    help="compact the log once it holds more entries than this after the snapshot",
)
@click.option(
    "--compact-keep", type=click.IntRange(0), default=2_000, help="log tail kept when compacting"
)
@click.option(
    "--digest-batch", type=click.IntRange(1, 5000), default=50, help="datums per catch-up fetch"
)
@click.option(
    "--digest-parallel", type=click.IntRange(1, 64), default=4, help="catch-up fetches in flight"
)
@click.option(
    "--checksum-interval-ms",
    type=click.IntRange(0),
    default=5000,
    help="leader's state-checksum reports to followers (0: off)",
)
@click.option(
    "--peer-max-body-mib",
    type=click.IntRange(8, 1024),
    default=64,
    help="largest peer request taken, compressed or not (the client API keeps 1 MiB)",
)
@click.option(
    "--max-append-kib",
    type=click.IntRange(64, 65536),
    default=1024,
    help="entries' bytes per AppendEntries message (always at least one entry)",
)
@click.option(
    "--quota-bytes",
    type=click.IntRange(0),
    default=DEFAULT_QUOTA_BYTES,
    help="bound on the replicated state (keys + values); the leader's applies; 0: none",
)
@click.option("--log-level", default="INFO", type=click.Choice(["DEBUG", "INFO", "WARNING"]))
def server(
    node_id: str,
    listen: str | None,
    peers: str | None,
    cluster_conf: Path | None,
    standalone: bool,
    data_dir: Path,
    profile: str,
    tick_ms: int | None,
    election_ticks: int | None,
    heartbeat_ticks: int | None,
    cluster_secret_file: Path | None,
    allow_insecure_secret_file: bool,
    header_timeout_ms: int,
    body_timeout_ms: int,
    idle_timeout_ms: int,
    max_connections: int,
    max_params: int,
    cluster_token: str,
    unhealthy_after_ms: int,
    remove_after_ms: int,
    sweep_ms: int,
    push_ack_timeout_ms: int,
    push_retries: int,
    compact_entries: int,
    compact_keep: int,
    digest_batch: int,
    digest_parallel: int,
    checksum_interval_ms: int,
    peer_max_body_mib: int,
    max_append_kib: int,
    quota_bytes: int,
    log_level: str,
) -> None:
    """Run one node in the foreground."""
    # Everything the node creates (database, WAL, audit log, lock) is its user's alone.
    os.umask(0o077)
    logging.basicConfig(
        level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        config = _node_config(
            node_id=node_id,
            listen=listen,
            peers=peers,
            cluster_conf=cluster_conf,
            standalone=standalone,
            data_dir=data_dir,
            timers=_timers(Profile(profile), tick_ms, election_ticks, heartbeat_ticks),
            secret_file=cluster_secret_file,
            allow_insecure_secret_file=allow_insecure_secret_file,
            health=HealthTimings(
                unhealthy_after_ms=unhealthy_after_ms,
                remove_after_ms=remove_after_ms,
                sweep_interval_seconds=sweep_ms / 1000,
            ),
        )
    except (NaraftError, SecretError, OSError) as error:
        _fail(str(error))
        return
    if max_append_kib * 1024 * 2 > peer_max_body_mib * 1024 * 1024:
        # Commands travel in base64 (4/3) inside JSON: keep twice the room.
        _fail("--max-append-kib must be at most half of --peer-max-body-mib")
        return
    config = dataclasses.replace(
        config,
        compact_max_entries=compact_entries,
        compact_keep_entries=compact_keep,
        digest_batch_keys=digest_batch,
        digest_parallel=digest_parallel,
        checksum_interval_seconds=checksum_interval_ms / 1000,
        peer_max_body_bytes=peer_max_body_mib * 1024 * 1024,
        max_append_bytes=max_append_kib * 1024,
        http=HttpLimits(
            header_timeout_seconds=header_timeout_ms / 1000,
            body_timeout_seconds=body_timeout_ms / 1000,
            idle_timeout_seconds=idle_timeout_ms / 1000,
            max_connections=max_connections,
            max_params=max_params,
        ),
        quota_bytes=quota_bytes,
    )
    from naraft.node import StartupError  # the server's imports are only paid by `server`

    try:
        config = dataclasses.replace(config, cluster_token=check_cluster_token(cluster_token))
    except NaraftError as error:
        _fail(str(error))
        return
    try:
        _run_until_signal(
            config, PushTimings(ack_timeout_ms=push_ack_timeout_ms, max_retries=push_retries)
        )
    except StoreError as error:
        _fail(f"cannot open the store: {error}")
    except StartupError as error:
        _fail(str(error))


def _timers(
    profile: Profile, tick_ms: int | None, election: int | None, heartbeat: int | None
) -> Timers:
    base = PROFILES[profile]
    timers = Timers(
        tick_seconds=tick_ms / 1000 if tick_ms is not None else base.tick_seconds,
        heartbeat_ticks=heartbeat if heartbeat is not None else base.heartbeat_ticks,
        election_ticks=election if election is not None else base.election_ticks,
    )
    if timers.election_ticks <= timers.heartbeat_ticks:
        raise NaraftError("--election-ticks must be greater than --heartbeat-ticks")
    return timers


def _node_config(
    *,
    node_id: str,
    listen: str | None,
    peers: str | None,
    cluster_conf: Path | None,
    standalone: bool,
    data_dir: Path,
    timers: Timers,
    secret_file: Path | None,
    health: HealthTimings,
    allow_insecure_secret_file: bool = False,
) -> NodeConfig:
    parse_address(node_id, field="--id")
    host, port = parse_address(listen or node_id, field="--listen")
    sources = sum(x for x in (peers is not None, cluster_conf is not None, standalone))
    if sources != 1:
        raise NaraftError("give exactly one of --peers, --cluster-conf, --standalone")
    if standalone:
        members: tuple[str, ...] = (node_id,)
    elif cluster_conf is not None:
        members = read_cluster_conf(cluster_conf)
    else:
        assert peers is not None
        members = tuple(p.strip() for p in peers.split(",") if p.strip())
    members = check_members(node_id, members)
    secret = load_secret(secret_file, os.environ, allow_insecure_file=allow_insecure_secret_file)
    if secret is None and len(members) > 1:
        raise NaraftError(
            f"a clustered node needs a cluster secret: --cluster-secret-file or {SECRET_ENV_VAR}"
        )
    return NodeConfig(
        id=node_id,
        peers=members,
        data_dir=data_dir,
        timers=timers,
        secret=secret,
        listen_host=host,
        listen_port=port,
        health=health,
    )


def _run_until_signal(config: NodeConfig, push_timings: PushTimings | None = None) -> None:
    from naraft.node import StartupError, run_node

    # Everything imported so far lives as long as the process: keep it out of the
    # collector's generations, and collect young objects less often. Measured by the
    # benchmark helper: full collections of ~64 ms were ~7 % of the leader's CPU.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    async def main_task() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_node(config, push_timings=push_timings)
        logger.info("node %s stopped", config.id)

    try:
        uvloop.run(main_task())
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
def cluster_up(nodes: int, base_port: int, host: str, data_dir: Path, profile: str) -> None:
    """Start NODES local nodes in the foreground; Ctrl-C stops them all cleanly."""
    console = Console()
    members = [f"{host}:{base_port + i}" for i in range(nodes)]
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret_file = data_dir / "cluster.secret"
        _write_secret_file(secret_file)
    except OSError as error:
        _fail(f"cannot prepare {data_dir}: {error}")
        return
    processes = _start_nodes(members, data_dir, secret_file, profile, standalone=nodes == 1)
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / "cluster.secret"
    if not secret_file.exists():
        secret_file.write_text(generate_secret() + "\n")
        secret_file.chmod(0o600)
    try:
        token = cluster_token_for(data_dir, members)
    except (NaraftError, OSError) as error:
        _fail(f"cannot use {data_dir / CLUSTER_TOKEN_FILE}: {error}")
        return
    processes = _start_nodes(
        members, data_dir, secret_file, profile, standalone=nodes == 1, token=token
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        leader = asyncio.run(_wait_for_leader(members, timeout_seconds=30))
        table = Table(title=f"naraft: {nodes}-node cluster (data in {data_dir})")
        for column in ("node", "address", "pid", "log"):
            table.add_column(column)
        for member, process in zip(members, processes, strict=True):
            mark = " (leader)" if member == leader else ""
            log = data_dir / member.replace(":", "_") / "node.log"
            table.add_row(member + mark, f"http://{member}", str(process.pid), str(log))
        console.print(table)
        if leader is None:
            console.print("[red]no leader elected within 30 s; see the logs[/red]")
        else:
            console.print(f"leader: [bold]{leader}[/bold]. Try:")
            console.print(
                f"  curl -X POST 'http://{members[0]}/nacos/v1/ns/instance?"
                "serviceName=demo&ip=10.0.0.1&port=8080&ephemeral=false'"
            )
            console.print(
                f"  curl 'http://{members[-1]}/nacos/v1/ns/instance/list?serviceName=demo'"
            )
            console.print("Ctrl-C stops every node.")
        while not stopping:
            for member, process in zip(members, processes, strict=True):
                if process.poll() is not None:
                    console.print(f"[yellow]{member} exited with {process.returncode}[/yellow]")
                    stopping = True
            time.sleep(0.5)
    finally:
        _stop_nodes(processes)
        console.print("all nodes stopped")


def _write_secret_file(path: Path) -> None:
    """A fresh secret in `path`, unless one is there. The file is created 0600 in one
    step (O_EXCL), so the secret is never readable by others, not even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        with os.fdopen(fd, "w") as file:
            file.write(generate_secret() + "\n")
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # never leave an empty secret behind
        raise


CLUSTER_TOKEN_FILE = "cluster.token"
NODE_DB_FILE = "naraft.db"  # node.DB_FILE; not imported, so that `cluster up` stays light


def _node_dir(data_dir: Path, member: str) -> Path:
    return data_dir / member.replace(":", "_")


def cluster_token_for(data_dir: Path, members: Sequence[str]) -> str:
    """The token of the local cluster: a fresh random one whenever no member has data yet
    (a new cluster, or one wiped: a new incarnation, whose id differs even with the same
    secret), else the one kept in `cluster.token` beside the secret."""
    token_file = data_dir / CLUSTER_TOKEN_FILE
    fresh = not any((_node_dir(data_dir, m) / NODE_DB_FILE).exists() for m in members)
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


def _start_nodes(
    members: Sequence[str],
    data_dir: Path,
    secret_file: Path,
    profile: str,
    *,
    standalone: bool,
    token: str = DEFAULT_CLUSTER_TOKEN,
) -> list[subprocess.Popen[bytes]]:
    processes = []
    for member in members:
        node_dir = data_dir / member.replace(":", "_")
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        node_dir = _node_dir(data_dir, member)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "naraft", "server", "--id", member,
            "--data-dir", str(node_dir), "--profile", profile, "--cluster-token", token,
        ]  # fmt: skip
        if standalone:
            args.append("--standalone")
        else:
            args += ["--peers", ",".join(members), "--cluster-secret-file", str(secret_file)]
        fd = os.open(node_dir / "node.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        log = os.fdopen(fd, "ab")
        processes.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        log.close()  # the child holds its own copy
    return processes


def _stop_nodes(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_for_leader(members: Sequence[str], *, timeout_seconds: float) -> str | None:
    deadline = time.monotonic() + timeout_seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while time.monotonic() < deadline:
            for member in members:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with session.get(f"http://{member}/nacos/v1/ns/raft/leader") as answer:
                        leader = (await answer.json()).get("leader")
                        if isinstance(leader, str):
                            return leader
            await asyncio.sleep(0.2)
    return None


# ---------------------------------------------------------------------- status


@main.command()
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
def status(server_url: str) -> None:
    """Show every member's role, term and log positions as a table."""
    try:
        rows = asyncio.run(_collect_status(server_url.rstrip("/")))
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        _fail(f"cannot reach {server_url}: {error}")
        return
    table = Table(title="naraft cluster")
    for column in ("member", "role", "term", "leader", "commit", "applied", "last log", "lag"):
        table.add_column(column)
    leader_last = max((int(r.get("lastLogIndex", 0)) for r in rows.values() if r), default=0)
    for member, row in rows.items():
        if not row:
            table.add_row(member, "[red]unreachable[/red]", "", "", "", "", "", "")
            continue
        lag = leader_last - int(row["appliedIndex"])
        table.add_row(
            member,
            str(row["role"]),
            str(row["term"]),
            str(row["leader"]),
            str(row["commitIndex"]),
            str(row["appliedIndex"]),
            str(row["lastLogIndex"]),
            str(lag),
        )
    console = Console()
    console.print(table)
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


async def _collect_status(server_url: str) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        async with session.get(f"{server_url}/nacos/v1/ns/raft/state") as answer:
            first = await answer.json()
        rows: dict[str, dict[str, Any]] = {}
        for member in first.get("members", [first["id"]]):
            try:
                async with session.get(f"http://{member}/nacos/v1/ns/raft/state") as answer:
                    rows[member] = await answer.json()
            except (aiohttp.ClientError, TimeoutError):
                rows[member] = {}
        return rows


from naraft.cli_chaos import chaos  # noqa: E402 - the campaign's own imports stay lazy

main.add_command(chaos)

from naraft.cli_import import import_nacos  # noqa: E402 - registered after the core commands

main.add_command(import_nacos)

from naraft.cli_repair import repair  # noqa: E402 - offline repairs of a stopped node

main.add_command(repair)
