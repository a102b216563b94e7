"""The election audit: one fsynced JSON line per role or leader change of this node.

Append-only `election-audit.jsonl` in the data directory, each line {"node", "term",
"role", "leader", "time_ms"}. Fault campaigns check Election Safety (one leader per term)
across the nodes' files; a node that cannot append logs a warning and carries on, since
the audit is evidence for the checker, not state the node needs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final, Protocol

import orjson

from naraft.raft import RoleChange

logger = logging.getLogger(__name__)

AUDIT_FILE: Final = "election-audit.jsonl"


class Clock(Protocol):
    def now_ms(self) -> int: ...


class ElectionAudit:
    """A `RoleChange` subscriber that appends each change to `data_dir / AUDIT_FILE`."""

    def __init__(self, node_id: str, data_dir: Path, clock: Clock) -> None:
        self._node_id = node_id
        self._path = data_dir / AUDIT_FILE
        self._clock = clock

    def on_role_change(self, change: RoleChange) -> None:
        line = orjson.dumps(
            {
                "node": self._node_id,
                "term": change.term,
                "role": change.role.value,
                "leader": change.leader,
                "time_ms": self._clock.now_ms(),
            }
        )
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as error:
            logger.warning("cannot append to the election audit log: %s", error)
