"""Backup and restore with real processes: `naraft snapshot save` from a 3-node cluster with
auth on (naming instances, configs, kv data), `naraft snapshot restore` into a new data
directory, a standalone node started on it serves every datum, under a new cluster id; and
each refusal in its one line."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.harness import LocalCluster, NodeProcess, local_cluster, wait_for
from tests.e2e.harness import naraft_command as run_naraft

from naraft.client import CONFIGS_PATH, INSTANCE_LIST_PATH, INSTANCE_PATH, bearer, login

pytestmark = pytest.mark.e2e

SERVICES = [f"svc-{i}" for i in range(3)]
CONFIGS = {f"cfg-{i}": f"content {i}\nline two" for i in range(3)}
KV = {f"kv/{i}": f"value-{i}" for i in range(5)}
COMMAND_SECONDS = 120.0  # one command's bound: the box is shared, and a CLI start costs


def naraft_command(*args: str) -> subprocess.CompletedProcess[str]:
    return run_naraft(*args, timeout=COMMAND_SECONDS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("snapshot") / "cluster"
    with local_cluster(root, size=3, auth="on") as running:
        running.wait_ready()
        password = running.admin_password
        assert password is not None
        # the first leader bootstraps the admin; every node then takes a login
        for node in running.nodes:
            wait_for(lambda url=node.url: _try_login(url, password), timeout_seconds=15,
                     what=f"a login on {node.id}")  # fmt: skip
        _fill(running)
        yield running


def _try_login(url: str, password: str) -> bool:
    try:
        return bool(login(url, password))
    except OSError:
        return False


def _token(cluster: LocalCluster) -> str:
    assert cluster.admin_password is not None
    return login(cluster.nodes[0].url, cluster.admin_password)


def _fill(cluster: LocalCluster) -> None:
    headers = bearer(_token(cluster))
    base = cluster.leader().url
    for service in SERVICES:
        for port in (8080, 8081):
            answer = cluster.client.post(
                f"{base}{INSTANCE_PATH}",
                params={"serviceName": service, "ip": "10.0.0.1", "port": port,
                        "ephemeral": "false"},
                headers=headers,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
    for data_id, content in CONFIGS.items():
        answer = cluster.client.post(
            f"{base}{CONFIGS_PATH}",
            params={"dataId": data_id, "group": "DEFAULT_GROUP", "content": content},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
    for key, value in KV.items():
        answer = cluster.client.put(
            f"{base}/naraft/v1/kv/{key}", json={"value": value}, headers=headers
        )
        assert answer.status_code == 200, answer.text


def _view(cluster: LocalCluster, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """What a client sees of the data: instances, config contents, kv values."""
    client = cluster.client
    seen: dict[str, Any] = {}
    for service in SERVICES:
        answer = client.get(
            f"{url}{INSTANCE_LIST_PATH}", params={"serviceName": service}, headers=headers
        )
        assert answer.status_code == 200, answer.text
        seen[service] = sorted((h["ip"], h["port"]) for h in answer.json()["hosts"])
    for data_id in CONFIGS:
        answer = client.get(
            f"{url}{CONFIGS_PATH}",
            params={"dataId": data_id, "group": "DEFAULT_GROUP"},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        seen[data_id] = answer.text
    for key in KV:
        answer = client.get(f"{url}/naraft/v1/kv/{key}", headers=headers)
        assert answer.status_code == 200, answer.text
        seen[key] = answer.json()["value"]
    return seen


def test_save_restore_and_serve_under_a_new_cluster_id(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    follower = next(n for n in cluster.nodes if n is not cluster.leader())
    file = tmp_path / "backup.snap"
    saved = naraft_command(
        "snapshot", "save", str(file), "--server", follower.url,
        "--password-file", str(cluster.admin_password_file),
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert f"saved {file}" in saved.stdout
    assert file.stat().st_mode & 0o777 == 0o600  # password hashes, the signing key
    old_state = cluster.state(cluster.leader())

    restored = LocalCluster(tmp_path / "restored", size=1)
    node = restored.nodes[0]
    done = naraft_command(
        "snapshot", "restore", str(file), "--data-dir", str(node.data_dir), "--id", node.id
    )
    assert done.returncode == 0, done.stderr
    assert "naraft server" in done.stdout
    with restored:
        restored.wait_ready()
        new_state = restored.state(node)
        assert new_state["clusterId"] != old_state["clusterId"]
        assert new_state["datums"] >= old_state["datums"] - 1  # the quota entry may follow
        expected = _view(cluster, cluster.leader().url, bearer(_token(cluster)))
        # loopback standalone: auth is off, so the restored data reads without a token
        assert _view(restored, node.url, {}) == expected
        # and the old admin's login works there too: users came with the snapshot
        assert cluster.admin_password is not None
        assert login(node.url, cluster.admin_password)


@pytest.fixture(scope="module")
def saved(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot saved through the first node (the leader or a follower)."""
    file = tmp_path_factory.mktemp("saved") / "backup.snap"
    done = naraft_command(
        "snapshot", "save", str(file), "--server", cluster.nodes[0].url,
        "--password-file", str(cluster.admin_password_file),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return file


def test_refusals_each_in_one_line(cluster: LocalCluster, saved: Path, tmp_path: Path) -> None:
    file = tmp_path / "x.snap"
    anonymous = naraft_command("snapshot", "save", str(file), "--server", cluster.nodes[0].url)
    assert anonymous.returncode == 1
    lines = anonymous.stderr.strip().splitlines()
    assert len(lines) == 1, anonymous.stderr
    assert lines[0].startswith("Error: snapshot refused (403): ")
    assert not file.exists()

    headers = bearer(_token(cluster))
    answer = cluster.client.post(
        f"{cluster.nodes[0].url}/nacos/v1/auth/users",
        params={"username": "reader", "password": "reader-pw"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    password = tmp_path / "reader.password"
    password.write_text("reader-pw\n")
    reader = naraft_command(
        "snapshot", "save", str(file), "--server", cluster.nodes[0].url,
        "--username", "reader", "--password-file", str(password),
    )  # fmt: skip
    assert reader.returncode == 1
    lines = reader.stderr.strip().splitlines()  # logged in, but not an admin
    assert len(lines) == 1, reader.stderr
    assert lines[0].startswith("Error: snapshot refused (403): ")
    assert not file.exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    good = saved
    refused = naraft_command(
        "snapshot", "restore", str(good), "--data-dir", str(busy), "--id", "127.0.0.1:9999"
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"naraft: {busy} is not an empty directory: restore only into a new one"
    ]
    assert sorted(p.name for p in busy.iterdir()) == ["something"]

    bad = tmp_path / "bad.snap"
    bad.write_bytes(good.read_bytes()[:-10])
    cut = naraft_command(
        "snapshot", "restore", str(bad), "--data-dir", str(tmp_path / "new"), "--id", "h:1"
    )
    assert cut.returncode == 1
    assert cut.stderr.strip().splitlines() == [
        f"naraft: {bad}: truncated at byte {len(bad.read_bytes())}: the trailer needs 40 bytes"
    ]
    assert not (tmp_path / "new").exists()


def test_every_member_restored_from_one_file_forms_the_new_cluster(
    cluster: LocalCluster, saved: Path, tmp_path: Path
) -> None:
    """docs/backup.md: the same file and the same --peers on every member; each computes the
    same new cluster id, they elect a leader, serve the data and take new writes."""
    fresh = LocalCluster(tmp_path / "new-cluster", size=3)
    peers = ",".join(fresh.members)
    for node in fresh.nodes:
        done = naraft_command(
            "snapshot", "restore", str(saved), "--data-dir", str(node.data_dir),
            "--id", node.id, "--peers", peers,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    with fresh:
        leader = fresh.wait_ready(timeout_seconds=60)
        ids = {fresh.state(node)["clusterId"] for node in fresh.nodes}
        assert len(ids) == 1
        assert ids != {cluster.state(cluster.leader())["clusterId"]}
        expected = _view(cluster, cluster.leader().url, bearer(_token(cluster)))
        assert _view(fresh, leader.url, {}) == expected
        assert fresh.put(leader, "after/restore", "new").status_code == 200
        index = fresh.state(leader)["commitIndex"]
        for node in fresh.nodes:
            fresh.wait_applied(node, index)
            assert fresh.get(node, "after/restore").json()["value"] == "new"


def test_a_member_restored_in_place_is_refused_by_the_old_members(
    cluster: LocalCluster, saved: Path, tmp_path: Path
) -> None:
    """The worst case: a follower's data is restored with the old cluster's very member list
    and started in the follower's place, with the same secret. It still computes another
    cluster id (a new token), so the old members refuse its requests and it refuses theirs:
    it never joins the old cluster, whose term does not move. Runs last in the module: the
    follower is put back at the end."""
    leader = cluster.leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    old_id = cluster.state(leader)["clusterId"]
    term = cluster.state(leader)["term"]
    target = tmp_path / "in-place"
    done = naraft_command(
        "snapshot", "restore", str(saved), "--data-dir", str(target),
        "--id", follower.id, "--peers", ",".join(cluster.members),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"(was {old_id})" in done.stdout
    assert f"as cluster {old_id}" not in done.stdout
    follower.terminate(hand_over=False)
    impostor = NodeProcess(
        replace(follower.spec, data_dir=target, log_path=tmp_path / "in-place.log")
    )
    try:
        impostor.start()
        wait_for(
            lambda: "reason=cluster_mismatch" in impostor.log_text(),
            timeout_seconds=30,
            what="the restored node to refuse the old leader's messages",
        )
        wait_for(
            lambda: "reason=cluster_mismatch" in leader.log_text(),
            timeout_seconds=30,
            what="the old leader to refuse the restored node's messages",
        )
        state = cluster.state(impostor)
        assert state["clusterId"] != old_id
        assert state["leader"] != leader.id
        assert cluster.leader().id == leader.id
        assert cluster.state(leader)["term"] == term
    finally:
        impostor.terminate(hand_over=False)
        follower.start()
