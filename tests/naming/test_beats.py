"""Beat forwarding from followers: the batch codec, and one request per tick to the leader.

The HTTP end (`/naraft/v1/beats`) is exercised by tests/e2e/test_ephemeral.py; here a
recording sender stands in for the leader so that batching itself is observable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.naming.beats import BeatForwarder, decode_beats, encode_beats
from naraft.naming.keys import InstanceKey, ServiceKey

ORDERS = ServiceKey(namespace_id="ns-1", group_name="G1", service_name="orders")


def key(ip: str, port: int = 80) -> InstanceKey:
    return InstanceKey(service=ORDERS, ephemeral=True, cluster_name="c1", ip=ip, port=port)


def test_a_batch_survives_the_round_trip() -> None:
    other = ServiceKey(namespace_id="ns-1", group_name="G1", service_name="payments")
    keys = (
        key("10.0.0.1"),
        key("10.0.0.2", 8080),
        InstanceKey(service=other, ephemeral=False, cluster_name="c1", ip="10.0.0.1", port=0),
        key("10.0.0.3", 65_535),
    )
    assert decode_beats(encode_beats(keys)) == keys


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"nope", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"beats": {}}', id="beats-not-a-list"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", "80", true]]}', id="port-string"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", 80]]}', id="short-row"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", 80, true, 1]]}', id="long-row"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", true, true]]}', id="port-bool"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", 80.0, true]]}', id="port-float"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", 65536, true]]}', id="port-high"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", -1, true]]}', id="port-negative"),
        pytest.param(b'{"beats": [["ns", "G", "s", "c", "ip", 80, 1]]}', id="ephemeral-int"),
        pytest.param(b'{"beats": [["ns", "G", 7, "c", "ip", 80, true]]}', id="service-int"),
        pytest.param(b'{"beats": [["ns", "G", "s", null, "ip", 80, true]]}', id="cluster-null"),
        pytest.param(b'{"beats": [{"ip": "ip"}]}', id="row-object"),
        pytest.param(b'{"beats": ["ns"]}', id="row-string"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field(body: bytes) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        decode_beats(body)
    assert caught.value.field == "beats"


class RecordingLeader:
    def __init__(self, *, fail: bool = False) -> None:
        self.batches: list[tuple[str, frozenset[InstanceKey]]] = []
        self.received = asyncio.Event()
        self.fail = fail

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        self.batches.append((leader, frozenset(keys)))
        self.received.set()
        if self.fail:
            raise UnavailableError("not the leader")


async def test_beats_of_one_tick_reach_the_leader_in_one_deduplicated_request() -> None:
    forwarder = BeatForwarder(lambda: "127.0.0.1:8848", batch_seconds=0.05)
    leader = RecordingLeader()
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(forwarder.run(leader), name="beat-forwarder")
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
            forwarder.add(key(ip))
        async with asyncio.timeout(10):
            await leader.received.wait()
        task.cancel()
    assert leader.batches == [("127.0.0.1:8848", frozenset({key("10.0.0.1"), key("10.0.0.2")}))]
    assert (forwarder.forwarded, forwarder.dropped) == (2, 0)


async def test_beats_are_dropped_when_the_leader_refuses_them_or_none_is_known() -> None:
    leaders: list[str | None] = [None, "127.0.0.1:8848"]
    asked = asyncio.Event()

    def leader_now() -> str | None:
        asked.set()
        return leaders[0]

    forwarder = BeatForwarder(leader_now, batch_seconds=0.01)
    leader = RecordingLeader(fail=True)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(forwarder.run(leader), name="beat-forwarder")
        forwarder.add(key("10.0.0.1"))
        async with asyncio.timeout(10):
            await asked.wait()  # no leader known: the batch is dropped
        assert forwarder.dropped == 1
        leaders.pop(0)
        forwarder.add(key("10.0.0.2"))
        async with asyncio.timeout(10):
            await leader.received.wait()
        task.cancel()
    assert [b[1] for b in leader.batches] == [frozenset({key("10.0.0.2")})]
    assert (forwarder.forwarded, forwarder.dropped) == (0, 2)
