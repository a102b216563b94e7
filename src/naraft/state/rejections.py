"""Entries that committed but must not change the state: their result and their record.

A committed entry that cannot be applied (it does not decode, applying it fails, or it
would push the state past the quota) changes nothing but this record, the same on every
replica: the count of such entries by reason and the last one, kept as one datum under
`REJECTIONS_KEY`. So it survives restarts, travels with digest sync and snapshots, and is
covered by the state checksum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.state.datums import DatumTable

REJECTIONS_KEY: Final = "naraft.meta.rejected-entries"
MAX_DETAIL_CHARS: Final = 200


class RejectionKind(enum.StrEnum):
    FAULT = "fault"  # undecodable, or applying it raised: a bug or an entry of another version
    QUOTA = "quota"  # it would have pushed the state past the quota


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRejected:
    """The apply result of an entry that changed nothing (but the rejection record)."""

    index: int
    kind: RejectionKind
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectionRecord:
    faults: int = 0
    quota: int = 0
    last_index: int = 0
    last_kind: str = ""
    last_detail: str = ""

    @property
    def total(self) -> int:
        return self.faults + self.quota

    def view(self) -> dict[str, object]:
        return {
            "total": self.total,
            "fault": self.faults,
            "quota": self.quota,
            "lastIndex": self.last_index or None,
            "lastReason": self.last_kind or None,
            "lastDetail": self.last_detail or None,
        }


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    return value if type(value) is int and 0 <= value < 1 << 62 else 0


def read_record(datums: DatumTable) -> RejectionRecord:
    """The record in `datums` (zeros when absent; a damaged one reads as zeros too)."""
    datum = datums.get(REJECTIONS_KEY)
    if datum is None:
        return RejectionRecord()
    try:
        data: Any = orjson.loads(datum.value)
    except orjson.JSONDecodeError:
        return RejectionRecord()
    if not isinstance(data, dict):
        return RejectionRecord()
    kind, detail = data.get("lastKind"), data.get("lastDetail")
    return RejectionRecord(
        faults=_count(data, "fault"),
        quota=_count(data, "quota"),
        last_index=_count(data, "lastIndex"),
        last_kind=kind if isinstance(kind, str) else "",
        last_detail=detail if isinstance(detail, str) else "",
    )


def record_rejection(datums: DatumTable, rejected: EntryRejected) -> None:
    """Count `rejected` in the record, written at its index."""
    old = read_record(datums)
    detail = rejected.detail[:MAX_DETAIL_CHARS]
    body = {
        "fault": old.faults + (rejected.kind is RejectionKind.FAULT),
        "quota": old.quota + (rejected.kind is RejectionKind.QUOTA),
        "lastIndex": rejected.index,
        "lastKind": rejected.kind.value,
        "lastDetail": detail.encode("utf-8", "replace").decode("utf-8"),
    }
    datums.put(REJECTIONS_KEY, orjson.dumps(body), rejected.index)
