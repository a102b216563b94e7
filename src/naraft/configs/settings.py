"""The config service's settings (one group of the node's settings tree)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DAY_MS: Final = 86_400_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigSettings:
    """Limits of the config API and the history retention.

    `max_content_bytes`: a config's content (UTF-8 bytes); Nacos's default is 10 MiB.
    `history_days`: history records older than this are pruned (Nacos: 30 days).
    `max_held_polls`: long polls one node holds at once; more are answered 503.
    `max_poll_keys`: configs one poll may watch (the Java client sends at most 3000 a poll).
    """

    max_content_bytes: int = 10 * 1024 * 1024
    history_days: int = 30
    max_held_polls: int = 20_000
    max_poll_keys: int = 3000

    @property
    def retention_ms(self) -> int:
        return self.history_days * DAY_MS

    @property
    def max_body_bytes(self) -> int:
        """A config write's body: the content percent-encoded (3 bytes a byte at worst)
        plus the other parameters."""
        return 3 * self.max_content_bytes + 64 * 1024
