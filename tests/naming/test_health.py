"""The beat policy (a table) and the leader's BeatTable sweep."""

from __future__ import annotations

import pytest

from naraft.naming.commands import RegisterInstance, RemoveInstances, SetInstanceHealth
from naraft.naming.health import BeatPolicy, BeatTable, InstanceVerdict, beat_interval_ms
from naraft.naming.keys import ServiceKey
from naraft.naming.model import Instance
from naraft.naming.state import NamingState
from naraft.state.datums import DatumTable

SVC = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="s")


@pytest.mark.parametrize(
    ("silent_ms", "expected"),
    [
        pytest.param(0, InstanceVerdict.HEALTHY, id="just-beat"),
        pytest.param(14_999, InstanceVerdict.HEALTHY, id="just-under-15s"),
        pytest.param(15_000, InstanceVerdict.UNHEALTHY, id="at-15s"),
        pytest.param(29_999, InstanceVerdict.UNHEALTHY, id="just-under-30s"),
        pytest.param(30_000, InstanceVerdict.REMOVE, id="at-30s"),
        pytest.param(-5, InstanceVerdict.HEALTHY, id="beat-from-the-future"),
    ],
)
def test_policy_verdict(silent_ms: int, expected: InstanceVerdict) -> None:
    assert BeatPolicy().verdict(now_ms=100_000, last_beat_ms=100_000 - silent_ms) == expected


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
