"""`PushSlots`: one push in flight per slot and at most one more owed, whatever the burst."""

from __future__ import annotations

import asyncio

import pytest

from naraft.grpc.connections import PushSlots


async def test_a_burst_during_a_push_costs_one_more_push_of_the_newest_state() -> None:
    state = {"a": 0}
    pushed: list[int] = []
    gate = asyncio.Event()

    async def send(slot: str) -> bool:
        await gate.wait()
        pushed.append(state[slot])
        return True

    slots = PushSlots[str](send, what="test")
    slots.request("a")
    await asyncio.sleep(0)  # the first push is on its way, waiting at the gate
    for value in range(1, 6):
        state["a"] = value
        slots.request("a")
    gate.set()
    await slots.settled()
    assert pushed == [5, 5]  # the first push sees the newest state too; one more was owed
    slots.request("a")
    await slots.settled()
    assert pushed == [5, 5, 5]


async def test_slots_push_independently() -> None:
    pushed: list[str] = []

    async def send(slot: str) -> bool:
        pushed.append(slot)
        return True

    slots = PushSlots[str](send, what="test")
    for slot in ("a", "b", "a"):
        slots.request(slot)
    await slots.settled()
    assert sorted(pushed) == ["a", "a", "b"]


async def test_a_slot_whose_send_says_stop_is_not_pushed_again() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def send(slot: str) -> bool:
        calls.append(slot)
        await gate.wait()
        return False  # the connection is gone

    slots = PushSlots[str](send, what="test")
    slots.request("gone")
    await asyncio.sleep(0)
    slots.request("gone")  # owed, but the connection went away meanwhile
    gate.set()
    await slots.settled()
    assert calls == ["gone"]


async def test_a_failing_send_is_logged_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def send(slot: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return True

    slots = PushSlots[str](send, what="test")
    slots.request("a")
    await slots.settled()
    assert "test push failed slot=a" in caplog.text
    slots.request("a")  # the slot is free again: a new change pushes
    await slots.settled()
    assert calls == 2
