"""Connection-bound ephemeral instances (Nacos 2.x): the service's owner-aware register and
release, and `OwnedInstances`, which keeps a node's connection-bound instances beaten."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import orjson
import pytest
from tests.api.conftest import T0, Env, FakeClock, LocalBeats

from naraft.errors import InvalidArgumentError
from naraft.naming import owned as owned_module
from naraft.naming.commands import RegisterInstance, ReleaseOwner, RemoveInstances
from naraft.naming.health import BeatPolicy, BeatTable
from naraft.naming.keeper import BeatKeeper
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import MAX_OWNER_CHARS, ClientAgent
from naraft.naming.owned import OwnedInstances, OwnedInstancesFullError
from naraft.naming.service import MAX_RELEASE_KEYS, NamingService
from naraft.naming.validate import RawInstance

SERVICE = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="orders")


def raw(ip: str = "10.0.0.1", *, port: int = 8080, ephemeral: bool = True) -> RawInstance:
    return RawInstance(
        service_name="orders", ip=ip, port=str(port), ephemeral=str(ephemeral).lower()
    )


def key(ip: str = "10.0.0.1", *, port: int = 8080, ephemeral: bool = True) -> InstanceKey:
    return InstanceKey(
        service=SERVICE, ephemeral=ephemeral, cluster_name="DEFAULT", ip=ip, port=port
    )


def owners(env: Env) -> dict[str, str]:
    return {i.ip: i.owner for i in env.state.instances(SERVICE)}


# ------------------------------------------------------------------------------- the service


async def test_register_with_an_owner_binds_the_instance_and_answers_its_key() -> None:
    env = Env()
    registered = await env.naming.register_instance(raw(), owner="conn-a")
    assert registered == key()
    assert owners(env) == {"10.0.0.1": "conn-a"}
    assert env.beats.recorded == [(key(), T0)]  # its first beat, as a v1 registration's

    await env.naming.register_instance(raw())  # the same instance over v1: no owner now
    assert owners(env) == {"10.0.0.1": ""}


async def test_a_persistent_instance_is_never_bound() -> None:
    env = Env()
    await env.naming.register_instance(raw(ephemeral=False), owner="conn-a")
    proposed = env.proposer.proposed[-1]
    assert isinstance(proposed, RegisterInstance)
    assert proposed.instance.owner == ""


@pytest.mark.parametrize("owner", ["x" * (MAX_OWNER_CHARS + 1)])
async def test_a_bad_owner_is_refused_before_proposing(owner: str) -> None:
    env = Env()
    with pytest.raises(InvalidArgumentError) as refused:
        await env.naming.register_instance(raw(), owner=owner)
    assert refused.value.field == "owner"
    for bad in (owner, ""):
        with pytest.raises(InvalidArgumentError) as refused:
            await env.naming.release_owner(bad, [key()])
        assert refused.value.field == "owner"
    assert env.proposer.proposed == []


async def test_release_removes_what_the_connection_still_owns_in_one_entry() -> None:
    env = Env()
    await env.naming.register_instance(raw("10.0.0.1"), owner="conn-a")
    await env.naming.register_instance(raw("10.0.0.2"), owner="conn-a")
    # The client moved to another node and registered .2 again there before conn-a closed.
    await env.naming.register_instance(raw("10.0.0.2"), owner="conn-b")
    await env.naming.register_instance(raw("10.0.0.3"))
    before = len(env.proposer.proposed)

    await env.naming.release_owner(
        "conn-a", [key("10.0.0.1"), key("10.0.0.2"), key("10.0.0.1"), key(ephemeral=False)]
    )

    assert owners(env) == {"10.0.0.2": "conn-b", "10.0.0.3": ""}
    assert env.proposer.proposed[before:] == [
        ReleaseOwner(owner="conn-a", keys=(key("10.0.0.1"), key("10.0.0.2")), stamped_at_ms=T0)
    ]


async def test_a_large_release_is_split_into_bounded_entries() -> None:
    env = Env()
    keys = [key(f"10.0.{n // 250}.{n % 250}") for n in range(MAX_RELEASE_KEYS + 1)]
    await env.naming.release_owner("conn-a", keys)
    sizes = [len(c.keys) for c in env.proposer.proposed if isinstance(c, ReleaseOwner)]
    assert sizes == [MAX_RELEASE_KEYS, 1]


async def test_release_goes_through_while_the_quota_alarm_is_up() -> None:
    class QuotaUp:
        def quota_refusal(self) -> str | None:
            return "state quota exceeded"

    env = Env()
    await env.naming.register_instance(raw(), owner="conn-a")
    naming = NamingService(env.state, env.proposer, env.clock, env.beats, env.push, guard=QuotaUp())
    await naming.release_owner("conn-a", [key()])
    assert owners(env) == {}


async def test_an_explicit_deregister_removes_the_instance_whoever_owns_it() -> None:
    env = Env()
    await env.naming.register_instance(raw(), owner="conn-a")
    assert await env.naming.deregister_instance(raw()) == key()
    assert owners(env) == {}


async def test_v1_answers_never_show_the_owner() -> None:
    env = Env()
    await env.naming.register_instance(raw(), owner="conn-secret")
    detail = env.naming.get_instance(raw())
    listed = env.naming.list_instances(
        namespace_id=None,
        group_name=None,
        service_name="orders",
        clusters=None,
        healthy_only=None,
        client=ClientAgent(),
    )
    statuses = env.naming.instance_statuses("public##DEFAULT_GROUP@@orders")
    for answer in (detail, listed, statuses):
        text = orjson.dumps(answer)
        assert b"conn-secret" not in text
        assert b"owner" not in text


# ------------------------------------------------------------------------- OwnedInstances


def test_add_discard_and_close_track_each_connection() -> None:
    owned = OwnedInstances(FakeClock())
    owned.add("conn-a", key("10.0.0.1"))
    owned.add("conn-a", key("10.0.0.1"))  # again: no change
    owned.add("conn-a", key("10.0.0.2"))
    owned.add("conn-b", key("10.0.0.2"))  # the same instance over a second connection
    assert len(owned) == 3
    assert set(owned.owners()) == {"conn-a", "conn-b"}

    owned.discard("conn-a", key("10.0.0.2"))
    owned.discard("conn-a", key("10.0.0.9"))  # not held: no-op
    owned.discard("conn-z", key("10.0.0.1"))
    assert owned.keys_of("conn-a") == {key("10.0.0.1")}
    assert key("10.0.0.2") in owned  # conn-b still holds it

    assert owned.close("conn-b") == {key("10.0.0.2")}
    assert key("10.0.0.2") not in owned
    assert owned.close("conn-b") == frozenset()
    assert owned.close("conn-a") == {key("10.0.0.1")}
    assert len(owned) == 0
    assert owned.owners() == ()


def test_add_refuses_persistent_keys_and_empty_owners() -> None:
    owned = OwnedInstances(FakeClock())
    with pytest.raises(ValueError, match="persistent"):
        owned.add("conn-a", key(ephemeral=False))
    with pytest.raises(ValueError, match="owner"):
        owned.add("", key())
    assert len(owned) == 0


def test_adds_past_the_bound_are_refused_until_something_is_released() -> None:
    owned = OwnedInstances(FakeClock(), max_keys=2)
    owned.add("conn-a", key("10.0.0.1"))
    owned.add("conn-b", key("10.0.0.1"))
    with pytest.raises(OwnedInstancesFullError, match="2 connection-bound instances"):
        owned.add("conn-a", key("10.0.0.2"))
    owned.add("conn-a", key("10.0.0.1"))  # held already: not a new pair
    owned.close("conn-b")
    owned.add("conn-a", key("10.0.0.2"))
    assert len(owned) == 2
    assert owned_module.MAX_OWNED_KEYS == 1_000_000


class RecordingSink:
    """A BeatSink that lets a test await what it has seen."""

    def __init__(self) -> None:
        self.beats: list[tuple[InstanceKey, int]] = []
        self._changed = asyncio.Condition()

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None:
        self.beats.append((key, beat_at_ms))
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(predicate)


async def test_beat_once_beats_each_held_key_once_across_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(owned_module, "BEAT_SLICE_KEYS", 2)
    clock = FakeClock()
    owned = OwnedInstances(clock)
    keys = [key(f"10.0.0.{n}") for n in range(5)]
    for k in keys:
        owned.add("conn-a", k)
    owned.add("conn-b", keys[0])
    sink = RecordingSink()

    assert await owned.beat_once(sink) == 5
    assert sorted(k.ip for k, _ in sink.beats) == sorted(k.ip for k in keys)
    assert {at for _, at in sink.beats} == {T0}
    assert owned.beats == 5


async def test_run_keeps_beating_live_connections_and_stops_for_closed_ones() -> None:
    clock = FakeClock()
    owned = OwnedInstances(clock)
    owned.add("conn-a", key("10.0.0.1"))
    owned.add("conn-b", key("10.0.0.2"))
    sink = RecordingSink()

    def beaten_since(start: int, ip: str) -> int:
        return sum(1 for k, _ in sink.beats[start:] if k.ip == ip)

    task = asyncio.create_task(owned.run(sink, 0.01))
    try:
        await sink.wait_until(lambda: beaten_since(0, "10.0.0.1") >= 2)
        assert beaten_since(0, "10.0.0.2") >= 1
        assert owned.close("conn-b") == {key("10.0.0.2")}
        mark = len(sink.beats)
        await sink.wait_until(lambda: beaten_since(mark, "10.0.0.1") >= 2)
        # Each key is checked just before its beat: even a round under way skips it.
        assert beaten_since(mark, "10.0.0.2") == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_held_instance_outlives_the_sweep_and_a_closed_one_does_not() -> None:
    env = Env()
    await env.naming.register_instance(raw("10.0.0.1"), owner="conn-a")
    await env.naming.register_instance(raw("10.0.0.2"), owner="conn-b")
    leader = LocalBeats()  # the leader's BeatTable, fed directly
    table: BeatTable = leader.table
    owned = OwnedInstances(env.clock)
    owned.add("conn-a", key("10.0.0.1"))
    owned.add("conn-b", key("10.0.0.2"))
    assert table.sweep(T0, env.state) == ()  # both seen: grace from now

    owned.close("conn-b")  # its node died before releasing: nobody beats .2 any more
    for second in (5, 10, 15, 20, 25, 30):
        env.clock.now = T0 + second * 1000
        await owned.beat_once(leader)

    assert table.sweep(env.clock.now, env.state) == (
        RemoveInstances(keys=(key("10.0.0.2"),), stamped_at_ms=env.clock.now),
    )


class FakeLeadership:
    def __init__(self) -> None:
        self.is_leader = False
        self.leader: str | None = "127.0.0.1:8849"

    async def propose(self, command: bytes) -> object:
        raise AssertionError("nothing to propose here")


class CapturingSender:
    def __init__(self) -> None:
        self.sent: list[InstanceKey] = []
        self.arrived = asyncio.Event()

    async def send_beats(self, leader: str, keys: Sequence[InstanceKey]) -> None:
        self.sent.extend(keys)
        self.arrived.set()


async def test_on_a_follower_the_beats_travel_in_the_forwarders_batch() -> None:
    env = Env()
    replica = FakeLeadership()
    keeper = BeatKeeper(
        replica,
        env.state,
        env.clock,
        BeatPolicy(),
        sweep_interval_seconds=1.0,
        batch_seconds=0.001,
    )
    owned = OwnedInstances(env.clock)
    owned.add("conn-a", key("10.0.0.1"))
    owned.add("conn-a", key("10.0.0.2"))
    sender = CapturingSender()
    async with asyncio.TaskGroup() as tasks:
        forwarding = tasks.create_task(keeper.forward_forever(sender))
        beating = tasks.create_task(owned.run(keeper, 0.01))
        async with asyncio.timeout(5):
            while {k.ip for k in sender.sent} != {"10.0.0.1", "10.0.0.2"}:
                sender.arrived.clear()
                await sender.arrived.wait()
        forwarding.cancel()
        beating.cancel()
    assert keeper.forwarder.forwarded >= 2
