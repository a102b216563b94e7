"""The beat policy (a table) and the leader's BeatTable sweep."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from naraft.naming.commands import RegisterInstance, RemoveInstances, SetInstanceHealth
from naraft.naming.health import (
    BeatPolicy,
    BeatTable,
    SweepCommand,
    beat_interval_ms,
)
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import Instance
from naraft.naming.state import NamingState
from naraft.state.datums import DatumTable

SVC = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="s")


@pytest.mark.parametrize(
    ("silent_ms", "healthy", "expected"),
    [
        pytest.param(0, True, "", id="just-beat"),
        pytest.param(14_999, True, "", id="just-under-15s"),
        pytest.param(15_000, True, "unhealthy", id="at-15s"),
        pytest.param(29_999, True, "unhealthy", id="just-under-30s"),
        pytest.param(30_000, True, "remove", id="at-30s"),
        pytest.param(-5, True, "", id="beat-from-the-future"),
        pytest.param(14_999, False, "healthy", id="an-unhealthy-one-beaten-revives"),
        pytest.param(15_000, False, "", id="an-unhealthy-one-silent-stays"),
        pytest.param(30_000, False, "remove", id="an-unhealthy-one-silent-30s-goes"),
    ],
)
def test_the_sweep_judges_silence_by_nacos_timeouts(
    silent_ms: int, healthy: bool, expected: str
) -> None:
    """The policy's table, as the sweep applies it to one beaten instance."""
    a = Instance(service=SVC, ip="10.0.0.1", port=1, healthy=healthy)
    state = make_state(a)
    table = BeatTable()
    assert table.sweep(50_000, state) == ()  # first seen
    table.beat(a.key, 100_000)
    now = 100_000 + silent_ms
    commands = {
        "": (),
        "unhealthy": (SetInstanceHealth(changes=((a.key, False),), stamped_at_ms=now),),
        "healthy": (SetInstanceHealth(changes=((a.key, True),), stamped_at_ms=now),),
        "remove": (RemoveInstances(keys=(a.key,), stamped_at_ms=now),),
    }
    assert table.sweep(now, state) == commands[expected]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({}, BeatPolicy(), id="no-overrides"),
        pytest.param(
            {"preserved.heart.beat.timeout": "3000", "preserved.ip.delete.timeout": "6000"},
            BeatPolicy(unhealthy_after_ms=3000, remove_after_ms=6000),
            id="both-overrides",
        ),
        pytest.param(
            {"preserved.heart.beat.timeout": "soon"}, BeatPolicy(), id="invalid-override-ignored"
        ),
    ],
)
def test_policy_metadata_overrides(metadata: dict[str, str], expected: BeatPolicy) -> None:
    assert BeatPolicy().for_metadata(metadata) == expected


def test_beat_interval_from_metadata() -> None:
    assert beat_interval_ms({"preserved.heart.beat.interval": "2000"}, 5000) == 2000
    assert beat_interval_ms({}, 5000) == 5000


def make_state(*instances: Instance) -> NamingState:
    state = NamingState(DatumTable())
    for index, instance in enumerate(instances, start=1):
        state.apply(RegisterInstance(instance=instance, stamped_at_ms=0), index)
    return state


def test_sweep_gives_unseen_instances_a_grace_period_then_expires_them() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()

    assert table.sweep(1_000, state) == ()
    assert table.sweep(15_999, state) == ()
    assert table.sweep(16_000, state) == (
        SetInstanceHealth(changes=((a.key, False),), stamped_at_ms=16_000),
    )
    assert table.sweep(31_000, state) == (RemoveInstances(keys=(a.key,), stamped_at_ms=31_000),)


def test_sweep_leaves_persistent_instances_alone() -> None:
    state = make_state(Instance(service=SVC, ip="10.0.0.1", port=1, ephemeral=False))
    table = BeatTable()
    table.sweep(0, state)
    assert table.sweep(1_000_000, state) == ()


def test_beats_keep_an_instance_healthy() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()
    table.sweep(0, state)
    for now in range(5_000, 60_000, 5_000):
        table.beat(a.key, now)
        assert table.sweep(now, state) == ()


def test_only_a_real_beat_revives_an_unhealthy_instance() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1, healthy=False)
    state = make_state(a)
    table = BeatTable()

    assert table.sweep(0, state) == ()  # grace period alone: stays unhealthy
    table.beat(a.key, 1_000)
    assert table.sweep(1_000, state) == (
        SetInstanceHealth(changes=((a.key, True),), stamped_at_ms=1_000),
    )


def test_reset_all_gives_every_instance_a_fresh_grace_period() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()
    table.beat(a.key, 0)
    table.reset_all(40_000)
    assert table.sweep(40_000, state) == ()
    assert table.last_beat_ms(a.key) == 40_000


def test_metadata_timeouts_apply_per_instance() -> None:
    quick = Instance(
        service=SVC,
        ip="10.0.0.1",
        port=1,
        metadata={"preserved.heart.beat.timeout": "1000", "preserved.ip.delete.timeout": "2000"},
    )
    slow = Instance(service=SVC, ip="10.0.0.2", port=1)
    state = make_state(quick, slow)
    table = BeatTable()
    table.sweep(0, state)
    assert table.sweep(2_000, state) == (RemoveInstances(keys=(quick.key,), stamped_at_ms=2_000),)


def test_sweep_forgets_instances_that_are_gone() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    table = BeatTable()
    table.beat(a.key, 0)
    table.sweep(10, make_state())
    assert table.last_beat_ms(a.key) is None


def test_a_swept_instance_whose_health_was_applied_is_not_reported_again() -> None:
    # the sweep prepares each service's list once per stored list: an applied health
    # change is a new list, so the next sweep must see the instance as unhealthy
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()
    table.sweep(0, state)
    (unhealthy,) = table.sweep(16_000, state)
    state.apply(unhealthy, 2)
    assert table.sweep(17_000, state) == ()
    table.beat(a.key, 18_000)
    assert table.sweep(18_000, state) == (
        SetInstanceHealth(changes=((a.key, True),), stamped_at_ms=18_000),
    )


def test_new_metadata_timeouts_apply_from_the_next_sweep() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()
    table.sweep(0, state)
    assert table.sweep(2_000, state) == ()
    quick = {"preserved.heart.beat.timeout": "1000", "preserved.ip.delete.timeout": "2000"}
    state.apply(RegisterInstance(instance=replace(a, metadata=quick), stamped_at_ms=0), 2)
    assert table.sweep(2_001, state) == (RemoveInstances(keys=(a.key,), stamped_at_ms=2_001),)


def test_reset_all_reaches_instances_the_sweep_already_prepared() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    state = make_state(a)
    table = BeatTable()
    table.sweep(0, state)
    table.reset_all(40_000)
    assert table.last_beat_ms(a.key) is None
    assert table.sweep(40_000, state) == ()
    assert table.sweep(55_000, state) == (
        SetInstanceHealth(changes=((a.key, False),), stamped_at_ms=55_000),
    )


def test_a_swept_instance_removed_from_the_state_is_forgotten() -> None:
    a = Instance(service=SVC, ip="10.0.0.1", port=1)
    b = Instance(service=SVC, ip="10.0.0.2", port=1)
    state = make_state(a, b)
    table = BeatTable()
    table.beat(a.key, 0)
    table.sweep(0, state)
    state.apply(RemoveInstances(keys=(a.key,), stamped_at_ms=0), 3)
    assert table.sweep(1_000, state) == ()
    assert table.last_beat_ms(a.key) is None
    assert table.last_beat_ms(b.key) == 0


def reference_sweep(
    last_beats: dict[InstanceKey, int], beaten: set[InstanceKey], now_ms: int, state: NamingState
) -> tuple[SweepCommand, ...]:
    """The sweep's rule in its plainest form: every ephemeral instance looked at afresh."""
    health: list[tuple[InstanceKey, bool]] = []
    remove: list[InstanceKey] = []
    seen: set[InstanceKey] = set()
    for service, _ in state.ephemeral_lists():
        for instance in state.instances(service, ephemeral=True):
            seen.add(instance.key)
            silent_for = now_ms - last_beats.setdefault(instance.key, now_ms)
            policy = BeatPolicy().for_metadata(instance.metadata)
            if silent_for >= policy.remove_after_ms:
                remove.append(instance.key)
            elif silent_for >= policy.unhealthy_after_ms:
                if instance.healthy:
                    health.append((instance.key, False))
            elif not instance.healthy and instance.key in beaten:
                health.append((instance.key, True))
    for gone in last_beats.keys() - seen:
        del last_beats[gone]
        beaten.discard(gone)
    commands: list[SweepCommand] = []
    if health:
        commands.append(SetInstanceHealth(changes=tuple(health), stamped_at_ms=now_ms))
    if remove:
        commands.append(RemoveInstances(keys=tuple(remove), stamped_at_ms=now_ms))
    return tuple(commands)


SERVICES = [replace(SVC, service_name=name) for name in ("s", "t")]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["register", "quick", "remove", "beat", "sweep", "apply", "reset"]),
        st.integers(0, 5),  # which instance
        st.integers(0, 12_000),  # time passing before the step, ms
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_the_sweep_decides_as_a_fresh_look_at_every_instance_would(
    steps: list[tuple[str, int, int]],
) -> None:
    state = NamingState(DatumTable())
    table = BeatTable()
    last_beats: dict[InstanceKey, int] = {}
    beaten: set[InstanceKey] = set()
    now, pending = 0, ()
    for index, (action, which, passing) in enumerate(steps, start=1):
        now += passing
        instance = Instance(service=SERVICES[which % 2], ip=f"10.0.0.{which}", port=1)
        if action in ("register", "quick"):
            metadata = {"preserved.heart.beat.timeout": "4000"} if action == "quick" else {}
            register = RegisterInstance(
                instance=replace(instance, metadata=metadata), stamped_at_ms=0
            )
            state.apply(register, index)
        elif action == "remove":
            state.apply(RemoveInstances(keys=(instance.key,), stamped_at_ms=now), index)
        elif action == "beat":
            table.beat(instance.key, now)
            last_beats[instance.key] = max(now, last_beats.get(instance.key, now))
            beaten.add(instance.key)
        elif action == "apply":  # what the leader does with a sweep's commands
            for command in pending:
                state.apply(command, index)
            pending = ()
        elif action == "reset":
            table.reset_all(now)
            last_beats.clear()
            beaten.clear()
        else:
            pending = table.sweep(now, state)
            assert pending == reference_sweep(last_beats, beaten, now, state)
