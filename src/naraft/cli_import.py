"""`naraft import-nacos DIR --server URL`: propose a Nacos 1.x naming data directory's
services and persistent instances into a running naraft cluster, through its Open API.
`--configs-zip FILE` (with or without DIR) uploads a config export zip the Nacos console
made (`POST /nacos/v1/cs/configs?import=true`, either metadata format) and prints the
counts the server answers; the server checks the whole zip before writing anything.

Order: custom namespaces (`POST /nacos/v1/console/namespaces`), then services
(`POST /nacos/v1/ns/service`, or `PUT` when it exists), then every persistent instance
(`POST /nacos/v1/ns/instance?ephemeral=false`), `--concurrency` requests in flight, with a
progress bar. Unreadable files (bad JSON, huge numbers, deep nesting, not UTF-8, over the
`--max-file-mib` cap, a symlink out of the data directory) are listed by name with a one-line
reason and skipped; a request the cluster refuses (or that times out) is counted and listed
(first few) in the summary. Exit code 1 when anything failed or was unreadable, 0 otherwise.
Re-running is safe: every step is idempotent. Everything printed that comes from the files or
the server is escaped: a file name or a key is never read as console markup.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from naraft.client import ADMIN_USER, SERVICE_PATH, alogin, bearer
from naraft.storage.nacos_import import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_NAMESPACE,
    NacosData,
    NacosFormatError,
    NacosInstance,
    NacosInstanceList,
    NacosService,
    read_nacos_dir,
    shown,
)
from naraft.tls import client_context

NAMESPACES_PATH = "/nacos/v1/console/namespaces"
INSTANCE_PATH = "/nacos/v1/ns/instance"
CONFIGS_PATH = "/nacos/v1/cs/configs"
SHOWN_FAILURES = 10
MAX_ZIP_BYTES = 1 << 30  # the server takes far less (its config body limit); never read more


@dataclass(slots=True)
class _Tally:
    namespaces: int = 0
    services_created: int = 0
    services_updated: int = 0
    instances: int = 0
    failures: list[str] = field(default_factory=list)


@click.command("import-nacos")
@click.argument(
    "directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--configs-zip",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a config export zip from the Nacos console (export or exportV2) to import",
)
@click.option("--namespace", default="", help="with --configs-zip: the namespace to import into")
@click.option(
    "--policy",
    type=click.Choice(["ABORT", "SKIP", "OVERWRITE"], case_sensitive=False),
    default="ABORT",
    show_default=True,
    help="with --configs-zip: what to do with configs that exist (ABORT writes nothing then)",
)
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16)
@click.option("--dry-run", is_flag=True, help="read and report, propose nothing")
@click.option(
    "--max-file-mib",
    type=click.IntRange(1, 4096),
    default=DEFAULT_MAX_FILE_BYTES >> 20,
    show_default=True,
    help="larger datum files are listed and skipped, never read",
)
@click.option(
    "--cacert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="CA certificate (PEM) to verify an https server with [default: the system's CAs]",
)
@click.option("--username", default=ADMIN_USER, show_default=True, help="with auth on: who")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="with auth on: the user's password (e.g. the cluster's admin.password)",
)
def import_nacos(
    directory: Path | None,
    configs_zip: Path | None,
    namespace: str,
    policy: str,
    server_url: str,
    concurrency: int,
    dry_run: bool,
    max_file_mib: int,
    cacert: Path | None,
    username: str,
    password_file: Path | None,
) -> None:
    """Import a Nacos 1.x naming data directory (nacos home, data/naming or its data/),
    and/or a config export zip (--configs-zip)."""
    password = password_file.read_text().strip() if password_file is not None else None
    console = Console(highlight=False, soft_wrap=True)
    login = None if password is None else (username, password)
    if directory is None and configs_zip is None:
        raise click.UsageError("give a Nacos data DIRECTORY, --configs-zip FILE, or both")
    failed = False
    if directory is not None:
        failed = _import_naming(
            directory, server_url, concurrency, dry_run, max_file_mib, cacert, login, console
        )
    if configs_zip is not None:
        failed = (
            _import_configs(
                configs_zip, server_url, namespace, policy.upper(), cacert, login, dry_run, console
            )
            or failed
        )
    if failed:
        raise SystemExit(1)


def _import_naming(
    directory: Path,
    server_url: str,
    concurrency: int,
    dry_run: bool,
    max_file_mib: int,
    cacert: Path | None,
    login: tuple[str, str] | None,
    console: Console,
) -> bool:
    """The naming data directory's import; whether anything failed."""
    try:
        data = read_nacos_dir(directory, max_file_bytes=max_file_mib << 20)
    except NacosFormatError as error:
        click.echo(f"naraft: {shown(error)}", err=True)
        raise SystemExit(1) from None
    console.print(
        f"read {escape(shown(data.root))}: term {data.term}, {len(data.namespaces)} namespaces, "
        f"{len(data.services)} services, {len(data.instance_lists)} instance lists, "
        f"{data.instance_count} persistent instances"
    )
    for bad in data.unreadable:
        console.print(f"[red]unreadable[/red] {escape(shown(bad.path))}: {escape(bad.reason)}")
    tally = _Tally()
    if not dry_run:
        try:
            context = client_context(cacert) if cacert is not None else True
            asyncio.run(
                _propose(
                    data,
                    server_url.rstrip("/"),
                    concurrency,
                    tally,
                    console,
                    context,
                    login=login,
                )  # fmt: skip
            )
        except (aiohttp.ClientError, OSError) as error:
            click.echo(f"naraft: cannot reach {server_url}: {shown(error)}", err=True)
            raise SystemExit(1) from None
    _summary(console, data, tally, dry_run)
    return bool(data.unreadable or tally.failures)


def _import_configs(
    path: Path,
    server_url: str,
    namespace: str,
    policy: str,
    cacert: Path | None,
    login: tuple[str, str] | None,
    dry_run: bool,
    console: Console,
) -> bool:
    """Upload a config export zip; print what the server did. Whether it failed."""
    size = path.stat().st_size
    if size > MAX_ZIP_BYTES:
        click.echo(f"naraft: {shown(path)} is {size} bytes, over {MAX_ZIP_BYTES}", err=True)
        return True
    if dry_run:
        console.print(f"would import {escape(shown(path))} ({size} bytes) with policy {policy}")
        return False
    body = path.read_bytes()
    context = client_context(cacert) if cacert is not None else True
    try:
        status, answer = asyncio.run(
            _upload_zip(server_url.rstrip("/"), body, path.name, namespace, policy, context, login)
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        click.echo(f"naraft: cannot reach {server_url}: {shown(error)}", err=True)
        return True
    if status != 200 or not isinstance(answer, dict):
        click.echo(f"naraft: the server answered {status}: {escape(str(answer)[:300])}", err=True)
        return True
    data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
    assert isinstance(data, dict)
    message = escape(str(answer.get("message"))[:300])
    if answer.get("code") != 200:
        console.print(f"[red]configs refused[/red] (code {answer.get('code')}): {message}")
        return True
    succ, skip = data.get("succCount", 0), data.get("skipCount", 0)
    console.print(f"configs: {succ} imported, {skip} skipped ({policy})")
    fail = data.get("failData") or []
    for item in (data.get("skipData") or [])[:SHOWN_FAILURES]:
        console.print(
            f"  skipped {escape(str(item.get('group')))}/{escape(str(item.get('dataId')))}"
        )
    if fail:
        console.print(
            f"[red]{len(fail)} configs exist already; nothing was written[/red]: {message}"
        )
        for item in fail[:SHOWN_FAILURES]:
            console.print(
                f"  exists {escape(str(item.get('group')))}/{escape(str(item.get('dataId')))}"
            )
        return True
    return False


async def _upload_zip(
    server: str,
    body: bytes,
    filename: str,
    namespace: str,
    policy: str,
    context: ssl.SSLContext | bool,
    login: tuple[str, str] | None,
) -> tuple[int, object]:
    """POST the zip as the console does; the status and the decoded answer."""
    timeout = aiohttp.ClientTimeout(total=600)  # one publish per config, each through the log
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        headers = {}
        if login is not None:
            headers = bearer(await alogin(session, server, login[1], username=login[0]))
        form = aiohttp.FormData()
        form.add_field("file", body, filename=filename, content_type="application/zip")
        params = {"import": "true", "namespace": namespace, "policy": policy}
        async with session.post(
            f"{server}{CONFIGS_PATH}", params=params, data=form, headers=headers
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text


async def _propose(
    data: NacosData,
    server: str,
    concurrency: int,
    tally: _Tally,
    console: Console,
    context: ssl.SSLContext | bool,
    *,
    login: tuple[str, str] | None = None,
) -> None:
    services = _all_services(data)
    instances = [(lst, inst) for lst in data.instance_lists for inst in lst.instances]
    namespaces = [ns for ns in data.namespaces if ns != DEFAULT_NAMESPACE]
    timeout = aiohttp.ClientTimeout(total=30)
    headers: dict[str, str] = {}
    if login is not None:  # with auth on: every request carries the user's token
        first_connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(timeout=timeout, connector=first_connector) as first:
            headers = bearer(await alogin(first, server, login[1], username=login[0]))
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=headers
    ) as session:
        with Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            stages: list[tuple[str, list[Callable[[], Awaitable[None]]]]] = [
                ("namespaces", [_namespace_step(session, server, ns, tally) for ns in namespaces]),
                ("services", [_service_step(session, server, s, tally) for s in services]),
                (
                    "instances",
                    [_instance_step(session, server, lst, i, tally) for lst, i in instances],
                ),
            ]
            for name, steps in stages:
                task = progress.add_task(name, total=len(steps))
                queue = iter(steps)

                async def worker(
                    task_id: object = task,
                    queue: Iterator[Callable[[], Awaitable[None]]] = queue,
                    name: str = name,
                ) -> None:
                    for step in queue:
                        try:
                            await step()
                        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                            # one request lost (a reset, a timeout, an answer that is not
                            # text): counted, the rest goes on
                            tally.failures.append(f"{name}: {type(error).__name__} {error}")
                        progress.advance(task_id)  # type: ignore[arg-type]

                await asyncio.gather(*(worker() for _ in range(concurrency)))


def _all_services(data: NacosData) -> list[NacosService]:
    """Services from metadata files, plus one per instance list that has none."""
    known = {(s.namespace_id, s.group_name, s.service_name) for s in data.services}
    extra = [
        NacosService(
            namespace_id=lst.namespace_id,
            group_name=lst.group_name,
            service_name=lst.service_name,
            source=lst.source,
        )
        for lst in data.instance_lists
        if (lst.namespace_id, lst.group_name, lst.service_name) not in known
    ]
    return [*data.services, *extra]


def _namespace_step(
    session: aiohttp.ClientSession, server: str, namespace: str, tally: _Tally
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        form = {"customNamespaceId": namespace, "namespaceName": namespace}
        async with session.post(server + NAMESPACES_PATH, data=form) as answer:
            text = await answer.text(errors="replace")
            if answer.status == 200 or "exist" in text:
                tally.namespaces += 1
            else:
                tally.failures.append(f"namespace {namespace}: HTTP {answer.status} {text[:120]}")

    return step


def _service_step(
    session: aiohttp.ClientSession, server: str, service: NacosService, tally: _Tally
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        form = {
            "namespaceId": service.namespace_id,
            "groupName": service.group_name,
            "serviceName": service.service_name,
            "protectThreshold": str(service.protect_threshold),
            "metadata": json.dumps(dict(service.metadata)),
        }
        if service.selector is not None:
            form["selector"] = json.dumps(dict(service.selector))
        async with session.post(server + SERVICE_PATH, data=form) as answer:
            text = await answer.text(errors="replace")
            if answer.status == 200:
                tally.services_created += 1
                return
        if "already exists" in text:
            async with session.put(server + SERVICE_PATH, data=form) as answer:
                text = await answer.text(errors="replace")
                if answer.status == 200:
                    tally.services_updated += 1
                    return
        tally.failures.append(
            f"service {service.namespace_id}/{service.group_name}@@{service.service_name}"
            f" ({service.source.name}): HTTP {answer.status} {text[:120]}"
        )

    return step


def _instance_step(
    session: aiohttp.ClientSession,
    server: str,
    owner: NacosInstanceList,
    instance: NacosInstance,
    tally: _Tally,
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        form = {
            "namespaceId": owner.namespace_id,
            "groupName": owner.group_name,
            "serviceName": owner.service_name,
            "ip": instance.ip,
            "port": str(instance.port),
            "weight": str(instance.weight),
            "healthy": str(instance.healthy).lower(),
            "enabled": str(instance.enabled).lower(),
            "clusterName": instance.cluster_name,
            "metadata": json.dumps(dict(instance.metadata)),
            "ephemeral": "false",
        }
        async with session.post(server + INSTANCE_PATH, data=form) as answer:
            text = await answer.text(errors="replace")
            if answer.status == 200:
                tally.instances += 1
            else:
                tally.failures.append(
                    f"instance {instance.ip}:{instance.port} of {owner.service_name}"
                    f" ({owner.source.name}): HTTP {answer.status} {text[:120]}"
                )

    return step


def _summary(console: Console, data: NacosData, tally: _Tally, dry_run: bool) -> None:
    table = Table(title="import-nacos" + (" (dry run)" if dry_run else ""))
    table.add_column("what")
    table.add_column("read", justify="right")
    table.add_column("imported", justify="right")
    table.add_row("namespaces", str(len(data.namespaces)), str(tally.namespaces))
    table.add_row(
        "services",
        str(len(_all_services(data))),
        f"{tally.services_created} new, {tally.services_updated} updated",
    )
    table.add_row("persistent instances", str(data.instance_count), str(tally.instances))
    table.add_row("unreadable files", str(len(data.unreadable)), "skipped")
    table.add_row("skipped files", str(len(data.skipped)), "-")
    table.add_row("failed requests", "-", str(len(tally.failures)))
    console.print(table)
    for failure in tally.failures[:SHOWN_FAILURES]:
        console.print(f"[red]failed[/red] {escape(shown(failure))}")
    if len(tally.failures) > SHOWN_FAILURES:
        console.print(f"... and {len(tally.failures) - SHOWN_FAILURES} more failures")


# ------------------------------------------------------------------ users, roles, permissions

USERS_PATH = "/nacos/v1/auth/users"
ROLES_PATH = "/nacos/v1/auth/roles"
PERMISSIONS_PATH = "/nacos/v1/auth/permissions"
_ALREADY = ("already exist", "already bound")  # Nacos's words for a row imported before


def read_table(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of an export of one Nacos auth table (`SELECT * FROM users`, as CSV or as the
    tab-separated text `mysql --batch` prints), by Nacos's column names."""
    text = path.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if "\t" in first else ","))
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise click.ClickException(f"{path}: no column {', '.join(missing)}")
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in rows]


_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("import-nacos-users")
@click.option("--users", "users_file", type=_FILE,
              help="Nacos's users table: username, password (a bcrypt hash), enabled")  # fmt: skip
@click.option("--roles", "roles_file", type=_FILE, help="Nacos's roles table: username, role")
@click.option("--permissions", "permissions_file", type=_FILE,
              help="Nacos's permissions table: role, resource, action")  # fmt: skip
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
@click.option("--username", default=ADMIN_USER, show_default=True, help="an admin of naraft")
@click.option("--password-file", type=_FILE, required=True,
              help="that admin's password (the cluster's admin.password)")  # fmt: skip
@click.option("--cacert", type=_FILE, default=None,
              help="CA certificate (PEM) to verify an https server with")  # fmt: skip
def import_nacos_users(
    users_file: Path | None,
    roles_file: Path | None,
    permissions_file: Path | None,
    server_url: str,
    username: str,
    password_file: Path,
    cacert: Path | None,
) -> None:
    """Import Nacos's users (with their bcrypt hashes: no password changes), roles and
    permissions from exports of its database tables. Re-running is safe."""
    steps: list[tuple[str, str, dict[str, str]]] = []
    skipped = 0
    if users_file is not None:
        for row in read_table(users_file, ("username", "password")):
            if row.get("enabled", "1").lower() in ("0", "false"):
                skipped += 1
                continue
            form = {"username": row["username"], "passwordHash": row["password"]}
            steps.append(("user", USERS_PATH, form))
    if roles_file is not None:
        for row in read_table(roles_file, ("username", "role")):
            steps.append(("role", ROLES_PATH, {"username": row["username"], "role": row["role"]}))
    if permissions_file is not None:
        for row in read_table(permissions_file, ("role", "resource", "action")):
            form = {k: row[k] for k in ("role", "resource", "action")}
            steps.append(("permission", PERMISSIONS_PATH, form))
    password = password_file.read_text().strip()
    try:
        context = client_context(cacert) if cacert is not None else True
        done, failures = asyncio.run(
            _import_auth(server_url.rstrip("/"), username, password, steps, context)
        )
    except (aiohttp.ClientError, OSError) as error:
        click.echo(f"naraft: cannot reach {server_url}: {shown(error)}", err=True)
        raise SystemExit(1) from None
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"imported {done} of {len(steps)} rows ({skipped} disabled users skipped), "
        f"{len(failures)} failed"
    )
    for failure in failures[:SHOWN_FAILURES]:
        console.print(f"[red]failed[/red] {escape(shown(failure))}")
    if failures:
        raise SystemExit(1)


async def _import_auth(
    server: str,
    username: str,
    password: str,
    steps: list[tuple[str, str, dict[str, str]]],
    context: ssl.SSLContext | bool,
) -> tuple[int, list[str]]:
    timeout = aiohttp.ClientTimeout(total=30)
    done, failures = 0, []
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        token = await alogin(session, server, password, username=username)
        for what, path, form in steps:
            async with session.post(server + path, data=form, headers=bearer(token)) as answer:
                text = await answer.text()
            if answer.status == 200 or (answer.status == 400 and any(w in text for w in _ALREADY)):
                done += 1
            else:
                name = form.get("username") or form.get("role")
                failures.append(f"{what} {name}: HTTP {answer.status} {text[:120]}")
    return done, failures
