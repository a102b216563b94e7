"""Cluster identity: the id kept in every data directory, checked at every start.

The id is computed from `--cluster-token` and the member list (as etcd's
initial-cluster-token); `naraft cluster up` draws a new token whenever it bootstraps fresh
data directories, so a wiped and re-created cluster is a new incarnation even with the same
secret and addresses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
from tests.e2e.harness import FAST_TIMERS, LocalCluster, local_cluster, naraft_command

from naraft.cli import CLUSTER_TOKEN_FILE, cluster_token_for
from naraft.config import DEFAULT_CLUSTER_TOKEN, cluster_id_of
from naraft.raft import AppendEntries, Entry, Envelope, Index, NodeId, Term
from naraft.transport import MESSAGES_PATH, encode_batch
from naraft.transport.signing import CLUSTER_HEADER, PeerSigner


def test_a_node_started_on_another_incarnations_data_directory_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """The same addresses, secret and node id, but the data directory of an earlier
    incarnation (another token): the node refuses to start with one line naming both ids
    and the data directory, and the running cluster is untouched."""
    old_flags = (*FAST_TIMERS, "--cluster-token", "incarnation-1")
    with local_cluster(tmp_path / "old", extra_args=old_flags) as old:
        leader = old.wait_ready()
        assert old.put(leader, "from-the-old-cluster", "v").status_code == 200
        ports = old.ports
        members = tuple(n.address for n in old.nodes)
        assert old.state(leader)["clusterId"] == cluster_id_of("incarnation-1", members)
        old_dirs = {n.address: n.data_dir for n in old.nodes}

    new_flags = (*FAST_TIMERS, "--cluster-token", "incarnation-2")
    with LocalCluster(root=tmp_path / "new", ports=ports, extra_args=new_flags) as new:
        leader = new.wait_ready()
        assert new.put(leader, "from-the-new-cluster", "v").status_code == 200
        victim = next(n for n in new.nodes if n is not leader)
        victim.kill()
        shutil.rmtree(victim.data_dir)
        shutil.copytree(old_dirs[victim.address], victim.data_dir)
        answer = naraft_command(*victim.args[3:], timeout=30)  # after `python -m naraft`
        assert answer.returncode == 1, answer.stderr
        assert "Traceback" not in answer.stderr
        lines = [line for line in answer.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, answer.stderr
        stored = cluster_id_of("incarnation-1", members)
        computed = cluster_id_of("incarnation-2", members)
        assert stored in lines[0], lines[0]
        assert computed in lines[0], lines[0]
        assert str(victim.data_dir) in lines[0], lines[0]
        survivor = new.leader(exclude=victim.address)
        assert new.put(survivor, "still-writable", "v").status_code == 200
        assert new.get(survivor, "from-the-new-cluster").status_code == 200


def test_cluster_up_draws_a_new_token_for_fresh_data_and_keeps_it_otherwise(
    tmp_path: Path,
) -> None:
    members = ["127.0.0.1:18848", "127.0.0.1:18849"]
    first = cluster_token_for(tmp_path, members)
    assert first != DEFAULT_CLUSTER_TOKEN
    token_file = tmp_path / CLUSTER_TOKEN_FILE
    assert token_file.read_text().strip() == first
    assert token_file.stat().st_mode & 0o077 == 0
    # no member has data yet: a new bootstrap, a new token
    second = cluster_token_for(tmp_path, members)
    assert second != first
    # a member has data: the cluster exists, its token is kept
    node_dir = tmp_path / members[0].replace(":", "_")
    node_dir.mkdir()
    (node_dir / "naraft.db").write_bytes(b"")
    assert cluster_token_for(tmp_path, members) == second
    # wiped: a new incarnation
    shutil.rmtree(node_dir)
    assert cluster_token_for(tmp_path, members) not in (first, second)


def test_the_cluster_id_depends_on_the_token_and_the_members_not_their_order() -> None:
    a, b, c = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"
    assert cluster_id_of("t", (a, b, c)) == cluster_id_of("t", (c, a, b))
    assert cluster_id_of("t", (a, b, c)) != cluster_id_of("u", (a, b, c))
    assert cluster_id_of("t", (a, b, c)) != cluster_id_of("t", (a, b))
    assert len(cluster_id_of("t", (a,))) == 16


def test_signed_messages_of_an_earlier_incarnation_are_dropped(tmp_path: Path) -> None:
    """A batch signed with the same secret (what `cluster up` keeps across wipes) but sent
    by an earlier incarnation of the cluster carries that incarnation's id: refused before it
    is decoded, so the follower's log stays the leader's."""
    flags = (*FAST_TIMERS, "--cluster-token", "incarnation-2")
    with local_cluster(tmp_path, extra_args=flags) as cluster:
        leader = cluster.wait_ready()
        assert cluster.put(leader, "before", "v").status_code == 200
        follower = next(n for n in cluster.nodes if n is not leader)
        members = tuple(n.address for n in cluster.nodes)
        state = cluster.state(follower)
        last = int(state["lastLogIndex"])
        term = int(state["term"])
        foreign = AppendEntries(
            term=Term(term),
            prev_log_index=Index(last),
            prev_log_term=Term(term),
            entries=(Entry(term=Term(term), index=Index(last + 1), command=b"foreign"),),
            leader_commit=Index(last + 1),
        )
        body = encode_batch([Envelope(NodeId(leader.address), NodeId(follower.address), foreign)])
        old_id = cluster_id_of("incarnation-1", members)
        # Signed as the leader of the earlier incarnation would sign it: same secret and
        # addresses, a fresh time and nonce, but that incarnation's cluster id.
        signer = PeerSigner(cluster.secret.encode(), cluster_id=old_id, self_id=leader.address)
        signed = signer.headers("POST", MESSAGES_PATH, follower.address, body)
        unlabelled = {k: v for k, v in signed.items() if k != CLUSTER_HEADER}
        for headers in (signed, unlabelled):
            answer = httpx.post(
                f"{follower.url}{MESSAGES_PATH}",
                content=body,
                headers={"Content-Type": "application/json", **headers},
            )
            assert answer.status_code == 403, answer.text
            assert ("cluster_mismatch" if headers is signed else "missing_signature") in answer.text
        assert cluster.put(leader, "after", "v").status_code == 200
        cluster.wait_applied(follower, int(cluster.state(leader)["commitIndex"]))
        assert cluster.get(follower, "after").status_code == 200
        leader_state, follower_state = cluster.state(leader), cluster.state(follower)
        assert follower_state["lastLogIndex"] == leader_state["lastLogIndex"]
        assert follower_state["term"] == leader_state["term"]
        assert "foreign" not in follower.log_tail(500)
