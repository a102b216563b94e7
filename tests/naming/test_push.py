"""UDP push: targets and their expiry, the Nacos packet, acks and bounded retries.

The pure parts take the time as an argument. `UdpPusher` runs on a real loop with real
UDP sockets on 127.0.0.1: the test's socket plays the Nacos client.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from naraft.naming.commands import RegisterInstance, UpdateSwitches
from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import ServiceKey
from naraft.naming.model import Instance, PushTarget
from naraft.naming.push import (
    GZIP_FROM_BYTES,
    AckTable,
    PushTargets,
    PushTimings,
    decode_ack,
    encode_packet,
    push_data,
    push_state_view,
)
from naraft.naming.state import NamingState
from naraft.naming.udp import UdpPusher
from naraft.state.datums import DatumTable

ORDERS = ServiceKey(namespace_id="public", group_name="G1", service_name="orders")
T0 = 1_700_000_000_000
JAVA = "Nacos-Java-Client:v1.0.0"


def make_target(port: int = 40_000, *, clusters: str = "", agent: str = JAVA) -> PushTarget:
    return PushTarget(
        service=ORDERS, clusters=clusters, client_ip="127.0.0.1", udp_port=port, agent=agent
    )


def test_a_target_is_forgotten_after_the_push_cache_time_without_a_list() -> None:
    targets = PushTargets(expire_after_ms=lambda: 10_000)
    first, second = make_target(1), make_target(2)
    targets.add_target(first, T0)
    targets.add_target(second, T0 + 5_000)
    assert targets.targets(ORDERS, T0 + 10_000) == (first, second)
    assert targets.targets(ORDERS, T0 + 10_001) == (second,)
    targets.add_target(second, T0 + 14_000)  # a list request refreshes it
    assert targets.targets(ORDERS, T0 + 24_000) == (second,)
    assert targets.targets(ORDERS, T0 + 24_001) == ()
    assert not targets.has_targets(ORDERS)


def test_the_expiry_follows_its_source_at_every_look() -> None:
    expire_after_ms = [10_000]
    targets = PushTargets(expire_after_ms=lambda: expire_after_ms[0])
    targets.add_target(make_target(), T0)
    expire_after_ms[0] = 1_000  # the pushCacheMillis switch changed
    assert targets.targets(ORDERS, T0 + 1_001) == ()


def test_adding_a_target_promises_pushes_only_while_a_sender_runs() -> None:
    targets = PushTargets()
    assert targets.add_target(make_target(), T0) is False
    targets.set_sending(True)
    assert targets.add_target(make_target(), T0) is True


def test_a_small_packet_is_plain_json_with_the_list_as_a_string() -> None:
    data = orjson.dumps({"name": "G1@@orders", "hosts": []})
    packet = encode_packet(data, 123)
    assert orjson.loads(packet) == {"type": "dom", "data": data.decode(), "lastRefTime": 123}


def test_a_packet_of_a_kilobyte_or_more_is_gzipped() -> None:
    data = orjson.dumps({"name": "G1@@orders", "hosts": ["x" * GZIP_FROM_BYTES]})
    packet = encode_packet(data, 7)
    assert packet[:2] == b"\x1f\x8b"
    assert orjson.loads(gzip.decompress(packet))["data"] == data.decode()


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        pytest.param(b'{"type":"push-ack","lastRefTime":42,"data":""}', 42, id="push-ack"),
        pytest.param(b'{"type":"unknown-ack","lastRefTime":42}', 42, id="any-type"),
        pytest.param(b'{"type":"push-ack","lastRefTime":42.0}', 42, id="js-number"),
        pytest.param(b'{"type":"push-ack","lastRefTime":"42"}', None, id="string"),
        pytest.param(b'{"type":"push-ack","lastRefTime":true}', None, id="bool"),
        pytest.param(b'{"type":"push-ack"}', None, id="missing"),
        pytest.param(b"[42]", None, id="not-an-object"),
        pytest.param(b"\x1f\x8bjunk", None, id="not-json"),
    ],
)
def test_an_ack_names_its_packet_by_last_ref_time(datagram: bytes, expected: int | None) -> None:
    assert decode_ack(datagram) == expected


def test_an_unacked_packet_is_resent_after_the_timeout_then_given_up() -> None:
    table = AckTable(PushTimings(ack_timeout_ms=100, max_retries=2))
    table.sent(make_target(), b"p", 1, now_ms=0)
    assert list(table.due(99)) == []
    assert [s.attempt for s in table.due(100)] == [2]
    assert table.next_due_ms() == 200
    assert [s.attempt for s in table.due(200)] == [3]
    assert list(table.due(300)) == []  # 1 + 2 retries sent: given up
    assert (len(table), table.given_up, table.next_due_ms()) == (0, 1, None)


def test_an_acked_packet_is_never_resent() -> None:
    table = AckTable(PushTimings(ack_timeout_ms=100, max_retries=5))
    target = make_target()
    table.sent(target, b"p", 1, now_ms=0)
    assert table.ack(1) == target
    assert table.ack(1) is None  # a duplicate ack
    assert list(table.due(1_000)) == []
    assert table.acked == 1


def test_a_newer_packet_to_a_target_replaces_its_unacked_older_one() -> None:
    table = AckTable(PushTimings(ack_timeout_ms=100, max_retries=1))
    target, other = make_target(1), make_target(2)
    table.sent(target, b"old", 1, now_ms=0)
    table.sent(other, b"other", 2, now_ms=0)
    table.sent(target, b"new", 3, now_ms=50)
    assert [(s.packet, s.last_ref_time) for s in table.due(100)] == [(b"other", 2)]
    assert [(s.packet, s.last_ref_time) for s in table.due(150)] == [(b"new", 3)]
    assert table.ack(1) is None


def test_push_state_counts_packets_acks_and_the_rest_as_failed() -> None:
    table = AckTable(PushTimings(ack_timeout_ms=100, max_retries=1))
    assert push_state_view(table, detail=False, reset=False) == {
        "succeed": 0, "total": 0, "failed": 0, "ratio": 0, "reset": False,
    }  # fmt: skip
    acked, silent, replaced = make_target(1), make_target(2), make_target(3)
    table.sent(acked, b"a", 1, now_ms=0)
    table.sent(silent, b"s", 2, now_ms=0)
    table.sent(replaced, b"old", 3, now_ms=0)
    table.sent(replaced, b"new", 4, now_ms=10)  # the older packet is never acked
    table.ack(1)
    table.ack(4)
    assert [s.packet for s in table.due(100)] == [b"s"]  # a retry is not a new packet
    assert push_state_view(table, detail=False, reset=False) == {
        "succeed": 2, "total": 4, "failed": 2, "ratio": 0.5, "reset": False,
    }  # fmt: skip


def test_push_state_detail_shows_the_unacked_packets_as_text_and_reset_forgets_them() -> None:
    table = AckTable(PushTimings(ack_timeout_ms=100, max_retries=3))
    small = encode_packet(b'{"hosts":[]}', 1)
    big_data = orjson.dumps({"hosts": ["h" * 40] * 40})
    big = encode_packet(big_data, 2)
    assert big[:2] == b"\x1f\x8b"
    table.sent(make_target(1), small, 1, now_ms=0)
    table.sent(make_target(2), big, 2, now_ms=0)
    answer = push_state_view(table, detail=True, reset=False, detail_limit=5)
    assert [orjson.loads(text)["lastRefTime"] for text in answer["data"]] == [1, 2]
    assert orjson.loads(answer["data"][1])["data"] == big_data.decode()
    assert len(push_state_view(table, detail=True, reset=False, detail_limit=1)["data"]) == 1
    assert "data" not in push_state_view(table, detail=False, reset=False)

    answer = push_state_view(table, detail=True, reset=True)
    assert (len(answer["data"]), answer["reset"]) == (2, True)  # shown, then forgotten
    assert list(table.due(1_000)) == []  # no retries of forgotten packets
    assert (len(table), table.given_up) == (0, 0)
    assert push_state_view(table, detail=True, reset=False)["data"] == []


def test_push_data_is_the_targets_list_answer_with_the_push_cache_time() -> None:
    state = NamingState(DatumTable())
    for ip, cluster in (("10.0.0.1", "c1"), ("10.0.0.2", "c2")):
        instance = Instance(service=ORDERS, ip=ip, port=80, cluster_name=cluster, healthy=False)
        state.apply(RegisterInstance(instance=instance, stamped_at_ms=T0), 1)
    target = make_target(clusters="c1", agent="Nacos-Python-Client:v0.1.16")
    view = orjson.loads(push_data(state, target, now_ms=T0 + 5, cache_ms=10_000))
    assert (view["name"], view["clusters"], view["cacheMillis"]) == ("G1@@orders", "c1", 10_000)
    assert view["lastRefTime"] == T0 + 5
    assert view["dom"] == "orders"  # not a Java >= 1.0 agent: ungrouped
    # Protect threshold 0 and no healthy instance: returned anyway, marked healthy.
    assert [(h["ip"], h["healthy"]) for h in view["hosts"]] == [("10.0.0.1", True)]


# ---------------------------------------------------------------- the shell


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def now_ms(self) -> int:
        return self.now


class Client:
    """A Nacos client's push receiver: a UDP socket on 127.0.0.1, acking when told to."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[tuple[dict[str, Any], tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        client = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                client.packets.put_nowait((orjson.loads(data), (str(addr[0]), int(addr[1]))))

        self.transport, _ = await loop.create_datagram_endpoint(
            Receiver, local_addr=("127.0.0.1", 0), family=socket.AF_INET
        )
        return int(self.transport.get_extra_info("sockname")[1])

    async def next(self, timeout_seconds: float = 10.0) -> tuple[dict[str, Any], tuple[str, int]]:
        async with asyncio.timeout(timeout_seconds):
            return await self.packets.get()

    def ack(self, packet: dict[str, Any], to: tuple[str, int]) -> None:
        assert self.transport is not None
        ack = {"type": "push-ack", "lastRefTime": packet["lastRefTime"], "data": ""}
        self.transport.sendto(orjson.dumps(ack), to)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Node:
    def __init__(self, timings: PushTimings) -> None:
        self.state = NamingState(DatumTable(), feed := ChangeFeed())
        self.targets = PushTargets()
        self.clock = FakeClock()
        self.pusher = UdpPusher(
            self.state, feed, self.targets, self.clock, timings, bind_host="127.0.0.1"
        )
        self.index = 0

    def register(self, ip: str) -> None:
        self.index += 1
        instance = Instance(service=ORDERS, ip=ip, port=80, ephemeral=False)
        self.state.apply(RegisterInstance(instance=instance, stamped_at_ms=T0), self.index)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    node = Node(PushTimings(ack_timeout_ms=100, max_retries=2))
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(node.pusher.run(), name="udp-push")
        async with asyncio.timeout(10):
            await node.pusher.wait_bound()
        yield node
        task.cancel()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    client = Client()
    await client.open()
    yield client
    client.close()


async def test_a_change_is_pushed_to_the_target_in_the_nacos_packet_shape(
    node: Node, client: Client
) -> None:
    assert client.transport is not None
    port = client.transport.get_extra_info("sockname")[1]
    node.targets.add_target(make_target(port), node.clock.now_ms())
    node.register("10.0.0.1")
    packet, source = await client.next()
    assert source == node.pusher.local_address
    assert set(packet) == {"type", "data", "lastRefTime"}
    assert packet["type"] == "dom"
    data = orjson.loads(packet["data"])
    assert (data["name"], data["cacheMillis"]) == ("G1@@orders", 10_000)
    assert [h["ip"] for h in data["hosts"]] == ["10.0.0.1"]


async def test_an_acked_push_is_sent_once_and_an_unacked_one_retries_then_stops(
    node: Node, client: Client
) -> None:
    silent = Client()
    silent_port = await silent.open()
    try:
        assert client.transport is not None
        node.targets.add_target(make_target(client.transport.get_extra_info("sockname")[1]), T0)
        node.targets.add_target(make_target(silent_port), T0)
        node.register("10.0.0.1")
        packet, source = await client.next()
        client.ack(packet, source)
        # The silent client gets the packet 1 + max_retries times, the same packet each time.
        received = [(await silent.next())[0] for _ in range(3)]
        assert len({p["lastRefTime"] for p in received}) == 1
        # Give the pusher time for two more retry rounds: no packet to either client.
        await asyncio.sleep(0.3)
        assert client.packets.empty()
        assert silent.packets.empty()
        assert (node.pusher.acked, node.pusher.given_up) == (1, 1)
    finally:
        silent.close()


async def test_pushes_stop_when_the_push_enabled_switch_is_off(node: Node, client: Client) -> None:
    assert client.transport is not None
    node.targets.add_target(make_target(client.transport.get_extra_info("sockname")[1]), T0)
    node.index += 1
    off = UpdateSwitches(entry="pushEnabled", value="false", stamped_at_ms=T0)
    node.state.apply(off, node.index)
    node.register("10.0.0.1")
    await asyncio.sleep(0.2)  # absence: the pusher had time to push, and did not
    assert client.packets.empty()
    assert node.pusher.sent == 0


async def test_a_target_the_socket_cannot_address_does_not_stop_pushes_to_others(
    node: Node, client: Client
) -> None:
    assert client.transport is not None
    unreachable = PushTarget(
        service=ORDERS, clusters="", client_ip="::1", udp_port=9, agent=JAVA
    )  # IPv6, from an IPv4 socket
    node.targets.add_target(unreachable, T0)
    node.targets.add_target(make_target(client.transport.get_extra_info("sockname")[1]), T0)
    node.register("10.0.0.1")
    packet, _ = await client.next()
    assert [h["ip"] for h in orjson.loads(packet["data"])["hosts"]] == ["10.0.0.1"]
