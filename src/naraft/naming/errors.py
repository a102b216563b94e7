"""Naming errors that are not client errors: undecodable commands and corrupt datums."""

from __future__ import annotations

from naraft.errors import NaraftError


class CommandDecodeError(NaraftError):
    """A log payload is not a naming command this version understands."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"undecodable naming command: {reason}")


class CorruptDatumError(NaraftError):
    """A stored datum under a naming key does not hold the shape that key requires."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"corrupt datum {key}: {reason}")
