"""Linearizability of key/value register histories: Wing & Gong's search with Lowe's cache.

The model (docs/histories.md): each key is an independent register holding a JSON value
or *absent* (None), initially absent.

* `read v` is legal iff the register holds v; it changes nothing.
* `write v` is always legal; the register becomes v (writing null makes it absent).
* `cas [e, n]` is legal iff the register holds e (e may be absent); it becomes n.
* `delete` makes the register absent; its optional `existed` observation must agree.

Keys are checked one at a time: by Herlihy and Wing's locality theorem a history over
independent objects is linearizable iff each per-object sub-history is.

Normalization: `fail` operations did not happen and are dropped; `info` reads constrain
nothing and are dropped; an `info` write, cas or delete (and an invoke never completed)
may take effect at any point after its invoke, or never, so it gets return time +inf.

Owns no IO; `naraft.checker.history` reads and pairs the records.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from naraft.checker.history import (
    HistoryRecord,
    JsonValue,
    Operation,
    OpFunction,
    RecordType,
    pair_operations,
)

DEFAULT_MAX_STATES: Final = 1_000_000
"""Per key: how many (linearized set, value) pairs the search may cache before it gives up."""

PREFIX_OPS_SHOWN: Final = 3
"""How many of the last linearized operations an explanation quotes."""

_ABSENT: Final = 0  # the interned id of "absent"; other values get ids from 1
_ANY: Final = -1  # need: legal in every state
_PRESENT: Final = -2  # need: legal in every state but absent
_KEEP: Final = -1  # result: the state is unchanged


class Verdict(enum.StrEnum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"  # the state budget ran out first


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyResult:
    """The verdict for one key.

    `operation_count` counts the operations given for the key; `searched_count` those left
    after dropping fails, info reads and unobservable info mutations. `states_explored` is
    the size of Lowe's cache. `explanation` is None iff the key is linearizable. When it
    is not, `linearized_prefix` is the deepest sequence of operations the search could
    linearize, `value_after_prefix` the register value after it, and `stuck_operation` the
    completed operation that could not be placed after it.
    """

    key: str
    verdict: Verdict
    operation_count: int
    searched_count: int
    states_explored: int
    explanation: str | None = None
    linearized_prefix: tuple[Operation, ...] = ()
    value_after_prefix: JsonValue = None
    stuck_operation: Operation | None = None

    @property
    def is_linearizable(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Per-key results, in key order. `ok` is True iff every key is linearizable."""

    ok: bool
    key_results: Mapping[str, KeyResult]

    @property
    def verdict(self) -> Verdict:
        """NOT_LINEARIZABLE if any key is; else UNKNOWN if any key is; else LINEARIZABLE."""
        verdicts = {result.verdict for result in self.key_results.values()}
        for verdict in (Verdict.NOT_LINEARIZABLE, Verdict.UNKNOWN):
            if verdict in verdicts:
                return verdict
        return Verdict.LINEARIZABLE

    def count(self, verdict: Verdict) -> int:
        """How many keys have `verdict`."""
        return sum(1 for result in self.key_results.values() if result.verdict is verdict)


def check_history(
    records: Iterable[HistoryRecord], *, max_states: int = DEFAULT_MAX_STATES
) -> CheckResult:
    """Pair `records` (see `pair_operations`) and check every key.

    Raises MalformedHistoryError if the records do not pair up.
    """
    return check_operations(pair_operations(records), max_states=max_states)


def check_operations(
    operations: Iterable[Operation], *, max_states: int = DEFAULT_MAX_STATES
) -> CheckResult:
    """Check every key of `operations` independently; `max_states` applies per key."""
    by_key: dict[str, list[Operation]] = {}
    for operation in operations:
        by_key.setdefault(operation.key, []).append(operation)
    results = {key: check_key(key, by_key[key], max_states=max_states) for key in sorted(by_key)}
    return CheckResult(
        ok=all(result.is_linearizable for result in results.values()), key_results=results
    )


def check_key(
    key: str, operations: Sequence[Operation], *, max_states: int = DEFAULT_MAX_STATES
) -> KeyResult:
    """Decide whether the operations on one register (all with this `key`) linearize.

    Terminates: the search caches at most `max_states` states and answers UNKNOWN beyond.
    If the budget runs out while delete `existed` flags are in play, it searches again
    with them ignored; that weaker model only ever reports real violations.
    """
    if max_states < 1:
        raise ValueError("max_states must be at least 1")
    if any(operation.key != key for operation in operations):
        raise ValueError(f"every operation must be on key {key!r}")
    values = _Interner()
    kept = [op for op in operations if _is_searched(op)]

    unpruned = [_SearchOp.of(op, values, use_existed=True) for op in kept]
    phantom = _first_phantom(unpruned)
    if phantom is not None:
        return KeyResult(
            key=key,
            verdict=Verdict.NOT_LINEARIZABLE,
            operation_count=len(operations),
            searched_count=len(unpruned),
            states_explored=0,
            explanation=(
                f"not linearizable: {phantom.describe()} needs a value that no operation on "
                f"this key ever wrote"
            ),
            stuck_operation=phantom,
        )
    ops = _prune(unpruned)
    outcome = _search(ops, max_states)
    note = ""
    if outcome.verdict is Verdict.UNKNOWN and any(op.existed is not None for op in kept):
        weaker = _prune([_SearchOp.of(op, values, use_existed=False) for op in kept])
        retry = _search(weaker, max_states)
        if retry.verdict is Verdict.NOT_LINEARIZABLE:
            outcome, ops = retry, weaker
            note = " (found with delete existed flags ignored)"
    return _result(key, operations, ops, outcome, values, max_states, note)


def _first_phantom(ops: Sequence[_SearchOp]) -> Operation | None:
    """The earliest completed op whose precondition no op (or the initial absent) can meet.

    Every completed op must be linearized, and one needing a value never written can be
    linearized nowhere, so its presence alone refutes the history without a search. This
    catches phantom and corrupted reads, which would otherwise cost the full search of
    everything concurrent with and before them.
    """
    produced = {_ABSENT} | {op.result for op in ops if op.result >= 0}
    something_present = len(produced) > 1
    phantoms = [
        op
        for op in ops
        if op.return_time is not None
        and (
            (op.need >= 0 and op.need not in produced)
            or (op.need == _PRESENT and not something_present)
        )
    ]
    if not phantoms:
        return None
    return min(phantoms, key=lambda op: op.call_time).operation


def _is_searched(operation: Operation) -> bool:
    if operation.outcome is RecordType.FAIL:
        return False  # it did not happen
    # An info read may or may not have happened and saw nothing we know of.
    return not (operation.outcome is RecordType.INFO and operation.function is OpFunction.READ)


class _Interner:
    """Maps JSON values to small ints by their canonical text; absent (None) is 0."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._values: list[JsonValue] = [None]  # self._values[id] is the value

    def id_of(self, value: JsonValue) -> int:
        if value is None:
            return _ABSENT
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        found = self._ids.get(text)
        if found is None:
            found = self._ids[text] = len(self._values)
            self._values.append(value)
        return found

    def value_of(self, value_id: int) -> JsonValue:
        return self._values[value_id]


@dataclass(frozen=True, slots=True, kw_only=True)
class _SearchOp:
    """An operation reduced to what the search needs: a precondition and a result.

    `need` is an interned value the register must hold, or _ANY, or _PRESENT. `result` is
    the interned value it leaves, or _KEEP. `return_time` None means +inf (info).
    """

    operation: Operation
    need: int
    result: int
    call_time: int
    return_time: int | None

    @staticmethod
    def of(operation: Operation, values: _Interner, *, use_existed: bool) -> _SearchOp:
        need, result = _need_and_result(operation, values, use_existed=use_existed)
        return _SearchOp(
            operation=operation,
            need=need,
            result=result,
            call_time=operation.invoke_time,
            return_time=None if operation.outcome is RecordType.INFO else operation.complete_time,
        )


def _need_and_result(
    operation: Operation, values: _Interner, *, use_existed: bool
) -> tuple[int, int]:
    match operation.function:
        case OpFunction.READ | OpFunction.READ_MANY:
            return values.id_of(operation.value), _KEEP
        case OpFunction.WRITE:
            return _ANY, values.id_of(operation.value)
        case OpFunction.CAS:
            return values.id_of(operation.expected), values.id_of(operation.value)
        case OpFunction.DELETE:
            if not use_existed or operation.existed is None:
                return _ANY, _ABSENT
            return (_PRESENT if operation.existed else _ABSENT), _ABSENT


def _prune(ops: list[_SearchOp]) -> list[_SearchOp]:
    """Drop info mutations whose result nothing could observe, to a fixpoint.

    Why this keeps the verdict: dropping an info op is always allowed (it may never have
    happened), so the smaller history linearizing implies the larger does. Conversely take
    any linearization containing such an op W leaving value v, and look at the ops after W
    up to the next op that overwrites the state. Each must be legal in state v, so none
    needs v exactly (nothing observes v), needs "present" (no `existed=true` delete when v
    is a value) or needs "absent" (nothing observes absent when v is absent). So only an
    op legal in every state can follow W, and each such op is a write or plain delete that
    overwrites v. Removing W therefore leaves every other op legal. Dropping an info cas
    removes its expectation, which may make another info write droppable: hence the loop.
    """
    kept = ops
    while True:
        observed = {op.need for op in kept if op.need >= 0}
        if any(op.need == _PRESENT for op in kept):  # an existed=true delete sees any value
            observed.update(op.result for op in kept if op.result not in (_KEEP, _ABSENT))
        pruned = [
            op
            for op in kept
            if op.return_time is not None or op.result == _KEEP or op.result in observed
        ]
        if len(pruned) == len(kept):
            return kept
        kept = pruned


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    verdict: Verdict
    states_explored: int
    prefix: tuple[int, ...] = ()  # indices into the searched ops, in linearization order
    state_after_prefix: int = _ABSENT
    stuck: int | None = None  # index of the op that could not be placed


class _Entry:
    """A call or return event in the doubly linked list the search lifts ops out of."""

    __slots__ = ("is_call", "match", "next", "op", "prev")

    def __init__(self, op: int, is_call: bool) -> None:
        self.op = op  # index into the searched ops; -1 for the sentinels
        self.is_call = is_call
        self.match = self  # on a call: its return entry
        self.prev = self
        self.next = self


def _build_events(ops: Sequence[_SearchOp]) -> tuple[_Entry, _Entry]:
    """Link call and return entries in time order between two sentinels: (head, tail).

    At equal times calls come first, so touching intervals count as concurrent
    (conservative). Info returns (+inf) come last.
    """
    keyed: list[tuple[int, int, int, int, _Entry]] = []
    for index, op in enumerate(ops):
        call, ret = _Entry(index, True), _Entry(index, False)
        call.match = ret
        keyed.append((0, op.call_time, 0, index, call))
        if op.return_time is None:
            keyed.append((1, 0, 1, index, ret))
        else:
            keyed.append((0, op.return_time, 1, index, ret))
    keyed.sort(key=lambda item: item[:4])
    head = previous = _Entry(-1, False)
    tail = _Entry(-1, False)
    for *_, entry in [*keyed, (0, 0, 0, 0, tail)]:
        previous.next = entry
        entry.prev = previous
        previous = entry
    return head, tail


_Path: TypeAlias = "tuple[int, _Path] | None"
"""The linearized op indices, newest first, as a cons list: O(1) to push, pop and keep."""


def _search(ops: Sequence[_SearchOp], max_states: int) -> _Outcome:
    """The WGL search (docs/histories.md#the-search, step 3), with Lowe's (set, state) cache."""
    head, tail = _build_events(ops)
    needs = [op.need for op in ops]
    results = [op.result for op in ops]
    is_info = [op.return_time is None for op in ops]

    state = _ABSENT
    linearized = 0  # bit i set iff ops[i] is linearized
    cache: set[tuple[int, int]] = set()
    stack: list[tuple[_Entry, int]] = []  # (call entry lifted, state before it)
    path: _Path = None
    deepest: _Outcome | None = None  # the first dead end at the greatest depth

    entry = head.next
    while entry is not tail:  # the tail is reached only once every entry is lifted
        index = entry.op
        if entry.is_call:
            need = needs[index]
            if need in (_ANY, state) or (need == _PRESENT and state != _ABSENT):
                result = results[index]
                after = state if result == _KEEP else result
                grown = linearized | (1 << index)
                if (grown, after) not in cache:
                    if len(cache) >= max_states:
                        return _Outcome(verdict=Verdict.UNKNOWN, states_explored=len(cache))
                    cache.add((grown, after))
                    stack.append((entry, state))
                    path = (index, path)
                    state, linearized = after, grown
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next  # try the next concurrent candidate
            continue
        # A return of an op not yet linearized: this path is a dead end.
        if is_info[index]:
            break  # only +inf returns remain, so every completed op is placed
        if deepest is None or len(stack) > len(deepest.prefix):
            deepest = _Outcome(
                verdict=Verdict.NOT_LINEARIZABLE,
                states_explored=0,
                prefix=_unwind(path),
                state_after_prefix=state,
                stuck=index,
            )
        if not stack:
            return replace(deepest, states_explored=len(cache))
        entry, state = stack.pop()
        assert path is not None  # it has one element per stack frame
        path = path[1]
        linearized ^= 1 << entry.op  # its bit is set: it was linearized
        _unlift(entry)
        entry = entry.next  # try the next alternative
    return _Outcome(verdict=Verdict.LINEARIZABLE, states_explored=len(cache))


def _unwind(path: _Path) -> tuple[int, ...]:
    indices: list[int] = []
    while path is not None:
        index, path = path
        indices.append(index)
    return tuple(reversed(indices))


def _lift(call: _Entry) -> None:
    """Unlink a call and its return (dancing links); `_unlift` restores them in reverse."""
    ret = call.match
    call.prev.next = call.next
    call.next.prev = call.prev
    ret.prev.next = ret.next
    ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    ret = call.match
    ret.prev.next = ret
    ret.next.prev = ret
    call.prev.next = call
    call.next.prev = call


def _result(
    key: str,
    operations: Sequence[Operation],
    ops: Sequence[_SearchOp],
    outcome: _Outcome,
    values: _Interner,
    max_states: int,
    note: str,
) -> KeyResult:
    match outcome.verdict:
        case Verdict.LINEARIZABLE:
            return KeyResult(
                key=key,
                verdict=outcome.verdict,
                operation_count=len(operations),
                searched_count=len(ops),
                states_explored=outcome.states_explored,
            )
        case Verdict.UNKNOWN:
            return KeyResult(
                key=key,
                verdict=outcome.verdict,
                operation_count=len(operations),
                searched_count=len(ops),
                states_explored=outcome.states_explored,
                explanation=f"unknown: gave up after caching {max_states} search states",
            )
        case Verdict.NOT_LINEARIZABLE:
            pass
    assert outcome.stuck is not None
    prefix = tuple(ops[index].operation for index in outcome.prefix)
    value = values.value_of(outcome.state_after_prefix)
    stuck = ops[outcome.stuck].operation
    shown = "; ".join(op.describe() for op in prefix[-PREFIX_OPS_SHOWN:])
    tail = f" (last: {shown})" if shown else ""
    holds = "is absent" if value is None else f"holds {json.dumps(value, sort_keys=True)}"
    explanation = (
        f"not linearizable{note}: the longest linearizable prefix has {len(prefix)} of "
        f"{len(ops)} ops{tail}, after which the register {holds}; "
        f"{stuck.describe()} cannot be placed after it"
    )
    return KeyResult(
        key=key,
        verdict=outcome.verdict,
        operation_count=len(operations),
        searched_count=len(ops),
        states_explored=outcome.states_explored,
        explanation=explanation,
        linearized_prefix=prefix,
        value_after_prefix=value,
        stuck_operation=stuck,
    )
