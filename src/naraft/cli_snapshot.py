"""`naraft snapshot save FILE --server URL` and `naraft snapshot restore FILE --data-dir DIR
--id ID [--peers ...]`: backup and restore, as etcd's `etcdctl snapshot save/restore`.

`save` streams the leader's applied state at a committed index (`naraft.api.snapshot`) into
FILE, checking every frame, the SHA-256 and the state checksum as it goes, with a progress bar;
FILE appears only once the whole snapshot checked out. `restore` writes a fresh data directory
holding those datums under a new cluster identity (`naraft.digest.restore`). Both print one
line on failure, never a traceback (docs/backup.md).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Final

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from naraft.client import ADMIN_USER, bearer, login
from naraft.config import DATA_DIR_TOKEN_FILE, check_cluster_token, cluster_id_of, parse_address
from naraft.digest.restore import restore_store
from naraft.digest.snapshot_file import (
    Readable,
    SnapshotFormatError,
    SnapshotHeader,
    SnapshotReader,
)
from naraft.errors import NaraftError
from naraft.storage.base import StoreError
from naraft.tls import client_context

SNAPSHOT_PATH: Final = "/naraft/v1/snapshot"  # naraft.api.snapshot (the cli never imports api)
DB_FILE: Final = "naraft.db"  # node.DB_FILE
RESTORED_TOKEN_PREFIX: Final = "restored-"
SAVE_TIMEOUT_SECONDS: Final = 60.0  # per socket read, not for the whole transfer

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


def _fail(message: str) -> None:
    click.echo(f"naraft: {message}", err=True)
    raise SystemExit(1)


@click.group()
def snapshot() -> None:
    """Backup and restore of the replicated state."""


class _Tee:
    """A readable stream that copies what it reads into `out` and counts it."""

    def __init__(self, source: Readable, out: BinaryIO) -> None:
        self._source = source
        self._out = out
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        chunks: list[bytes] = []
        wanted = size
        while wanted != 0:
            chunk = self._source.read(wanted)
            if not chunk:
                break
            chunks.append(chunk)
            if wanted > 0:
                wanted -= len(chunk)
        data = b"".join(chunks)
        self._out.write(data)
        self.bytes += len(data)
        return data


def _open_snapshot(
    base: str, token: str | None, context: ssl.SSLContext | None
) -> tuple[str, http.client.HTTPResponse]:
    """The answer of the leader behind `base`: a follower's refusal names the leader, asked
    once in its place."""
    url = base
    for _ in range(2):
        request = urllib.request.Request(
            f"{url}{SNAPSHOT_PATH}", headers=bearer(token) if token is not None else {}
        )
        try:
            answer: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=SAVE_TIMEOUT_SECONDS, context=context
            )
            return url, answer
        except urllib.error.HTTPError as error:
            body = _body(error)
            leader = body.get("leader")
            if error.code == 503 and isinstance(leader, str) and leader and url == base:
                scheme = base.split("://", 1)[0]
                url = f"{scheme}://{leader}"
                continue
            reason = body.get("error", error.reason)
            raise click.ClickException(f"snapshot refused ({error.code}): {reason}") from None
    raise click.ClickException(f"no leader answered at {base} (it named {url})")


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--server", "server_url", default="http://127.0.0.1:8848", help="any member")
@click.option("--username", default=ADMIN_USER, show_default=True, help="an admin, with auth on")
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
def save_command(
    file: Path, server_url: str, username: str, password_file: Path | None, cacert: Path | None
) -> None:
    """Save the cluster's state at a committed index into FILE (checked as it arrives)."""
    if file.exists():
        _fail(f"{file} exists: choose another name or remove it")
    base = server_url.rstrip("/")
    partial = file.with_name(f"{file.name}.partial")
    console = Console(highlight=False, soft_wrap=True)
    try:
        context = client_context(cacert) if cacert or base.startswith("https") else None
        token = None
        if password_file is not None:
            password = password_file.read_text().strip()
            token = login(base, password, username=username, ssl_context=context)
        url, answer = _open_snapshot(base, token, context)
        # the file holds password hashes and the token signing key: its owner's alone
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with answer, os.fdopen(fd, "wb") as out:
            tee = _Tee(answer, out)
            header = _receive(SnapshotReader(tee), console)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, file)
    except SnapshotFormatError as error:
        _fail(f"the snapshot from {server_url} is not whole: {error}")
        return
    except urllib.error.HTTPError as error:
        _fail(f"login refused ({error.code}): {_body(error).get('message', error.reason)}")
        return
    except (OSError, ValueError) as error:
        _fail(f"cannot save from {server_url}: {error}")
        return
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    click.echo(
        f"saved {file}: {header.keys} keys at index {header.index} (term {header.term}) of"
        f" cluster {header.cluster_id} from {header.node} ({url}), {tee.bytes / 1e6:.1f} MB"
    )


def _receive(reader: SnapshotReader, console: Console) -> SnapshotHeader:
    header = reader.header
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("datums", total=header.keys)
        for rows in reader.frames():
            progress.advance(task, len(rows))
    return header


@snapshot.command("restore")
@click.argument("file", type=_FILE)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--id", "node_id", required=True, help="the restored node's id (host:port)")
@click.option(
    "--peers",
    default=None,
    help="every member of the new cluster, comma-separated host:port (restore the same FILE"
    " on each, with the same --peers) [default: standalone]",
)
@click.option(
    "--cluster-token",
    default=None,
    help="the new cluster's token [default: derived from the snapshot, new for every save]",
)
def restore_command(
    file: Path, data_dir: Path, node_id: str, peers: str | None, cluster_token: str | None
) -> None:
    """Write a fresh data directory holding FILE's datums, as a member of a NEW cluster."""
    try:
        parse_address(node_id, field="--id")
        members = tuple(p.strip() for p in peers.split(",") if p.strip()) if peers else (node_id,)
        for member in members:
            parse_address(member, field="--peers")
        if node_id not in members:
            raise click.UsageError(f"--id {node_id} is not one of --peers")
        if cluster_token is not None:
            check_cluster_token(cluster_token)
    except NaraftError as error:
        raise click.UsageError(str(error)) from None
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        _fail(f"{data_dir} is not an empty directory: restore only into a new one")
    console = Console(highlight=False, soft_wrap=True)
    created = not data_dir.exists()
    done = False
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file.open("rb") as stream:
            reader = SnapshotReader(stream)
            header = reader.header
            token = cluster_token or f"{RESTORED_TOKEN_PREFIX}{_token_part(header)}"
            cluster_id = cluster_id_of(token, members)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("datums", total=header.keys)
                restore_store(
                    reader,
                    data_dir / DB_FILE,
                    node_id=node_id,
                    cluster_id=cluster_id,
                    on_frame=lambda n: progress.advance(task, n),
                )
        _write_private(data_dir / DATA_DIR_TOKEN_FILE, f"{token}\n")
        done = True
    except SnapshotFormatError as error:
        _fail(f"{file}: {error}")
        return
    except (StoreError, OSError) as error:
        _fail(f"cannot restore into {data_dir}: {error}")
        return
    finally:
        if not done:
            _clear(data_dir, remove=created)
    start = (
        "--standalone"
        if len(members) == 1
        else f"--peers {','.join(members)} --cluster-secret-file SECRET"
    )
    click.echo(
        f"restored {header.keys} keys at index {header.index} into {data_dir} as cluster"
        f" {cluster_id} (was {header.cluster_id}); start it with: naraft server --id {node_id}"
        f" {start} --data-dir {data_dir}"
    )


def _token_part(header: SnapshotHeader) -> str:
    """The snapshot's id as a token (printable ASCII only; a hostile one is replaced)."""
    sid = header.snapshot_id
    if all(33 <= ord(c) <= 126 for c in sid) and len(sid) <= 200:
        return sid
    return secrets.token_hex(16)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _clear(data_dir: Path, *, remove: bool) -> None:
    """Take away what a failed restore wrote (the store is removed by `restore_store`)."""
    with contextlib.suppress(OSError):
        for path in data_dir.iterdir():
            path.unlink()
        if remove:
            data_dir.rmdir()


def _body(error: urllib.error.HTTPError) -> dict[str, object]:
    try:
        body = json.loads(error.read())
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
