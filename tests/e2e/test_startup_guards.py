"""What a node checks before it touches its data: the port, the data directory's lock,
the secret; and the modes of every file it creates. Each refusal is one line on stderr,
exit code 1, no traceback."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import (
    FAST_TIMERS,
    NodeProcess,
    NodeSpec,
    free_ports,
    local_cluster,
    run_server,
    wait_for,
)

from naraft.client import LEADER_PATH
from naraft.cluster import write_secret_file
from naraft.node import DB_FILE, LOCK_FILE


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    for needle in needles:
        assert needle in line, line
    return line


def standalone(port: int, data_dir: Path) -> NodeSpec:
    return NodeSpec(
        node_id=f"127.0.0.1:{port}", standalone=True, data_dir=data_dir, extra_args=FAST_TIMERS
    )


def test_a_fresh_data_directory_holds_only_private_files(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "one", size=1) as cluster:
        node = cluster.nodes[0]
        # a data directory the node creates itself (the harness made the configured one)
        fresh = tmp_path / "made" / "by" / "the-node"
        node.terminate()
        node.spec = dataclasses.replace(node.spec, data_dir=fresh, log_path=node.log_path)
        node.start()
        cluster.wait_ready()
        for index in range(5):
            assert cluster.put(node, f"mode-{index}", "v").status_code == 200
        files = {path.name: path.stat() for path in fresh.iterdir()}
        assert {DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", LOCK_FILE} <= set(files)
        assert "election-audit.jsonl" in files
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    for path in fresh.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} is {mode:04o}"


def test_a_second_node_on_a_locked_data_directory_refuses_in_one_line(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "one", size=1) as cluster:
        cluster.wait_ready()
        node = cluster.nodes[0]
        assert node.process is not None
        (port,) = free_ports(1)
        result = run_server(standalone(port, node.data_dir))
        line = assert_one_line_refusal(result, str(node.data_dir), "in use by another node")
        assert f"pid {node.process.pid}" in line
        # the first node is undisturbed
        assert cluster.put(node, "still", "served").status_code == 200


def test_a_taken_port_refuses_in_one_line_without_touching_the_data(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "never-created"
        result = run_server(standalone(port, data_dir))
    assert_one_line_refusal(result, f"cannot listen on 127.0.0.1:{port}: address already in use")
    assert not data_dir.exists()


def test_a_taken_port_leaves_an_existing_store_unopened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_server(standalone(taken.getsockname()[1], data_dir))
    assert_one_line_refusal(result, "address already in use")
    assert list(data_dir.iterdir()) == []


def test_a_data_directory_that_cannot_be_created_refuses_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    (port,) = free_ports(1)
    result = run_server(standalone(port, blocker / "data"))
    assert_one_line_refusal(result, f"cannot use the data directory {blocker / 'data'}")


def clustered(tmp_path: Path, secret_file: Path, *extra: str) -> NodeSpec:
    members = tuple(f"127.0.0.1:{p}" for p in free_ports(3))
    return NodeSpec(
        node_id=members[0],
        peers=members,
        data_dir=tmp_path / "node",
        secret_file=secret_file,
        extra_args=(*FAST_TIMERS, *extra),
    )


def run(spec: NodeSpec, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_server(spec, timeout=timeout, env=without_secret_env())


def without_secret_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NARAFT_CLUSTER_SECRET"}


def test_a_secret_file_others_can_read_is_refused_naming_the_override(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text("a-long-enough-cluster-secret\n")
    secret.chmod(0o644)
    result = run(clustered(tmp_path, secret))
    assert_one_line_refusal(result, str(secret), "mode 0644", "--allow-insecure-secret-file")
    assert not (tmp_path / "node").exists()


def test_a_short_secret_is_refused_in_one_line(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text("x" * 15)
    secret.chmod(0o600)
    result = run(clustered(tmp_path, secret))
    assert_one_line_refusal(result, str(secret), "is 15 bytes; it must be at least 16 bytes")


def test_the_override_lets_a_node_start_with_an_insecure_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text("a-long-enough-cluster-secret\n")
    secret.chmod(0o644)
    spec = clustered(tmp_path, secret, "--allow-insecure-secret-file")
    log = tmp_path / "node.log"
    node = NodeProcess(dataclasses.replace(spec, log_path=log))
    node.start(env=without_secret_env())
    try:
        wait_for(
            lambda: "listening on" in log.read_text(),
            timeout_seconds=20,
            what="the node to listen",
        )
        assert "cluster secret file is accessible to others" in log.read_text()
        assert "a-long-enough-cluster-secret" not in log.read_text()
    finally:
        node.terminate()


# ---------------------------------------------------------------------- cluster up's secret


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)  # the secret must be private whatever the caller's umask
    yield
    os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_cluster_up_creates_its_secret_private_and_loadable(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    write_secret_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) >= 40


def test_cluster_up_keeps_an_existing_secret(tmp_path: Path) -> None:
    path = tmp_path / "cluster.secret"
    path.write_text("the-secret-the-cluster-already-uses\n")
    path.chmod(0o600)
    write_secret_file(path)
    assert path.read_text() == "the-secret-the-cluster-already-uses\n"


def test_cluster_up_never_writes_then_chmods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is born 0600: no chmod, so there is no moment it is readable by others."""

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("chmod called")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    write_secret_file(tmp_path / "cluster.secret")
    assert stat.S_IMODE((tmp_path / "cluster.secret").stat().st_mode) == 0o600


def test_cluster_up_creates_private_directories_secret_and_logs(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    data_dir = tmp_path / "fresh" / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "naraft", "cluster", "up", "--nodes", "1",
         "--base-port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    node_dir = data_dir / f"127.0.0.1_{port}"
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}{LEADER_PATH}").status_code == 200,
            timeout_seconds=30,
            what="the one-node cluster to serve",
        )
        modes = {
            path: stat.S_IMODE(path.stat().st_mode)
            for path in (data_dir, node_dir, data_dir / "cluster.secret", node_dir / "node.log")
        }
        assert modes == {
            data_dir: 0o700,
            node_dir: 0o700,
            data_dir / "cluster.secret": 0o600,
            node_dir / "node.log": 0o600,
        }
        for path in node_dir.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=20)
