"""Client histories: the JSON-lines records, their reader and writer, and a recorder.

One line per event (docs/histories.md explains the model and the outcome types):

    {"process": 2, "type": "invoke", "f": "cas", "key": "k", "value": [1, 2], "time": 17}

* `process`: an int or a string naming the client; `"nemesis"` marks fault-injection
  lines, which are kept for humans and ignored by the checker.
* `type`: `invoke` (the request is sent), `ok` (it definitely took effect), `fail` (it
  definitely did not) or `info` (unknown: it may take effect later, or never).
* `f`: `read`, `write`, `cas`, `delete` or `read_many`.
* `key`: the register (a string); required on every line except `read_many` ones.
* `value`: write: the value written (on the invoke); cas: `[expected, new]` (on the
  invoke); read: the value observed (on the `ok`), `null` meaning absent; read_many: an
  object mapping each key read to its value (on the `ok`). Optional elsewhere.
* `time`: an int from a clock shared by all clients (`time.monotonic_ns()`).
* `existed`: optional bool on a delete's `ok`: whether the key was present.

Unknown fields are accepted and dropped. Owns no checking: `naraft.checker.wgl` does that.
"""

from __future__ import annotations

import enum
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final, TypeAlias, TypeVar

JsonValue: TypeAlias = (
    "None | bool | int | float | str | Sequence[JsonValue] | Mapping[str, JsonValue]"
)
"""A decoded JSON value. `None` (JSON null) is the absent register value."""

Process: TypeAlias = int | str

NEMESIS: Final = "nemesis"
"""The `process` of fault-injection lines, which the checker ignores."""


class RecordType(enum.StrEnum):
    """What a line says about its operation."""

    INVOKE = "invoke"
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class OpFunction(enum.StrEnum):
    """The register operation, the `f` field on the wire."""

    READ = "read"
    WRITE = "write"
    CAS = "cas"
    DELETE = "delete"
    READ_MANY = "read_many"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpRecord:
    """One client event. `function` is the wire's `f`; `value` is None when absent.

    Records whose value holds a JSON array or object are comparable but not hashable.
    """

    process: Process
    type: RecordType
    function: OpFunction
    key: str | None
    value: JsonValue = None
    time: int
    existed: bool | None = None


@dataclass(frozen=True, slots=True)
class NemesisRecord:
    """A fault-injection line, kept verbatim (all of its fields) and never checked."""

    fields: Mapping[str, JsonValue]


HistoryRecord: TypeAlias = OpRecord | NemesisRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """An invoke paired with its completion, for one key.

    `outcome` is OK, FAIL or INFO; an invoke that never completed is INFO with
    `complete_time` None. `value` is what a write or cas writes, or what a read observed;
    `expected` is a cas's expected value. `existed` is a delete's observation, if any.
    `line_number` is the 1-based line of the invoke, for diagnostics.
    """

    process: Process
    function: OpFunction
    key: str
    outcome: RecordType
    value: JsonValue = None
    expected: JsonValue = None
    existed: bool | None = None
    invoke_time: int
    complete_time: int | None
    line_number: int

    def describe(self) -> str:
        """A short human-readable form, e.g. `process 2 cas "a"->"b" ok (line 7)`."""
        return f"process {self.process} {self._action()} {self.outcome} (line {self.line_number})"

    def _action(self) -> str:
        match self.function:
            case OpFunction.READ | OpFunction.READ_MANY:
                return f"read {_show(self.value)}"
            case OpFunction.WRITE:
                return f"write {_show(self.value)}"
            case OpFunction.CAS:
                return f"cas {_show(self.expected)}->{_show(self.value)}"
            case OpFunction.DELETE:
                flag = "" if self.existed is None else f" existed={str(self.existed).lower()}"
                return f"delete{flag}"


def _show(value: JsonValue) -> str:
    return "absent" if value is None else json.dumps(value, sort_keys=True)


class MalformedHistoryError(ValueError):
    """A history line, or the pairing of lines, breaks the format.

    `line_number` is 1-based; `field` names the offending field, or is None when the line
    as a whole is wrong (not JSON, not an object, an unmatched completion).
    """

    def __init__(self, line_number: int, field: str | None, rule: str) -> None:
        where = f"line {line_number}" if field is None else f"line {line_number}, field {field!r}"
        super().__init__(f"{where}: {rule}")
        self.line_number = line_number
        self.field = field
        self.rule = rule


# --- encoding -----------------------------------------------------------------------------


def encode_record(record: HistoryRecord) -> str:
    """One JSON line for `record`, without the trailing newline. Keys are in a fixed order."""
    match record:
        case NemesisRecord(fields=fields):
            return json.dumps(dict(fields), allow_nan=False)
        case OpRecord():
            line: dict[str, object] = {
                "process": record.process,
                "type": record.type.value,
                "f": record.function.value,
            }
            if record.key is not None:
                line["key"] = record.key
            line["value"] = record.value
            line["time"] = record.time
            if record.existed is not None:
                line["existed"] = record.existed
            return json.dumps(line, allow_nan=False)


def write_history(records: Iterable[HistoryRecord], sink: IO[str]) -> None:
    """Write `records` to `sink`, one line each, in the given order."""
    for record in records:
        sink.write(encode_record(record) + "\n")


# --- decoding -----------------------------------------------------------------------------

_E = TypeVar("_E", bound=enum.StrEnum)

_TYPES: Final = ", ".join(t.value for t in RecordType)
_FUNCTIONS: Final = ", ".join(f.value for f in OpFunction)


def decode_line(text: str, line_number: int) -> HistoryRecord:
    """Parse one line. Raises MalformedHistoryError naming `line_number` and the field."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise MalformedHistoryError(line_number, None, f"not valid JSON ({error.msg})") from None
    if not isinstance(raw, dict):
        raise MalformedHistoryError(line_number, None, "must be a JSON object")
    fields: dict[str, JsonValue] = raw

    if "process" not in fields:
        raise MalformedHistoryError(line_number, "process", "is required")
    process = fields["process"]
    if isinstance(process, bool) or not isinstance(process, int | str):
        raise MalformedHistoryError(line_number, "process", "must be an integer or a string")
    if process == NEMESIS:
        return NemesisRecord(fields)

    record_type = _decode_enum(fields, "type", RecordType, _TYPES, line_number)
    function = _decode_enum(fields, "f", OpFunction, _FUNCTIONS, line_number)

    key = fields.get("key")
    if key is None and function is not OpFunction.READ_MANY:
        raise MalformedHistoryError(line_number, "key", "is required (a string)")
    if key is not None and not isinstance(key, str):
        raise MalformedHistoryError(line_number, "key", "must be a string")

    value = fields.get("value")
    _check_value(function, record_type, "value" in fields, value, line_number)

    timestamp = fields.get("time")
    if timestamp is None:
        raise MalformedHistoryError(line_number, "time", "is required (an integer)")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise MalformedHistoryError(line_number, "time", "must be an integer")

    existed = fields.get("existed")
    if existed is not None and not isinstance(existed, bool):
        raise MalformedHistoryError(line_number, "existed", "must be true or false")

    return OpRecord(
        process=process,
        type=record_type,
        function=function,
        key=key,
        value=value,
        time=timestamp,
        existed=existed,
    )


def _decode_enum(
    fields: Mapping[str, JsonValue], name: str, kind: type[_E], allowed: str, line_number: int
) -> _E:
    raw = fields.get(name)
    if raw is None:
        raise MalformedHistoryError(line_number, name, f"is required (one of {allowed})")
    if isinstance(raw, str):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise MalformedHistoryError(line_number, name, f"must be one of {allowed}, not {raw!r}")


def _check_value(
    function: OpFunction,
    record_type: RecordType,
    present: bool,
    value: JsonValue,
    line_number: int,
) -> None:
    if record_type is RecordType.INVOKE:
        if function is OpFunction.WRITE and not present:
            raise MalformedHistoryError(line_number, "value", "a write invoke needs the value")
        if function is OpFunction.CAS and not (isinstance(value, list) and len(value) == 2):
            raise MalformedHistoryError(line_number, "value", "a cas invoke needs [expected, new]")
    elif record_type is RecordType.OK:
        if function is OpFunction.READ and not present:
            raise MalformedHistoryError(
                line_number, "value", "a read ok needs the value observed (null if absent)"
            )
        if function is OpFunction.READ_MANY and not isinstance(value, dict):
            raise MalformedHistoryError(
                line_number, "value", "a read_many ok needs an object of key to value"
            )


def read_history(lines: Iterable[str]) -> tuple[HistoryRecord, ...]:
    """Decode JSON lines (a text file, or any iterable of lines). Blank lines are skipped.

    Raises MalformedHistoryError for the first bad line.
    """
    return tuple(record for _, record in _numbered_records(lines))


def _numbered_records(lines: Iterable[str]) -> Iterator[tuple[int, HistoryRecord]]:
    for line_number, text in enumerate(lines, start=1):
        if text.strip():
            yield line_number, decode_line(text, line_number)


def read_operations_file(path: str | os.PathLike[str]) -> tuple[Operation, ...]:
    """Read the history at `path` and pair it (see `pair_operations`).

    Errors name the line of the file. Raises MalformedHistoryError or OSError.
    """
    with open(path, encoding="utf-8") as source:
        return _pair(_numbered_records(source))


# --- pairing ------------------------------------------------------------------------------


def pair_operations(records: Iterable[HistoryRecord]) -> tuple[Operation, ...]:
    """Pair each invoke with the next completion from the same process, in record order.

    Nemesis records are skipped. A read_many becomes one read per key it returned. Returns
    the operations in invoke order. Raises MalformedHistoryError (naming the record's
    1-based position, which is its line when the records came from `write_history`) for a
    completion without an invoke, a second invoke before a completion, a completion whose
    `f` or `key` differs from its invoke's, or a completion earlier than its invoke.
    """
    return _pair(enumerate(records, start=1))


@dataclass(frozen=True, slots=True)
class _Pending:
    line_number: int
    record: OpRecord


def _pair(numbered: Iterable[tuple[int, HistoryRecord]]) -> tuple[Operation, ...]:
    pending: dict[Process, _Pending] = {}
    completed: dict[int, tuple[Operation, ...]] = {}  # invoke line -> its operations
    for line_number, record in numbered:
        if isinstance(record, NemesisRecord):
            continue
        if record.type is RecordType.INVOKE:
            if record.process in pending:
                earlier = pending[record.process].line_number
                raise MalformedHistoryError(
                    line_number,
                    "process",
                    f"process {record.process!r} invoked again before its invoke on line "
                    f"{earlier} completed",
                )
            pending[record.process] = _Pending(line_number, record)
            continue
        invoke = pending.pop(record.process, None)
        if invoke is None:
            raise MalformedHistoryError(
                line_number, None, f"a {record.type} with no pending invoke from this process"
            )
        _check_completion(invoke.record, record, line_number)
        completed[invoke.line_number] = _operations(invoke, record)
    for invoke in pending.values():
        completed[invoke.line_number] = _operations(invoke, None)
    return tuple(op for line in sorted(completed) for op in completed[line])


def _check_completion(invoke: OpRecord, completion: OpRecord, line_number: int) -> None:
    if completion.function is not invoke.function:
        raise MalformedHistoryError(
            line_number, "f", f"is {completion.function} but the invoke was {invoke.function}"
        )
    if invoke.function is not OpFunction.READ_MANY and completion.key != invoke.key:
        raise MalformedHistoryError(
            line_number, "key", f"is {completion.key!r} but the invoke was {invoke.key!r}"
        )
    if completion.time < invoke.time:
        raise MalformedHistoryError(
            line_number, "time", f"{completion.time} is earlier than the invoke's {invoke.time}"
        )


def _operations(invoke: _Pending, completion: OpRecord | None) -> tuple[Operation, ...]:
    call = invoke.record
    if call.function is OpFunction.READ_MANY:
        if completion is None or completion.type is not RecordType.OK:
            return ()  # a read that may not have happened constrains nothing
        assert isinstance(completion.value, Mapping)  # checked by decode_line
        return tuple(
            Operation(
                process=call.process,
                function=OpFunction.READ,
                key=key,
                outcome=completion.type,
                value=value,
                invoke_time=call.time,
                complete_time=completion.time,
                line_number=invoke.line_number,
            )
            for key, value in completion.value.items()
        )
    assert call.key is not None  # checked by decode_line
    expected, value = _arguments(call, completion)
    return (
        Operation(
            process=call.process,
            function=call.function,
            key=call.key,
            outcome=RecordType.INFO if completion is None else completion.type,
            value=value,
            expected=expected,
            existed=(
                completion.existed
                if completion is not None and call.function is OpFunction.DELETE
                else None
            ),
            invoke_time=call.time,
            complete_time=None if completion is None else completion.time,
            line_number=invoke.line_number,
        ),
    )


def _arguments(call: OpRecord, completion: OpRecord | None) -> tuple[JsonValue, JsonValue]:
    """(expected, value) of an operation: see `Operation`."""
    match call.function:
        case OpFunction.READ | OpFunction.READ_MANY:
            return None, (None if completion is None else completion.value)
        case OpFunction.WRITE:
            return None, call.value
        case OpFunction.CAS:
            assert isinstance(call.value, Sequence)  # checked by decode_line
            return call.value[0], call.value[1]
        case OpFunction.DELETE:
            return None, None


# --- recording ----------------------------------------------------------------------------


class HistoryRecorder:
    """Thread-safe append-only history for concurrent clients.

    Each record is stamped and appended under one lock, so record order equals time order
    and times strictly increase even if `clock` repeats a value. Records are kept in memory
    and, when a `sink` is given, written and flushed to it one line at a time. The caller
    owns the sink and closes it. `clock` returns integer time (default
    `time.monotonic_ns`, which is system-wide on Linux, so several processes may share it).
    """

    def __init__(
        self, sink: IO[str] | None = None, *, clock: Callable[[], int] = time.monotonic_ns
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._records: list[HistoryRecord] = []
        self._last_time: int | None = None  # the time of the newest record

    @property
    def records(self) -> tuple[HistoryRecord, ...]:
        """A snapshot of everything recorded so far, in order."""
        with self._lock:
            return tuple(self._records)

    def invoke(
        self, process: Process, function: OpFunction, key: str | None, value: JsonValue = None
    ) -> OpRecord:
        """Record that `process` sent a request. For cas, `value` is `[expected, new]`."""
        return self.record(process, RecordType.INVOKE, function, key, value)

    def ok(
        self,
        process: Process,
        function: OpFunction,
        key: str | None,
        value: JsonValue = None,
        *,
        existed: bool | None = None,
    ) -> OpRecord:
        """Record that the request definitely took effect (a read: with what it saw)."""
        return self.record(process, RecordType.OK, function, key, value, existed=existed)

    def fail(self, process: Process, function: OpFunction, key: str | None) -> OpRecord:
        """Record that the request definitely did not take effect."""
        return self.record(process, RecordType.FAIL, function, key)

    def info(self, process: Process, function: OpFunction, key: str | None) -> OpRecord:
        """Record that the outcome is unknown (timeout, reset after send, 5xx)."""
        return self.record(process, RecordType.INFO, function, key)

    def record(
        self,
        process: Process,
        record_type: RecordType,
        function: OpFunction,
        key: str | None,
        value: JsonValue = None,
        *,
        existed: bool | None = None,
    ) -> OpRecord:
        """Stamp and append one op record; returns it as stored."""
        with self._lock:
            record = OpRecord(
                process=process,
                type=record_type,
                function=function,
                key=key,
                value=value,
                time=self._next_time(),
                existed=existed,
            )
            self._append(record)
        return record

    def nemesis(self, fields: Mapping[str, JsonValue]) -> NemesisRecord:
        """Append a fault-injection note; `process` and `time` are filled in."""
        with self._lock:
            record = NemesisRecord({**fields, "process": NEMESIS, "time": self._next_time()})
            self._append(record)
        return record

    def _next_time(self) -> int:
        now = self._clock()
        if self._last_time is not None and now <= self._last_time:
            now = self._last_time + 1
        self._last_time = now
        return now

    def _append(self, record: HistoryRecord) -> None:
        self._records.append(record)
        if self._sink is not None:
            self._sink.write(encode_record(record) + "\n")
            self._sink.flush()
