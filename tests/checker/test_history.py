"""JSON-lines records: round trips, decoder errors, pairing and the recorder."""

from __future__ import annotations

import io
import itertools
import json
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from naraft.checker import (
    NEMESIS,
    HistoryRecord,
    HistoryRecorder,
    JsonValue,
    MalformedHistoryError,
    NemesisRecord,
    OpFunction,
    OpRecord,
    RecordType,
    Verdict,
    check_history,
    decode_line,
    encode_record,
    pair_operations,
    read_history,
    read_operations_file,
    write_history,
)

# --- round trips --------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values: st.SearchStrategy[JsonValue] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def op_records(draw: st.DrawFn) -> OpRecord:
    record_type = draw(st.sampled_from(RecordType))
    function = draw(st.sampled_from(OpFunction))
    value = draw(json_values)
    if function is OpFunction.CAS and record_type is RecordType.INVOKE:
        value = [draw(json_values), draw(json_values)]
    if function is OpFunction.READ_MANY and record_type is RecordType.OK:
        value = draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3))
    key_strategy: st.SearchStrategy[str | None] = st.text(max_size=10)
    if function is OpFunction.READ_MANY:
        key_strategy = st.none() | key_strategy
    return OpRecord(
        process=draw(st.integers(-5, 10**6) | st.text(max_size=6).filter(lambda p: p != NEMESIS)),
        type=record_type,
        function=function,
        key=draw(key_strategy),
        value=value,
        time=draw(st.integers(0, 2**63)),
        existed=draw(st.none() | st.booleans()),
    )


nemesis_records = st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(
    lambda fields: NemesisRecord({**fields, "process": NEMESIS})
)


@given(st.lists(op_records() | nemesis_records, max_size=20))
def test_records_survive_a_json_lines_round_trip(records: list[HistoryRecord]) -> None:
    sink = io.StringIO()
    write_history(records, sink)
    text = sink.getvalue()
    assert text.count("\n") == len(records)
    assert list(read_history(io.StringIO(text))) == records


def test_a_record_encodes_with_the_wire_field_names() -> None:
    record = OpRecord(
        process=2,
        type=RecordType.INVOKE,
        function=OpFunction.CAS,
        key="k",
        value=[1, 2],
        time=17,
    )
    assert json.loads(encode_record(record)) == {
        "process": 2,
        "type": "invoke",
        "f": "cas",
        "key": "k",
        "value": [1, 2],
        "time": 17,
    }


def test_a_line_from_another_tool_decodes_with_unknown_fields_ignored() -> None:
    line = (
        '{"process": 3, "type": "ok", "f": "delete", "key": "k", "time": 5, '
        '"existed": true, "node": "n2"}'
    )
    assert decode_line(line, 1) == OpRecord(
        process=3,
        type=RecordType.OK,
        function=OpFunction.DELETE,
        key="k",
        time=5,
        existed=True,
    )


# --- decoder errors -----------------------------------------------------------------------

GOOD: dict[str, object] = {
    "process": 1,
    "type": "invoke",
    "f": "write",
    "key": "k",
    "value": 1,
    "time": 5,
}


def _with(**changes: object) -> str:
    line = {**GOOD, **changes}
    return json.dumps({k: v for k, v in line.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        pytest.param("{not json", None, "not valid JSON", id="not-json"),
        pytest.param("[1, 2]", None, "JSON object", id="not-an-object"),
        pytest.param(_with(process=_DROP), "process", "required", id="no-process"),
        pytest.param(_with(process=True), "process", "integer or a string", id="bool-process"),
        pytest.param(_with(type=_DROP), "type", "required", id="no-type"),
        pytest.param(_with(type="begin"), "type", "one of invoke, ok, fail, info", id="bad-type"),
        pytest.param(_with(f="increment"), "f", "one of read, write", id="bad-f"),
        pytest.param(_with(key=_DROP), "key", "required", id="no-key"),
        pytest.param(_with(key=7), "key", "string", id="int-key"),
        pytest.param(_with(value=_DROP), "value", "write invoke needs", id="write-no-value"),
        pytest.param(_with(f="cas", value=[1]), "value", "[expected, new]", id="cas-one-value"),
        pytest.param(
            _with(type="ok", f="read", value=_DROP), "value", "null if absent", id="read-no-value"
        ),
        pytest.param(
            _with(type="ok", f="read_many", value=[1]), "value", "object", id="read-many-list"
        ),
        pytest.param(_with(time=_DROP), "time", "required", id="no-time"),
        pytest.param(_with(time="now"), "time", "integer", id="text-time"),
        pytest.param(_with(time=1.5), "time", "integer", id="float-time"),
        pytest.param(_with(existed="yes"), "existed", "true or false", id="text-existed"),
    ],
)
def test_a_malformed_line_is_reported_with_its_line_number_and_field(
    text: str, field: str | None, fragment: str
) -> None:
    with pytest.raises(MalformedHistoryError) as caught:
        decode_line(text, 7)
    assert caught.value.line_number == 7
    assert caught.value.field == field
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("line 7")
    if field is not None:
        assert f"field {field!r}" in str(caught.value)


def test_a_file_error_names_the_line_of_the_file_counting_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(_with() + "\n\n" + _with(type="done") + "\n")
    with pytest.raises(MalformedHistoryError, match="line 3, field 'type'"):
        read_operations_file(path)


def test_a_nemesis_line_is_kept_verbatim_and_ignored_by_the_checker() -> None:
    line = '{"process": "nemesis", "type": "info", "f": "partition", "value": ["n1"], "time": 3}'
    record = decode_line(line, 1)
    assert isinstance(record, NemesisRecord)
    assert record.fields["f"] == "partition"
    assert pair_operations([record]) == ()


# --- pairing ------------------------------------------------------------------------------


def _record(process: int, record_type: RecordType, time: int, **fields: object) -> OpRecord:
    base: dict[str, object] = {"function": OpFunction.WRITE, "key": "k", "value": None}
    base.update(fields)
    return OpRecord(process=process, type=record_type, time=time, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("records", "fragment"),
    [
        pytest.param([_record(1, RecordType.OK, 1)], "no pending invoke", id="orphan"),
        pytest.param(
            [_record(1, RecordType.INVOKE, 1), _record(1, RecordType.INVOKE, 2)],
            "invoked again",
            id="double-invoke",
        ),
        pytest.param(
            [
                _record(1, RecordType.INVOKE, 1),
                _record(1, RecordType.OK, 2, function=OpFunction.READ),
            ],
            "field 'f'",
            id="other-function",
        ),
        pytest.param(
            [_record(1, RecordType.INVOKE, 1), _record(1, RecordType.OK, 2, key="j")],
            "field 'key'",
            id="other-key",
        ),
        pytest.param(
            [_record(1, RecordType.INVOKE, 5), _record(1, RecordType.OK, 4)],
            "earlier than the invoke",
            id="time-reversed",
        ),
    ],
)
def test_records_that_do_not_pair_up_are_malformed(records: list[OpRecord], fragment: str) -> None:
    with pytest.raises(MalformedHistoryError, match="line 2|line 1") as caught:
        pair_operations(records)
    assert fragment in str(caught.value)


def test_pairing_matches_each_completion_to_its_process_invoke() -> None:
    records = [
        _record(1, RecordType.INVOKE, 1, value="a"),
        _record(2, RecordType.INVOKE, 2, function=OpFunction.READ),
        _record(1, RecordType.INFO, 3),
        _record(2, RecordType.OK, 4, function=OpFunction.READ, value="a"),
        _record(1, RecordType.INVOKE, 5, function=OpFunction.CAS, value=["a", "b"]),
        _record(3, RecordType.INVOKE, 6, function=OpFunction.DELETE),
        _record(3, RecordType.OK, 7, function=OpFunction.DELETE, existed=True),
    ]
    first, second, third, fourth = pair_operations(records)
    assert (first.function, first.outcome, first.value, first.complete_time) == (
        OpFunction.WRITE,
        RecordType.INFO,
        "a",
        3,
    )
    assert (second.function, second.value, second.line_number) == (OpFunction.READ, "a", 2)
    assert (third.expected, third.value, third.outcome, third.complete_time) == (
        "a",
        "b",
        RecordType.INFO,
        None,
    )
    assert (fourth.function, fourth.existed) == (OpFunction.DELETE, True)


# --- the recorder -------------------------------------------------------------------------


def test_recorder_times_strictly_increase_even_when_the_clock_stands_still() -> None:
    recorder = HistoryRecorder(clock=lambda: 42)
    recorder.invoke(1, OpFunction.WRITE, "k", "a")
    recorder.ok(1, OpFunction.WRITE, "k")
    recorder.nemesis({"f": "kill", "value": "n1"})
    recorder.invoke(1, OpFunction.READ, "k")
    times = [r.time if isinstance(r, OpRecord) else r.fields["time"] for r in recorder.records]
    assert times == [42, 43, 44, 45]


def test_concurrent_clients_record_a_history_in_time_order_that_checks() -> None:
    sink = io.StringIO()
    recorder = HistoryRecorder(sink)
    lock = threading.Lock()
    register: dict[str, JsonValue] = {}

    def client(process: int) -> None:
        for seq in range(200):
            key = f"k{seq % 3}"
            if seq % 2:
                value = f"{process}-{seq}"
                recorder.invoke(process, OpFunction.WRITE, key, value)
                with lock:
                    register[key] = value
                recorder.ok(process, OpFunction.WRITE, key)
            else:
                recorder.invoke(process, OpFunction.READ, key)
                with lock:
                    seen = register.get(key)
                recorder.ok(process, OpFunction.READ, key, seen)

    threads = [threading.Thread(target=client, args=(p,), name=f"client-{p}") for p in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = recorder.records
    assert len(records) == 8 * 200 * 2
    times = [r.time for r in records if isinstance(r, OpRecord)]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert read_history(io.StringIO(sink.getvalue())) == records
    result = check_history(records)
    assert result.verdict is Verdict.LINEARIZABLE


def test_recorder_fail_and_info_records_carry_no_value() -> None:
    recorder = HistoryRecorder(clock=iter(range(10)).__next__)
    failed = recorder.fail(1, OpFunction.DELETE, "k")
    unknown = recorder.info(2, OpFunction.CAS, "k")
    assert (failed.type, failed.value, failed.time) == (RecordType.FAIL, None, 0)
    assert (unknown.type, unknown.value, unknown.time) == (RecordType.INFO, None, 1)
