"""A burst of valid writes at the value limit commits without deposing the leader.

Twelve concurrent kv writes of 900 KiB of incompressible text (the kv API takes values up to
1 MiB, sent as a JSON string): before peer traffic had its own limits, the leader's append
batches over 1 MiB were refused 413 by the followers' client body limit, the beats batched
with them were lost, 11 writes answered 503 and the leader stepped down.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.e2e.harness import LocalCluster

from naraft.client import kv_path
from naraft.state.kv import MAX_VALUE_BYTES

pytestmark = pytest.mark.e2e

WRITES = 12
VALUE_CHARS = 900 * 1024  # just under the documented 1 MiB value limit


def incompressible_value() -> str:
    """900 KiB of base64 of random bytes: JSON-safe text that gzip barely shrinks."""
    return base64.b64encode(os.urandom(VALUE_CHARS * 3 // 4)).decode("ascii")


def test_twelve_concurrent_writes_at_the_value_limit_commit_with_no_leader_change(
    cluster3: LocalCluster,
) -> None:
    assert VALUE_CHARS < MAX_VALUE_BYTES
    leader = cluster3.leader()
    before = {node.address: cluster3.state(node)["term"] for node in cluster3.nodes}
    assert len(set(before.values())) == 1

    values = {f"big-{i}": incompressible_value() for i in range(WRITES)}
    start = threading.Barrier(WRITES)

    def write(i: int, key: str) -> tuple[int, object]:
        node = cluster3.nodes[i % len(cluster3.nodes)]  # some forwarded by followers
        with httpx.Client() as client:
            start.wait()
            answer = client.put(
                f"{node.url}{kv_path(key)}", json={"value": values[key]}, timeout=30.0
            )
        if answer.status_code != 200:
            return answer.status_code, answer.text[:200]
        return 200, answer.json()["index"]

    with ThreadPoolExecutor(max_workers=WRITES) as pool:
        answers = list(pool.map(write, range(WRITES), values))
    assert [status for status, _ in answers] == [200] * WRITES, answers
    indexes = [int(str(index)) for _, index in answers]

    for node in cluster3.nodes:
        cluster3.wait_applied(node, max(indexes))
        for key, value in values.items():
            got = cluster3.get(node, key, consistency="local")
            assert got.status_code == 200, (node.address, key, got.text[:200])
            assert hashlib.sha256(got.json()["value"].encode()).digest() == (
                hashlib.sha256(value.encode()).digest()
            ), (node.address, key)

    after = {node.address: cluster3.state(node) for node in cluster3.nodes}
    assert {a: s["term"] for a, s in after.items()} == before, "a leader change happened"
    assert {s["leader"] for s in after.values()} == {leader.address}
    for node in cluster3.nodes:
        assert not node.tracebacks(), node.address


def test_the_largest_value_the_api_takes_replicates(cluster3: LocalCluster) -> None:
    """One entry larger than the 1 MiB append cap still travels (alone) to every node."""
    leader = cluster3.leader()
    value = "v" * MAX_VALUE_BYTES  # the documented value limit, exactly
    answer = cluster3.put(leader, "largest", value)
    assert answer.status_code == 200, answer.text[:200]
    for node in cluster3.nodes:
        cluster3.wait_applied(node, answer.json()["index"])
        assert cluster3.get(node, "largest").json()["value"] == value
