"""The change feed: who wants to hear that a service's data changed.

`NamingState.apply` publishes the services an entry changed, synchronously, right after
applying it. Listeners must be quick and must not raise: UDP push and watchers schedule
their own work. A listener that raises is logged and kept, never allowed to stop apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from naraft.naming.keys import ServiceKey

logger = logging.getLogger(__name__)

Listener = Callable[[ServiceKey], None]


class Subscription:
    """A handle to stop listening."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    def cancel(self) -> None:
        """Stop listening; calling it again does nothing."""
        if self._cancel is not None:
            self._cancel()
            self._cancel = None


class ChangeFeed:
    """Per-service listeners, plus listeners for every service."""

    def __init__(self) -> None:
        self._by_service: dict[ServiceKey, list[Listener]] = {}
        self._for_all: list[Listener] = []

    def subscribe(self, service: ServiceKey, listener: Listener) -> Subscription:
        """Call `listener(service)` after each applied entry that changed `service`."""
        listeners = self._by_service.setdefault(service, [])
        listeners.append(listener)

        def cancel() -> None:
            listeners.remove(listener)
            if not listeners and self._by_service.get(service) is listeners:
                del self._by_service[service]

        return Subscription(cancel)

    def subscribe_all(self, listener: Listener) -> Subscription:
        """Call `listener(service)` for every changed service."""
        self._for_all.append(listener)
        return Subscription(lambda: self._for_all.remove(listener))

    def listener_count(self, service: ServiceKey) -> int:
        return len(self._by_service.get(service, ()))

    def publish(self, services: Iterable[ServiceKey]) -> None:
        """Tell the listeners of each service, in (namespace, grouped name) order."""
        for service in sorted(services, key=lambda s: (s.namespace_id, s.grouped_name)):
            for listener in (*self._by_service.get(service, ()), *self._for_all):
                try:
                    listener(service)
                except Exception:
                    logger.exception("change listener failed service=%s", service)
