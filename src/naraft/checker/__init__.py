"""A linearizability checker for key/value register histories (docs/histories.md).

Clients record JSON-lines histories with `HistoryRecorder`; `check_history` (or
`python -m naraft.checker FILE...`) decides, key by key, whether some order of the
operations consistent with their real-time intervals explains every result.

Runs offline, on recorded histories only: nothing in the server imports it.
"""

from __future__ import annotations

from naraft.checker.history import (
    NEMESIS,
    HistoryRecord,
    HistoryRecorder,
    JsonValue,
    MalformedHistoryError,
    NemesisRecord,
    Operation,
    OpFunction,
    OpRecord,
    RecordType,
    decode_line,
    encode_record,
    pair_operations,
    read_history,
    read_operations_file,
    write_history,
)
from naraft.checker.wgl import (
    DEFAULT_MAX_STATES,
    CheckResult,
    KeyResult,
    Verdict,
    check_history,
    check_key,
    check_operations,
)

__all__ = [
    "DEFAULT_MAX_STATES",
    "NEMESIS",
    "CheckResult",
    "HistoryRecord",
    "HistoryRecorder",
    "JsonValue",
    "KeyResult",
    "MalformedHistoryError",
    "NemesisRecord",
    "OpFunction",
    "OpRecord",
    "Operation",
    "RecordType",
    "Verdict",
    "check_history",
    "check_key",
    "check_operations",
    "decode_line",
    "encode_record",
    "pair_operations",
    "read_history",
    "read_operations_file",
    "write_history",
]
