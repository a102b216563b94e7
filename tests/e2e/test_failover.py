"""Failover of a real cluster: kill -9, SIGSTOP and whole-cluster restarts of `naraft server`
processes, checking that no acknowledged write is ever lost and that a write answered
"not-applied" never appears."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import httpx
import pytest
from tests.e2e.harness import (
    BackgroundWriter,
    LocalCluster,
    NodeProcess,
    WriteLedger,
    WriteOutcome,
    WriteRecord,
    attempt_put,
    local_cluster,
    wait_for,
    write_concurrently,
)

from naraft.client import kv_path

pytestmark = pytest.mark.e2e

PROPOSAL_TIMEOUT_SECONDS: Final = 5.0  # NodeConfig.proposal_timeout_seconds
NO_QUORUM_ANSWER_SLACK_SECONDS: Final = 5.0  # leader wait (2 s) plus a loaded machine's slack
ELECTION_TIMEOUT_SECONDS: Final = 30.0  # generous: two cores shared with other test runs


def keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def assert_every_node_shows(cluster: LocalCluster, writes: dict[str, str]) -> None:
    """Every running node has caught up with the leader and shows every write (local read)."""
    for node in cluster.running_nodes():
        cluster.wait_caught_up(node)
        missing = cluster.missing_writes(node, writes, consistency="local")
        assert missing == {}, f"{node.address} lost acknowledged writes: {missing}"


def assert_no_node_shows(cluster: LocalCluster, keys: list[str]) -> None:
    for node in cluster.running_nodes():
        cluster.wait_caught_up(node)
        present = cluster.present_keys(node, keys)
        assert present == {}, f"{node.address} applied writes answered not-applied: {present}"


def wait_acked(ledger: WriteLedger, at_least: int, what: str) -> None:
    wait_for(
        lambda: ledger.count(WriteOutcome.APPLIED) >= at_least,
        timeout_seconds=60,
        what=f"{at_least} acknowledged writes {what} ({ledger.summary()})",
    )


def test_killing_the_leader_elects_another_and_loses_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    with local_cluster(tmp_path, size=3) as cluster:
        old = cluster.wait_ready()
        old_term = cluster.state(old)["term"]
        ledger = write_concurrently(cluster.nodes, keys("k", 200), threads=4)
        acked = ledger.acked()
        assert ledger.unexpected() == []
        assert len(acked) == 200, ledger.summary()

        old.kill()
        new = cluster.leader(exclude=old.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        assert new.address != old.address
        assert cluster.state(new)["term"] > old_term
        missing = cluster.missing_writes(new, acked, consistency="linearizable")
        assert missing == {}, f"the new leader lost acknowledged writes: {missing}"

        cluster.restart(old)
        assert cluster.leader(timeout_seconds=ELECTION_TIMEOUT_SECONDS) is new
        rejoined = cluster.state(old)
        assert rejoined["role"] == "follower"
        assert rejoined["term"] == cluster.state(new)["term"]
        commit = cluster.wait_caught_up(old)
        assert cluster.state(old)["appliedIndex"] >= commit >= 200
        assert_every_node_shows(cluster, acked)


def test_a_write_a_follower_forwards_to_a_just_killed_leader_goes_to_the_next_one(
    tmp_path: Path,
) -> None:
    """The dead leader refuses the forwarded connection, so it never saw the write: the
    follower waits for the new leader and forwards there (or applies it, if it won) instead
    of answering 503."""
    with local_cluster(tmp_path, size=3) as cluster:
        old = cluster.wait_ready()
        followers = [n for n in cluster.nodes if n is not old]
        assert all(cluster.state(n)["leader"] == old.address for n in followers)
        old.kill()
        answers = {n.address: cluster.put(n, f"after-kill-{n.address}", "v") for n in followers}
        for address, answer in answers.items():
            assert answer.status_code == 200, (address, answer.text)
        new = cluster.leader(exclude=old.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        written = {f"after-kill-{n.address}": "v" for n in followers}
        assert cluster.missing_writes(new, written, consistency="linearizable") == {}
        # A follower that forwarded to the dead leader was refused and retried with the new
        # one. (Under load the followers may elect before a write arrives; that write is
        # then forwarded straight to the new leader, and there is no refusal to retry.)
        for follower in followers:
            log = follower.log_text()
            if f"to {old.address} failed" in log:
                assert "retrying PUT" in log, log[-3000:]


def test_writes_continue_through_a_leader_kill_and_only_unknown_outcomes_are_in_doubt(
    tmp_path: Path,
) -> None:
    with local_cluster(tmp_path, size=3) as cluster:
        old = cluster.wait_ready()
        with BackgroundWriter(cluster.running_nodes, prefix="bg") as writer:
            wait_acked(writer.ledger, 30, "before the kill")
            old.kill()
            new = cluster.leader(exclude=old.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
            wait_acked(writer.ledger, writer.ledger.count(WriteOutcome.APPLIED) + 30, "after it")
        ledger = writer.ledger
        assert ledger.unexpected() == []
        acked = ledger.acked()
        not_applied = list(ledger.with_outcome(WriteOutcome.NOT_APPLIED))
        missing = cluster.missing_writes(new, acked, consistency="linearizable")
        assert missing == {}, f"the new leader lost acknowledged writes: {missing}"

        cluster.restart(old)
        cluster.leader(timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        assert_every_node_shows(cluster, acked)
        assert_no_node_shows(cluster, not_applied)


def test_a_leader_stopped_mid_write_never_calls_an_applied_write_not_applied(
    tmp_path: Path,
) -> None:
    """SIGTERM while proposals are in flight: they are in the leader's log and maybe on a
    majority, so the next leader may commit them; the answer must not say "not-applied"."""
    with local_cluster(tmp_path, size=3) as cluster:
        old = cluster.wait_ready()
        stopping = False
        writers = [
            BackgroundWriter(lambda: [] if stopping else [old], prefix=f"w{i}") for i in range(6)
        ]
        ledger_views = [w.ledger for w in writers]
        try:
            for writer in writers:
                writer.__enter__()
            wait_for(
                lambda: sum(v.count(WriteOutcome.APPLIED) for v in ledger_views) >= 100,
                timeout_seconds=60,
                what="100 acknowledged writes",
            )
            stopping = True
            old.terminate()
        finally:
            for writer in writers:
                writer.stop()
        new = cluster.leader(exclude=old.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        acked: dict[str, str] = {}
        not_applied: list[str] = []
        for ledger in ledger_views:
            assert ledger.unexpected() == []
            acked |= ledger.acked()
            not_applied += list(ledger.with_outcome(WriteOutcome.NOT_APPLIED))
        missing = cluster.missing_writes(new, acked, consistency="linearizable")
        assert missing == {}, f"the new leader lost acknowledged writes: {missing}"
        cluster.wait_caught_up(new)
        present = cluster.present_keys(new, not_applied)
        assert present == {}, f"writes answered not-applied were applied: {present}"


def test_five_nodes_survive_two_kills_and_a_third_kill_fails_writes_fast(tmp_path: Path) -> None:
    with local_cluster(tmp_path, size=5) as cluster:
        first = cluster.wait_ready()
        ledger = write_concurrently(cluster.nodes, keys("a", 40), threads=4)
        other = next(n for n in cluster.nodes if n is not first)
        first.kill()
        other.kill()
        second = cluster.leader(exclude=first.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        write_concurrently(cluster.running_nodes(), keys("b", 40), threads=3, ledger=ledger)
        acked = ledger.acked()
        assert ledger.unexpected() == []
        assert all(f"b-{i}" in acked for i in range(40)), ledger.summary()
        missing = cluster.missing_writes(second, acked, consistency="linearizable")
        assert missing == {}, f"lost acknowledged writes after two kills: {missing}"
        for node in cluster.running_nodes():
            cluster.wait_caught_up(node)

        second.kill()
        survivors = cluster.running_nodes()
        assert len(survivors) == 2
        with httpx.Client() as client:
            # Right after the kill (the survivors may still name the dead leader), then once
            # they know there is none.
            refused = [timed_write(client, node, f"c-early-{node.address}") for node in survivors]
            wait_for(
                lambda: all(cluster.state(n)["leader"] is None for n in survivors),
                timeout_seconds=ELECTION_TIMEOUT_SECONDS,
                what="the survivors to forget the dead leader",
            )
            refused += [timed_write(client, node, f"c-late-{node.address}") for node in survivors]
        for record, seconds in refused:
            assert record.status == 503, record
            assert seconds < PROPOSAL_TIMEOUT_SECONDS + NO_QUORUM_ANSWER_SLACK_SECONDS, record
        late = [record for record, _ in refused if record.key.startswith("c-late")]
        assert all(r.outcome is WriteOutcome.NOT_APPLIED for r in late), late

        for node in survivors:
            assert cluster.missing_writes(node, acked, consistency="local") == {}
            assert cluster.present_keys(node, [r.key for r in late]) == {}
            started = time.monotonic()
            read = cluster.get(node, "a-0", consistency="linearizable")
            assert read.status_code == 503, read.text
            assert time.monotonic() - started < (
                PROPOSAL_TIMEOUT_SECONDS + NO_QUORUM_ANSWER_SLACK_SECONDS
            )


def timed_write(client: httpx.Client, node: NodeProcess, key: str) -> tuple[WriteRecord, float]:
    """One write through `node` (no retry) and how many seconds its answer took."""
    started = time.monotonic()
    record = attempt_put(client, node, key, f"v-{key}", timeout_seconds=60)
    return record, time.monotonic() - started


def linearizable_read(node: NodeProcess, key: str) -> tuple[int, dict[str, object]]:
    """One linearizable GET through `node`, on a client of its own (for a worker thread)."""
    with httpx.Client() as client:
        answer = client.get(
            f"{node.url}{kv_path(key)}", params={"consistency": "linearizable"}, timeout=60
        )
    return answer.status_code, answer.json()


def test_a_paused_leader_is_replaced_then_steps_down_and_catches_up(tmp_path: Path) -> None:
    with local_cluster(tmp_path, size=3) as cluster:
        old = cluster.wait_ready()
        old_term = cluster.state(old)["term"]
        ledger = write_concurrently(cluster.nodes, keys("before", 40), threads=2)
        followers = [n for n in cluster.nodes if n is not old]
        targets: list[NodeProcess] = list(followers)  # never write straight to the paused one
        with (
            BackgroundWriter(lambda: targets, prefix="bg", ledger=ledger) as writer,
            # Writes straight to the old leader: one hangs while it is paused and reaches it,
            # a stale leader, when it resumes.
            BackgroundWriter(lambda: [old], prefix="stale", ledger=ledger),
        ):
            wait_acked(writer.ledger, 60, "before the pause")
            old.pause()
            new = cluster.leader(exclude=old.address, timeout_seconds=ELECTION_TIMEOUT_SECONDS)
            new_term = cluster.state(new)["term"]
            assert new_term > old_term
            applied = writer.ledger.count(WriteOutcome.APPLIED)
            wait_acked(writer.ledger, applied + 30, "while paused")
            fresh = cluster.put(new, "fresh", "written while the old leader was paused")
            assert fresh.status_code == 200, fresh.text
            # A linearizable read sent to the old leader (queued while it is paused, or just
            # after it resumes, believing it still leads) must see that write, or fail.
            with ThreadPoolExecutor(max_workers=1) as pool:
                stale_read = pool.submit(linearizable_read, old, "fresh")
                old.resume()
                status, body = stale_read.result(timeout=120)
            assert status in (200, 503), (status, body)
            if status == 200:
                assert body["value"] == "written while the old leader was paused", body
            wait_for(
                lambda: cluster.state(old)["role"] == "follower"
                and cluster.state(old)["leader"] == new.address,
                timeout_seconds=ELECTION_TIMEOUT_SECONDS,
                what=f"{old.address} to step down and follow {new.address}",
            )
            targets.append(old)
            wait_acked(writer.ledger, writer.ledger.count(WriteOutcome.APPLIED) + 30, "after it")
        assert ledger.unexpected() == []
        assert cluster.leader(timeout_seconds=ELECTION_TIMEOUT_SECONDS) is new
        assert_every_node_shows(cluster, ledger.acked())
        assert_no_node_shows(cluster, list(ledger.with_outcome(WriteOutcome.NOT_APPLIED)))


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(NodeProcess.terminate, id="SIGTERM"),
        pytest.param(NodeProcess.kill, id="SIGKILL"),
    ],
)
def test_restarting_every_node_keeps_every_acknowledged_write(
    tmp_path: Path, stop: Callable[[NodeProcess], None]
) -> None:
    with local_cluster(tmp_path, size=3) as cluster:
        cluster.wait_ready()
        ledger = write_concurrently(cluster.nodes, keys("d", 90), threads=3)
        acked = ledger.acked()
        assert len(acked) == 90, ledger.summary()
        for node in cluster.nodes:
            stop(node)
        for node in cluster.nodes:
            node.start()
        leader = cluster.leader(timeout_seconds=ELECTION_TIMEOUT_SECONDS)
        missing = cluster.missing_writes(leader, acked, consistency="linearizable")
        assert missing == {}, f"a full restart lost acknowledged writes: {missing}"
        assert_every_node_shows(cluster, acked)
