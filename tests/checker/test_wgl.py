"""The WGL checker against hand-made histories, a brute-force oracle and simulated registers.

Hand-made histories are written as intervals: `op(process, f, key, start, end, value)`
records an invoke at `start` and a completion at `end` (None: never completed).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from naraft.checker import (
    CheckResult,
    JsonValue,
    Operation,
    OpFunction,
    OpRecord,
    RecordType,
    Verdict,
    check_history,
    check_key,
    pair_operations,
)

READ, WRITE, CAS, DELETE = OpFunction.READ, OpFunction.WRITE, OpFunction.CAS, OpFunction.DELETE
OK, FAIL, INFO = RecordType.OK, RecordType.FAIL, RecordType.INFO


def op(
    process: int,
    function: OpFunction,
    key: str,
    start: int,
    end: int | None,
    value: JsonValue = None,
    *,
    outcome: RecordType = OK,
    existed: bool | None = None,
) -> list[OpRecord]:
    """Records for one operation. Reads take `value` as what they saw; cas `[e, n]`."""
    records = [
        OpRecord(
            process=process,
            type=RecordType.INVOKE,
            function=function,
            key=key,
            value=value if function in (WRITE, CAS) else None,
            time=start,
        )
    ]
    if end is not None:
        records.append(
            OpRecord(
                process=process,
                type=outcome,
                function=function,
                key=key,
                value=value if function is READ and outcome is OK else None,
                time=end,
                existed=existed,
            )
        )
    return records


def history(*ops: list[OpRecord]) -> list[OpRecord]:
    """All records in time order. The sort is stable, so at equal times records keep the
    order of `ops`: list each process's operations in its own order and pairing works."""
    records = [record for records in ops for record in records]
    return sorted(records, key=lambda r: r.time)


def verdict_of(*ops: list[OpRecord]) -> Verdict:
    return check_history(history(*ops)).verdict


# --- hand-made histories ------------------------------------------------------------------


def test_a_sequential_history_is_linearizable() -> None:
    assert (
        verdict_of(
            op(1, READ, "x", 0, 1, None),
            op(1, WRITE, "x", 2, 3, "a"),
            op(2, READ, "x", 4, 5, "a"),
            op(2, CAS, "x", 6, 7, ["a", "b"]),
            op(1, READ, "x", 8, 9, "b"),
            op(1, DELETE, "x", 10, 11, existed=True),
            op(2, READ, "x", 12, 13, None),
        )
        is Verdict.LINEARIZABLE
    )


def test_an_empty_history_is_linearizable() -> None:
    result = check_history([])
    assert result.ok
    assert result.key_results == {}


@pytest.mark.parametrize("seen", ["a", "b"])
def test_concurrent_writes_with_a_read_seeing_either_value_are_linearizable(seen: str) -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 10, "a"),
            op(2, WRITE, "x", 1, 11, "b"),
            op(3, READ, "x", 12, 13, seen),
            op(3, READ, "x", 14, 15, seen),
        )
        is Verdict.LINEARIZABLE
    )


def test_a_read_concurrent_with_a_write_may_see_the_old_or_the_new_value() -> None:
    for seen in ("a", "b"):
        assert (
            verdict_of(
                op(1, WRITE, "x", 0, 1, "a"),
                op(1, WRITE, "x", 2, 10, "b"),
                op(2, READ, "x", 3, 4, seen),
            )
            is Verdict.LINEARIZABLE
        )


def test_a_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    result = check_history(
        history(
            op(1, WRITE, "x", 0, 1, "a"),
            op(1, WRITE, "x", 2, 3, "b"),
            op(2, READ, "x", 4, 5, "a"),
        )
    )
    key_result = result.key_results["x"]
    assert not result.ok
    assert key_result.verdict is Verdict.NOT_LINEARIZABLE
    assert key_result.stuck_operation is not None
    assert key_result.stuck_operation.function is READ
    assert key_result.stuck_operation.value == "a"
    assert [o.value for o in key_result.linearized_prefix] == ["a", "b"]
    assert key_result.value_after_prefix == "b"
    assert key_result.explanation is not None
    assert 'holds "b"' in key_result.explanation
    assert 'read "a"' in key_result.explanation


def test_a_lost_acknowledged_write_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b"),
            op(3, READ, "x", 4, 5, "a"),
            op(1, READ, "x", 6, 7, "a"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_write_acknowledged_on_a_fresh_key_that_reads_never_see_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, READ, "x", 2, 3, None),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_split_brain_reads_after_both_writes_complete_are_not_linearizable() -> None:
    # Two overlapping writes, then two overlapping reads that disagree: no single order
    # of the writes explains both, since nothing writes after the reads begin.
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 3, "a"),
            op(2, WRITE, "x", 1, 4, "b"),
            op(3, READ, "x", 5, 8, "a"),
            op(4, READ, "x", 6, 9, "b"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_read_going_back_in_time_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 3, "a"),
            op(2, WRITE, "x", 1, 4, "b"),
            op(3, READ, "x", 5, 6, "a"),
            op(3, READ, "x", 7, 8, "b"),
            op(3, READ, "x", 9, 10, "a"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_resurrected_delete_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(1, DELETE, "x", 2, 3),
            op(2, READ, "x", 4, 5, "a"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_an_info_write_that_later_shows_up_is_linearizable() -> None:
    # The info write may take effect long after the client gave up on it.
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b", outcome=INFO),
            op(3, READ, "x", 4, 5, "a"),
            op(3, READ, "x", 20, 21, "b"),
            op(1, READ, "x", 22, 23, "b"),
        )
        is Verdict.LINEARIZABLE
    )


def test_an_info_write_that_never_shows_up_is_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b", outcome=INFO),
            op(3, READ, "x", 4, 5, "a"),
            op(3, READ, "x", 20, 21, "a"),
        )
        is Verdict.LINEARIZABLE
    )


def test_an_info_write_cannot_take_effect_before_it_was_invoked() -> None:
    assert (
        verdict_of(
            op(1, READ, "x", 0, 1, "b"),
            op(2, WRITE, "x", 2, 3, "b", outcome=INFO),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_an_invoke_that_never_completes_counts_as_info() -> None:
    assert (
        verdict_of(
            op(2, WRITE, "x", 0, None, "b"),
            op(3, READ, "x", 4, 5, None),
            op(3, READ, "x", 6, 7, "b"),
        )
        is Verdict.LINEARIZABLE
    )


def test_an_info_write_takes_effect_at_most_once() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b", outcome=INFO),
            op(3, READ, "x", 4, 5, "b"),
            op(1, WRITE, "x", 6, 7, "c"),
            op(3, READ, "x", 8, 9, "b"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_failed_write_whose_value_is_read_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b", outcome=FAIL),
            op(3, READ, "x", 4, 5, "b"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_an_info_read_constrains_nothing() -> None:
    records = history(
        op(1, WRITE, "x", 0, 1, "a"),
        op(2, READ, "x", 2, 3, None, outcome=INFO),
    )
    result = check_history(records).key_results["x"]
    assert result.verdict is Verdict.LINEARIZABLE
    assert result.searched_count == 1


# --- cas ------------------------------------------------------------------------------------


def test_a_cas_whose_expected_value_matches_applies() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, 1),
            op(1, CAS, "x", 2, 3, [1, 2]),
            op(2, READ, "x", 4, 5, 2),
        )
        is Verdict.LINEARIZABLE
    )


def test_a_cas_acknowledged_against_a_different_value_is_not_linearizable() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, 1),
            op(1, CAS, "x", 2, 3, [5, 2]),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_failed_cas_did_not_happen() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, 1),
            op(1, CAS, "x", 2, 3, [1, 2], outcome=FAIL),
            op(2, READ, "x", 4, 5, 1),
        )
        is Verdict.LINEARIZABLE
    )
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, 1),
            op(1, CAS, "x", 2, 3, [1, 2], outcome=FAIL),
            op(2, READ, "x", 4, 5, 2),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_two_concurrent_cas_from_the_same_value_cannot_both_succeed() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, 0),
            op(1, CAS, "x", 2, 5, [0, 1]),
            op(2, CAS, "x", 3, 6, [0, 2]),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_chain_of_concurrent_cas_orders_itself() -> None:
    assert (
        verdict_of(
            op(1, CAS, "x", 0, 9, [2, 3]),
            op(2, CAS, "x", 1, 9, [1, 2]),
            op(3, CAS, "x", 2, 9, [None, 1]),
            op(4, READ, "x", 10, 11, 3),
        )
        is Verdict.LINEARIZABLE
    )


def test_a_cas_may_expect_the_key_absent() -> None:
    assert (
        verdict_of(
            op(1, CAS, "x", 0, 1, [None, "a"]),
            op(2, READ, "x", 2, 3, "a"),
        )
        is Verdict.LINEARIZABLE
    )


def test_an_info_cas_applies_only_if_its_expected_value_was_there() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, CAS, "x", 2, 3, ["z", "b"], outcome=INFO),
            op(3, READ, "x", 4, 5, "b"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_values_compare_as_json_whatever_their_key_order() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, {"a": 1, "b": [1, 2]}),
            op(2, CAS, "x", 2, 3, [{"b": [1, 2], "a": 1}, {"c": None}]),
            op(3, READ, "x", 4, 5, {"c": None}),
        )
        is Verdict.LINEARIZABLE
    )


# --- delete ---------------------------------------------------------------------------------


def test_a_delete_existed_flag_must_agree_with_the_register() -> None:
    assert verdict_of(op(1, DELETE, "x", 0, 1, existed=False)) is Verdict.LINEARIZABLE
    assert verdict_of(op(1, DELETE, "x", 0, 1, existed=True)) is Verdict.NOT_LINEARIZABLE
    assert (
        verdict_of(op(1, WRITE, "x", 0, 1, "a"), op(1, DELETE, "x", 2, 3, existed=True))
        is Verdict.LINEARIZABLE
    )


def test_writing_null_makes_the_key_absent() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(1, WRITE, "x", 2, 3, None),
            op(2, READ, "x", 4, 5, None),
        )
        is Verdict.LINEARIZABLE
    )


# --- keys, budget, inputs -------------------------------------------------------------------


def test_keys_are_checked_independently() -> None:
    result = check_history(
        history(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "y", 2, 3, "b"),
            op(3, READ, "x", 4, 5, "a"),
            op(3, READ, "y", 6, 7, "b"),
            op(1, WRITE, "z", 8, 9, "c"),
            op(2, READ, "z", 10, 11, None),
        )
    )
    assert not result.ok
    assert list(result.key_results) == ["x", "y", "z"]
    assert {key: r.verdict for key, r in result.key_results.items()} == {
        "x": Verdict.LINEARIZABLE,
        "y": Verdict.LINEARIZABLE,
        "z": Verdict.NOT_LINEARIZABLE,
    }
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.count(Verdict.LINEARIZABLE) == 2


def test_the_same_values_on_one_key_would_not_be_linearizable() -> None:
    # The per-key history above, squashed onto one key, is a violation: keys matter.
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a"),
            op(2, WRITE, "x", 2, 3, "b"),
            op(3, READ, "x", 4, 5, "a"),
        )
        is Verdict.NOT_LINEARIZABLE
    )


def test_a_read_many_is_checked_as_one_read_per_key() -> None:
    records = [
        *op(1, WRITE, "x", 0, 1, "a"),
        *op(1, WRITE, "y", 2, 3, "b"),
        OpRecord(
            process=2, type=RecordType.INVOKE, function=OpFunction.READ_MANY, key=None, time=4
        ),
        OpRecord(
            process=2,
            type=OK,
            function=OpFunction.READ_MANY,
            key=None,
            value={"x": "a", "y": "stale"},
            time=5,
        ),
    ]
    result = check_history(records)
    assert result.key_results["x"].verdict is Verdict.LINEARIZABLE
    assert result.key_results["y"].verdict is Verdict.NOT_LINEARIZABLE


def test_a_search_over_budget_answers_unknown_instead_of_running_on() -> None:
    # Eight concurrent writes, then a read of a value written only later: refuting it
    # means trying every order of the eight writes.
    ops = [op(p, WRITE, "x", p, 100, p) for p in range(8)]
    records = history(*ops, op(9, READ, "x", 101, 102, "late"), op(9, WRITE, "x", 103, 104, "late"))
    assert check_history(records).verdict is Verdict.NOT_LINEARIZABLE
    result = check_history(records, max_states=10)
    key_result = result.key_results["x"]
    assert not result.ok
    assert key_result.verdict is Verdict.UNKNOWN
    assert key_result.states_explored <= 10
    assert key_result.explanation is not None
    assert "unknown" in key_result.explanation


def test_a_budget_exhausted_with_existed_flags_retries_without_them() -> None:
    # The existed=true delete could observe any of the timed-out writes, so none can be
    # pruned and the search runs out; without the flag they all go and the bad read shows.
    ops = [op(p, WRITE, "x", p, p + 1, f"lost-{p}", outcome=INFO) for p in range(10)]
    records = history(
        *ops,
        op(10, DELETE, "x", 101, 102, existed=True),
        op(10, READ, "x", 103, 104, "late"),
        op(10, WRITE, "x", 105, 106, "late"),
    )
    key_result = check_history(records, max_states=300).key_results["x"]
    assert key_result.verdict is Verdict.NOT_LINEARIZABLE
    assert key_result.explanation is not None
    assert "existed flags ignored" in key_result.explanation
    assert key_result.stuck_operation is not None
    assert key_result.stuck_operation.value == "late"


def test_a_read_of_a_value_nobody_wrote_is_refuted_without_a_search() -> None:
    result = check_history(
        history(
            op(1, WRITE, "x", 0, 10, "a"),
            op(2, READ, "x", 1, 2, "phantom"),
            op(3, WRITE, "x", 3, 4, "b", outcome=FAIL),
            op(3, CAS, "x", 5, 6, ["b", "c"]),
        )
    ).key_results["x"]
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    assert result.states_explored == 0
    assert result.stuck_operation is not None
    assert result.stuck_operation.value == "phantom"
    assert result.explanation is not None
    assert "no operation on this key ever wrote" in result.explanation


def test_a_delete_that_saw_a_value_on_a_never_written_key_is_refuted() -> None:
    assert verdict_of(op(1, DELETE, "x", 0, 1, existed=True)) is Verdict.NOT_LINEARIZABLE


def test_check_key_refuses_operations_on_another_key() -> None:
    operations = pair_operations(history(op(1, WRITE, "x", 0, 1, "a")))
    with pytest.raises(ValueError, match="key 'y'"):
        check_key("y", operations)


def test_unobservable_info_writes_are_pruned_before_the_search() -> None:
    # Fifty timed-out writes on one hot key, none ever read: a blow-up without pruning.
    ops = [op(1, WRITE, "x", 0, 1, "first")]
    ops += [op(10 + p, WRITE, "x", 2 + p, 3 + p, f"lost-{p}", outcome=INFO) for p in range(50)]
    ops += [op(2, READ, "x", 60 + i * 2, 61 + i * 2, "first") for i in range(20)]
    result = check_history(history(*ops)).key_results["x"]
    assert result.verdict is Verdict.LINEARIZABLE
    assert result.operation_count == 71
    assert result.searched_count == 21


def test_an_info_cas_expecting_a_timed_out_write_keeps_that_write_in_the_search() -> None:
    assert (
        verdict_of(
            op(1, WRITE, "x", 0, 1, "a", outcome=INFO),
            op(2, CAS, "x", 2, 3, ["a", "b"], outcome=INFO),
            op(3, READ, "x", 4, 5, "b"),
        )
        is Verdict.LINEARIZABLE
    )


# --- a brute-force oracle on small random histories -----------------------------------------


def brute_force_is_linearizable(operations: Sequence[Operation]) -> bool:
    """Try every subset of the info ops and every order; the definition, slowly."""
    kept = [o for o in operations if o.outcome is not FAIL]
    kept = [o for o in kept if not (o.outcome is INFO and o.function is READ)]
    definite = [o for o in kept if o.outcome is OK]
    maybe = [o for o in kept if o.outcome is INFO]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations([*definite, *chosen]):
                if _respects_real_time(order) and _is_legal(order):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for i, earlier in enumerate(order):
        for later in order[i + 1 :]:
            if (
                later.outcome is OK
                and later.complete_time is not None
                and later.complete_time < earlier.invoke_time
            ):
                return False
    return True


def _is_legal(order: Sequence[Operation]) -> bool:
    state: JsonValue = None
    for o in order:
        if o.function is READ and o.value != state:
            return False
        if o.function is CAS and o.expected != state:
            return False
        if o.function is DELETE and o.existed is not None and o.existed != (state is not None):
            return False
        if o.function in (WRITE, CAS):
            state = o.value
        elif o.function is DELETE:
            state = None
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> list[OpRecord]:
    values = st.sampled_from([None, 1, 2])
    records: list[list[OpRecord]] = []
    for process in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, 6))
        end = start + draw(st.integers(0, 6))
        function = draw(st.sampled_from([READ, READ, WRITE, CAS, DELETE]))
        outcome = draw(st.sampled_from([OK, OK, OK, INFO, FAIL]))
        value: JsonValue = draw(values)
        if function is CAS:
            value = [draw(values), draw(values)]
        existed = draw(st.sampled_from([None, True, False])) if function is DELETE else None
        completes = draw(st.booleans()) or outcome is not INFO
        records.append(
            op(
                process,
                function,
                "k",
                start,
                end if completes else None,
                value,
                outcome=outcome,
                existed=existed,
            )
        )
    return history(*records)


@settings(max_examples=400, deadline=None)
@given(small_histories())
def test_the_checker_agrees_with_brute_force_on_small_histories(records: list[OpRecord]) -> None:
    expected = brute_force_is_linearizable(pair_operations(records))
    assert check_history(records).ok is expected


# --- simulated registers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Planned:
    process: int
    key: str
    function: OpFunction
    start: int
    end: int
    takes_effect_at: float | None  # None: the op never happens
    status: RecordType  # what the client will record: OK, FAIL or INFO


def simulated_history(
    rng: random.Random,
    *,
    op_count: int,
    processes: int,
    keys: Sequence[str],
    info_rate: float = 0.05,
    fail_rate: float = 0.05,
) -> list[OpRecord]:
    """A history of a real atomic register: each op takes effect at one instant in its
    interval (info ops: at any instant after invoke, or never), in that order."""
    clocks = [0] * processes
    plans: list[_Planned] = []
    for _ in range(op_count):
        process = rng.randrange(processes)
        start = clocks[process] + rng.randrange(4)
        end = start + rng.randrange(1, 12 * processes)
        clocks[process] = end
        function = rng.choice([READ, READ, WRITE, WRITE, CAS, DELETE])
        roll = rng.random()
        if roll < info_rate:
            status = INFO
            happens = rng.random() < 0.5 and function is not READ
            when = start + rng.random() * 40 * processes if happens else None
        elif roll < info_rate + fail_rate and function is not READ:
            status, when = FAIL, None
        else:
            status, when = OK, rng.uniform(start, end)
        plans.append(
            _Planned(
                process=process,
                key=rng.choice(keys),
                function=function,
                start=start,
                end=end,
                takes_effect_at=when,
                status=status,
            )
        )

    registers: dict[str, JsonValue] = {}
    written: dict[str, list[JsonValue]] = {key: [] for key in keys}
    outcomes: dict[int, tuple[RecordType, JsonValue, bool | None]] = {}
    timeline = sorted(
        (i for i, p in enumerate(plans) if p.takes_effect_at is not None),
        key=lambda i: plans[i].takes_effect_at or 0.0,
    )
    for i in timeline:
        plan = plans[i]
        current = registers.get(plan.key)
        match plan.function:
            case OpFunction.READ | OpFunction.READ_MANY:
                outcomes[i] = (plan.status, current, None)
            case OpFunction.WRITE:
                value = f"{plan.process}-{i}"
                registers[plan.key] = value
                written[plan.key].append(value)
                outcomes[i] = (plan.status, value, None)
            case OpFunction.CAS:
                choices = [current, *written[plan.key][-3:], None]
                expected = choices[0] if rng.random() < 0.6 else rng.choice(choices)
                new = f"{plan.process}-{i}"
                if expected == current:
                    registers[plan.key] = new
                    outcomes[i] = (plan.status, [expected, new], None)
                else:  # did not apply: the client sees a definite failure
                    outcomes[i] = (FAIL, [expected, new], None)
            case OpFunction.DELETE:
                existed = current is not None if rng.random() < 0.5 else None
                registers.pop(plan.key, None)
                outcomes[i] = (plan.status, None, existed)

    ops: list[list[OpRecord]] = []
    for i, plan in enumerate(plans):
        status, recorded, existed = outcomes.get(i, (plan.status, None, None))
        if plan.function is WRITE and i not in outcomes:
            recorded = f"{plan.process}-{i}"
        if plan.function is CAS and i not in outcomes:
            recorded = [f"never-{i}", f"{plan.process}-{i}"]
        if plan.function is READ and status is not OK:
            recorded = None
        ops.append(
            op(
                plan.process,
                plan.function,
                plan.key,
                plan.start,
                plan.end,
                recorded,
                outcome=status,
                existed=existed if status is OK else None,
            )
        )
    return history(*ops)


def with_one_read_corrupted(records: Sequence[OpRecord], which: int) -> list[OpRecord]:
    """The same history with the `which`-th ok read (modulo their count) seeing a value no
    one ever wrote."""
    reads = [i for i, r in enumerate(records) if r.function is READ and r.type is OK]
    target = reads[which % len(reads)]
    corrupted = list(records)
    corrupted[target] = replace(records[target], value="impossible")
    return corrupted


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    processes=st.integers(1, 8),
    key_count=st.integers(1, 3),
)
def test_a_200_op_history_of_a_real_register_is_always_linearizable(
    seed: int, processes: int, key_count: int
) -> None:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(key_count)]
    records = simulated_history(rng, op_count=200, processes=processes, keys=keys)
    result = check_history(records)
    assert result.ok, _explain(result)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    processes=st.integers(1, 8),
    key_count=st.integers(1, 3),
    which=st.integers(0, 10_000),
)
def test_the_same_history_with_one_read_made_impossible_is_not_linearizable(
    seed: int, processes: int, key_count: int, which: int
) -> None:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(key_count)]
    records = simulated_history(rng, op_count=200, processes=processes, keys=keys)
    assume(any(r.function is READ and r.type is OK for r in records))
    corrupted = with_one_read_corrupted(records, which)
    result = check_history(corrupted)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    bad = [r for r in result.key_results.values() if not r.is_linearizable]
    assert len(bad) == 1
    assert bad[0].explanation is not None


def with_one_read_seeing_the_future(records: Sequence[OpRecord], which: int) -> list[OpRecord]:
    """The same history with one ok read seeing a value first written by an operation
    invoked after the read returned (an unchanged copy if there is no such operation)."""
    operations = pair_operations(records)
    reads = [o for o in operations if o.function is READ and o.outcome is OK]
    read = reads[which % len(reads)]
    later = [
        o
        for o in operations
        if o.function in (WRITE, CAS)
        and o.outcome is not FAIL
        and o.key == read.key
        and read.complete_time is not None
        and o.invoke_time > read.complete_time
    ]
    if not later:
        return list(records)
    value = min(later, key=lambda o: o.invoke_time).value
    corrupted = list(records)
    for i, record in enumerate(records):
        if (
            record.process == read.process
            and record.type is OK
            and record.time == read.complete_time
        ):
            corrupted[i] = replace(record, value=value)
    return corrupted


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    processes=st.integers(1, 4),
    which=st.integers(0, 10_000),
)
def test_a_history_with_one_read_seeing_the_future_is_not_linearizable(
    seed: int, processes: int, which: int
) -> None:
    # Unlike a never-written value, this needs the full search to refute: values are
    # unique, so the read's only writer began after the read returned.
    rng = random.Random(seed)
    records = simulated_history(rng, op_count=200, processes=processes, keys=["k"])
    assume(any(r.function is READ and r.type is OK for r in records))
    corrupted = with_one_read_seeing_the_future(records, which)
    assume(corrupted != records)
    result = check_history(corrupted)
    assert result.verdict is Verdict.NOT_LINEARIZABLE
    explanation = result.key_results["k"].explanation
    assert explanation is not None
    assert "longest linearizable prefix" in explanation  # found by the search itself


def _explain(result: CheckResult) -> str:
    return "\n".join(
        f"{key}: {r.explanation}" for key, r in result.key_results.items() if r.explanation
    )


def test_ten_keys_of_a_thousand_ops_with_eight_clients_each_check_quickly(
    record_property: Callable[[str, object], None],
) -> None:
    # Eight clients per key, so every key sees up to eight overlapping operations. The
    # time is recorded (pytest --junitxml shows it), not asserted: CI machines vary.
    rng = random.Random(20240611)
    records: list[OpRecord] = []
    for k in range(10):
        key_history = simulated_history(rng, op_count=1000, processes=8, keys=[f"svc-{k}/i"])
        records += [replace(r, process=k * 8 + int(r.process)) for r in key_history]
    records.sort(key=lambda r: r.time)
    started = time.perf_counter()
    result = check_history(records)
    record_property("check_seconds", round(time.perf_counter() - started, 3))
    assert result.ok, _explain(result)
    assert [r.operation_count for r in result.key_results.values()] == [1000] * 10
