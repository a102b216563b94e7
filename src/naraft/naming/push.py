"""Push targets: clients that asked for UDP pushes on `/instance/list` (udpPort > 0).

Only recorded for now (`/service/subscribers` shows them); sending the pushes is a later
job. Like Nacos, a target that has not polled for `expire_after_ms` is forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence

from naraft.naming.keys import ServiceKey
from naraft.naming.model import PushTarget


class PushTargets:
    """Satisfies `naraft.naming.service.PushRegistry`; never pushes, so answers False."""

    def __init__(self, *, expire_after_ms: int = 10_000) -> None:
        self._expire_after_ms = expire_after_ms
        self._last_seen_ms: dict[ServiceKey, dict[PushTarget, int]] = {}

    def add_target(self, target: PushTarget, now_ms: int) -> bool:
        self._last_seen_ms.setdefault(target.service, {})[target] = now_ms
        return False  # no pushes are sent yet: clients must keep polling at cacheMillis

    def targets(self, service: ServiceKey, now_ms: int) -> Sequence[PushTarget]:
        seen = self._last_seen_ms.get(service, {})
        for target, last_seen_ms in list(seen.items()):
            if now_ms - last_seen_ms > self._expire_after_ms:
                del seen[target]
        return tuple(seen)
