"""The replicated state machine of a node: committed entries -> datums.

It dispatches each entry to the key/value applier or the naming domain's, by the op
its payload names. Deterministic: no clock, no randomness; times arrive in commands,
stamped by the leader. An empty payload is the leader's no-op.

Apply is total. An entry either takes effect as a whole or changes nothing but the
rejection record (`naraft.state.rejections`): one that does not decode, whose apply raises
(a bug, or an entry an older build wrote), or that would push the state past the quota is
rolled back on the table's undo journal and answered with `EntryRejected`, identically on
every replica. Nothing an entry holds can stop the node.

The quota (`quota_bytes`) bounds the state's size as `DatumTable.size_bytes` counts it. It is
checked here, at apply, so every replica with the same quota decides the same: an entry
that grows the state past it is rejected; one that shrinks it (a delete) always applies.
Within `alarm_margin` of the quota the alarm is up: writes are refused before they are
proposed, reads and deletes go on, and it clears by itself once deletes free the space.
"""

from __future__ import annotations

import logging
from typing import Final

from naraft.naming.codec import decode_command
from naraft.naming.errors import CommandDecodeError
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumChanges, DatumTable
from naraft.state.kv import KvCommandError, apply_kv, decode_kv, is_kv_command
from naraft.state.rejections import (
    EntryRejected,
    RejectionKind,
    RejectionRecord,
    read_record,
    record_rejection,
)

logger = logging.getLogger(__name__)

MAX_ALARM_MARGIN_BYTES: Final = 1 << 20


def alarm_margin(quota_bytes: int) -> int:
    """How far below the quota the alarm goes up: 1 % of it, at most 1 MiB."""
    return min(quota_bytes // 100, MAX_ALARM_MARGIN_BYTES)


class NodeStateMachine:
    """Applies entries to one DatumTable shared by the kv view and the naming state."""

    def __init__(
        self, datums: DatumTable, naming: NamingState, *, quota_bytes: int | None = None
    ) -> None:
        self._datums = datums
        self._naming = naming
        self._quota = quota_bytes if quota_bytes else None

    @property
    def datums(self) -> DatumTable:
        return self._datums

    @property
    def naming(self) -> NamingState:
        return self._naming

    @property
    def quota_bytes(self) -> int | None:
        return self._quota

    def apply(self, entry: Entry) -> object:
        """Apply `entry`; never raises (see the module docstring)."""
        payload = entry.command
        if not payload:
            return None
        datums = self._datums
        size_before = datums.size_bytes
        datums.begin()
        try:
            result = self._dispatch(payload, entry.index)
        except Exception as error:  # total: whatever it was, this entry changes nothing
            datums.rollback()
            logger.debug("entry %d: apply failed", entry.index, exc_info=True)
            return self._reject(entry.index, RejectionKind.FAULT, _describe(error))
        size = datums.size_bytes
        if self._quota is not None and size > size_before and size > self._quota:
            datums.rollback()
            detail = f"the state would grow to {size} bytes, past the quota of {self._quota} bytes"
            return self._reject(entry.index, RejectionKind.QUOTA, detail)
        datums.commit()
        return result

    def _dispatch(self, payload: bytes, index: int) -> object:
        if is_kv_command(payload):
            return apply_kv(self._datums, decode_kv(payload), index)
        return self._naming.apply(decode_command(payload), index)

    def _reject(self, index: int, kind: RejectionKind, detail: str) -> EntryRejected:
        rejected = EntryRejected(index=index, kind=kind, detail=detail)
        if kind is RejectionKind.FAULT:
            logger.error("entry %d rejected on apply, nothing changed: %s", index, detail)
        else:
            logger.warning("entry %d rejected on apply: %s", index, detail)
        try:
            record_rejection(self._datums, rejected)
        except Exception as error:  # the record is best effort; the entry is rejected anyway
            logger.error("entry %d: cannot record its rejection: %s", index, _describe(error))
        return rejected

    def drain_changes(self) -> DatumChanges:
        return self._datums.drain_changes()

    # ---------------------------------------------------------- quota and record

    def size_bytes(self) -> int:
        return self._datums.size_bytes

    def rejections(self) -> RejectionRecord:
        return read_record(self._datums)

    def quota_alarm(self) -> bool:
        """True while the state is over the quota or within its margin of it."""
        if self._quota is None:
            return False
        return self._datums.size_bytes >= self._quota - alarm_margin(self._quota)

    def quota_refusal(self) -> str | None:
        """Why a write is refused before it is proposed (the alarm is up), or None."""
        if not self.quota_alarm():
            return None
        return (
            f"state quota exceeded: the replicated state holds {self._datums.size_bytes} "
            f"bytes of a {self._quota}-byte quota (--quota-bytes); only deletes and reads "
            "are served until space is freed"
        )

    def view(self) -> dict[str, object]:
        """The `/raft/state` fields of the state's size, quota and rejected entries."""
        return {
            "stateBytes": self._datums.size_bytes,
            "quotaBytes": self._quota,
            "quotaAlarm": self.quota_alarm(),
            "rejectedEntries": self.rejections().view(),
        }


def _describe(error: Exception) -> str:
    try:
        text = str(error)[:500]
    except Exception:  # an exception whose message itself fails
        text = "(no message)"
    if isinstance(error, CommandDecodeError | KvCommandError):
        return f"undecodable command: {text}"
    return f"{type(error).__name__}: {text}"
