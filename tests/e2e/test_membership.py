"""Changing a running cluster's members with real processes: a node started with `--join`
waits (readiness 503) until `naraft member add` makes it a learner, catches up and is
promoted, under a write load that loses nothing acknowledged; it then votes (the cluster
commits with one original node dead), and the dead node is removed. A data directory's
persisted members then refuse `--standalone` and a disagreeing `--peers`, in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tests.e2e.harness import (
    DEFAULT_ARGS,
    BackgroundWriter,
    NodeProcess,
    local_cluster,
    naraft_command,
    run_server,
    wait_for,
)
from tests.e2e.test_startup_guards import assert_one_line_refusal

from naraft.client import READINESS_PATH
from naraft.config import read_cluster_conf

pytestmark = pytest.mark.e2e


def member_rows(node: NodeProcess) -> dict[str, dict[str, object]]:
    result = naraft_command("member", "list", "--server", node.url, "--json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)["members"]}


@pytest.mark.timeout(240)  # five member changes, two restarts and a kill: ~40 s quiet
def test_join_add_kill_remove_under_load(tmp_path: Path) -> None:
    # a short log: the new node catches up by a digest-sync install, then by appends
    compacting = (*DEFAULT_ARGS, "--compact-entries", "40", "--compact-keep", "5")
    with local_cluster(tmp_path / "cluster", size=3, extra_args=compacting) as cluster:
        cluster.wait_ready()
        originals = list(cluster.nodes)
        new = cluster.add_joining_node()
        new.start()

        def waiting() -> str | None:
            answer = cluster.client.get(f"{new.url}{READINESS_PATH}", timeout=1.0)
            return answer.text if answer.status_code == 503 else None

        text = wait_for(waiting, timeout_seconds=15, what="the joining node to answer 503")
        assert "waiting to be added" in text

        alive = list(originals)
        with BackgroundWriter(lambda: alive, prefix="grow") as writer:
            # past one compaction (40 entries): the new node cannot catch up from the log alone
            wait_for(lambda: len(writer.ledger.acked()) >= 60, timeout_seconds=30, what="writes")
            added = naraft_command("member", "add", new.id, "--server", originals[1].url)
            assert added.returncode == 0, added.stderr + cluster.logs()
            assert f"{new.id} is a voter" in added.stdout
            rows = member_rows(originals[0])
            assert rows[new.id]["role"] == "voter"
            # the new voter counts: with one original dead, 3 of 4 still commit
            victim = next(n for n in originals if n.id != cluster.leader().id)
            victim.kill()
            alive[:] = [n for n in originals if n is not victim] + [new]
            before = len(writer.ledger.acked())
            wait_for(
                lambda: len(writer.ledger.acked()) >= before + 20,
                timeout_seconds=30,
                what="writes with one original node dead",
            )
            removed = naraft_command("member", "remove", victim.id, "--server", new.url)
            assert removed.returncode == 0, removed.stderr + cluster.logs()
            cluster.forget_member(victim.id)
            before = len(writer.ledger.acked())
            wait_for(
                lambda: len(writer.ledger.acked()) >= before + 20,
                timeout_seconds=30,
                what="writes after removing the dead node",
            )
        assert "digest catch-up from" in new.log_text(), new.log_text()[-2000:]
        ledger = writer.ledger
        assert not ledger.unexpected(), ledger.unexpected()[:3]
        assert ledger.acked(), ledger.summary()
        cluster.wait_caught_up(new, among=alive)
        assert cluster.missing_writes(new, ledger.acked()) == {}, ledger.summary()
        rows = member_rows(new)
        assert victim.id not in rows
        assert sorted(rows) == sorted(n.id for n in alive)
        answer = cluster.client.get(f"{new.url}{READINESS_PATH}", timeout=2.0)
        assert answer.status_code == 200, answer.text

        # persisted members are the truth: the old member list and --standalone are refused
        keeper = alive[0]
        keeper.terminate()
        stale = run_server(keeper.spec)  # still --peers with the three original members
        assert_one_line_refusal(stale, "disagrees with the members", "naraft member")
        lone = run_server(dataclasses.replace(keeper.spec, standalone=True, peers=()))
        assert_one_line_refusal(lone, "not --standalone", "naraft member remove")
        # started from Nacos's cluster.conf, the node keeps it naming the members
        conf = tmp_path / "cluster.conf"
        conf.write_text("".join(f"{n.id}\n" for n in alive))
        keeper.spec = dataclasses.replace(keeper.spec, peers=(), cluster_conf=conf)
        keeper.start()
        cluster.wait_caught_up(keeper, among=alive)
        # the leader removes itself: it still leads until the removal commits
        leaving = cluster.leader(among=alive)
        removed = naraft_command("member", "remove", leaving.id, "--server", keeper.url)
        assert removed.returncode == 0, removed.stderr + cluster.logs()
        cluster.forget_member(leaving.id)
        staying = [n for n in alive if n is not leaving]
        remaining = tuple(sorted(n.id for n in staying))
        wait_for(
            lambda: read_cluster_conf(conf) == remaining,
            timeout_seconds=10,
            what="cluster.conf to name the two remaining members",
        )

        def removed_says() -> str | None:
            answer = cluster.client.get(f"{leaving.url}{READINESS_PATH}", timeout=1.0)
            return answer.text if answer.status_code == 503 else None

        text = wait_for(removed_says, timeout_seconds=10, what="the removed node to be unready")
        assert "not a member" in text, text
        answer = cluster.put(cluster.leader(among=staying), "after-shrink", "v")
        assert answer.status_code == 200, answer.text


def test_a_node_joins_a_tls_cluster_with_auth_through_the_member_commands(tmp_path: Path) -> None:
    """The join handshake and the peer links run over mutual TLS, and `naraft member`
    logs in with `--password-file` and verifies the nodes with `--cacert`."""
    with local_cluster(tmp_path / "cluster", size=3, tls=True, auth="on") as cluster:
        cluster.wait_ready()
        assert cluster.ca_file is not None
        assert cluster.admin_password_file is not None
        new = cluster.add_joining_node()
        new.start()
        flags = ("--cacert", str(cluster.ca_file), "--password-file",
                 str(cluster.admin_password_file))  # fmt: skip

        def waiting() -> str | None:
            answer = cluster.client.get(f"{new.url}{READINESS_PATH}", timeout=1.0)
            return answer.text if answer.status_code == 503 else None

        text = wait_for(waiting, timeout_seconds=15, what="the joining node to answer 503")
        assert "waiting to be added" in text
        anonymous = naraft_command(
            "member", "add", new.id, "--server", cluster.nodes[1].url, "--cacert",
            str(cluster.ca_file),
        )  # fmt: skip
        assert anonymous.returncode == 1
        assert "(403)" in anonymous.stderr, anonymous.stderr
        assert "--password-file" in anonymous.stderr, anonymous.stderr
        added = naraft_command("member", "add", new.id, "--server", cluster.nodes[1].url, *flags)
        assert added.returncode == 0, added.stderr + cluster.logs()
        assert f"{new.id} is a voter" in added.stdout
        listed = naraft_command("member", "list", "--server", new.url, "--json", *flags)
        assert listed.returncode == 0, listed.stderr
        rows = {row["id"]: row for row in json.loads(listed.stdout)["members"]}
        assert sorted(rows) == sorted(n.id for n in cluster.nodes)
        assert rows[new.id]["role"] == "voter"
        wait_for(
            lambda: cluster.client.get(f"{new.url}{READINESS_PATH}", timeout=1.0).status_code
            == 200,
            timeout_seconds=15,
            what="the new voter to be ready",
        )
        removed = naraft_command("member", "remove", new.id, "--server", new.url, *flags)
        assert removed.returncode == 0, removed.stderr + cluster.logs()
        cluster.forget_member(new.id)
        listed = naraft_command("member", "list", "--server", cluster.nodes[0].url, "--json",
                                *flags)  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert new.id not in {row["id"] for row in json.loads(listed.stdout)["members"]}


def test_nacos_core_ops_remove_peer_takes_a_member_out_through_raft(tmp_path: Path) -> None:
    """Nacos's `POST /v1/core/ops/raft` `removePeer`, sent to a follower: the member named
    by its Raft port leaves, the two left go on committing, and a second removal of the
    same address is refused naming the value."""
    with local_cluster(tmp_path / "cluster", size=3) as cluster:
        cluster.wait_ready()
        leader = cluster.leader()
        follower, gone = [n for n in cluster.nodes if n is not leader]
        host, port = gone.id.rsplit(":", 1)
        url = f"{follower.url}/nacos/v1/core/ops/raft"
        body = {"command": "removePeer", "value": f"{host}:{int(port) - 1000}"}
        answer = cluster.client.post(url, json=body, timeout=15.0)
        assert (answer.status_code, answer.json()["code"]) == (200, 200), answer.text
        wait_for(
            lambda: set(member_rows(follower)) == {leader.id, follower.id} or None,
            timeout_seconds=15,
            what="the member list without the removed node",
        )
        gone.kill()
        assert cluster.put(follower, "after-remove", "v").status_code == 200
        again = cluster.client.post(url, json=body, timeout=15.0)
        assert again.status_code == 400
        assert "is not a member" in again.text
