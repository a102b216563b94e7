"""The replicated state machine of a node: committed entries -> datums.

It dispatches each entry to the key/value applier or the naming domain's, by the op
its payload names. Deterministic: no clock, no randomness; times arrive in commands,
stamped by the leader. An empty payload is the leader's no-op.
"""

from __future__ import annotations

import logging

from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumChanges, DatumTable
from naraft.state.kv import KvCommandError, apply_kv, decode_kv, is_kv_command

logger = logging.getLogger(__name__)


class NodeStateMachine:
    """Applies entries to one DatumTable shared by the kv view and the naming state."""

    def __init__(self, datums: DatumTable, naming: NamingState) -> None:
        self._datums = datums
        self._naming = naming

    @property
    def datums(self) -> DatumTable:
        return self._datums

    @property
    def naming(self) -> NamingState:
        return self._naming

    def apply(self, entry: Entry) -> object:
        payload = entry.command
        if not payload:
            return None
        if is_kv_command(payload):
            try:
                command = decode_kv(payload)
            except KvCommandError as error:
                # Every replica refuses it the same way; the proposer validated it first.
                logger.error("entry %d: undecodable kv command: %s", entry.index, error)
                return error
            return apply_kv(self._datums, command, entry.index)
        return self._naming.apply_entry(payload, entry.index)

    def drain_changes(self) -> DatumChanges:
        return self._datums.drain_changes()
