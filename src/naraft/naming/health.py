"""Health of ephemeral instances: a pure beat policy and the leader's last-beat table.

Nacos 1.x: an ephemeral instance is unhealthy 15 s after its last client beat and removed
30 s after it (docs/nacos-compat.md), with per-instance overrides in metadata. Both parts
here are pure: the caller passes the time. The leader's shell sweeps every few seconds
and proposes whatever commands come out; followers forward beats to the leader.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Protocol

from naraft.naming.commands import RemoveInstances, SetInstanceHealth
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import Instance
from naraft.naming.validate import JAVA_LONG_MAX

# Nacos PreservedMetadataKeys: per-instance overrides, in milliseconds.
HEART_BEAT_TIMEOUT_KEY: Final = "preserved.heart.beat.timeout"
IP_DELETE_TIMEOUT_KEY: Final = "preserved.ip.delete.timeout"
HEART_BEAT_INTERVAL_KEY: Final = "preserved.heart.beat.interval"


def _metadata_ms(metadata: Mapping[str, str], key: str) -> int | None:
    """A positive millisecond override that fits a Java long, or None (absent or not one)."""
    text = metadata.get(key)
    if text is None or len(text) > 32:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value <= JAVA_LONG_MAX else None  # Nacos's clients read a long


@dataclass(frozen=True, slots=True, kw_only=True)
class BeatPolicy:
    unhealthy_after_ms: int = 15_000  # Nacos instanceHeartBeatTimeOut
    remove_after_ms: int = 30_000  # Nacos ipDeleteTimeout

    def for_metadata(self, metadata: Mapping[str, str]) -> BeatPolicy:
        """This policy with the instance's `preserved.*` timeouts applied, if valid."""
        unhealthy = _metadata_ms(metadata, HEART_BEAT_TIMEOUT_KEY)
        remove = _metadata_ms(metadata, IP_DELETE_TIMEOUT_KEY)
        if unhealthy is None and remove is None:
            return self
        return replace(
            self,
            unhealthy_after_ms=self.unhealthy_after_ms if unhealthy is None else unhealthy,
            remove_after_ms=self.remove_after_ms if remove is None else remove,
        )


def beat_interval_ms(metadata: Mapping[str, str], default_ms: int) -> int:
    """The client beat interval to answer: metadata `preserved.heart.beat.interval` or default."""
    override = _metadata_ms(metadata, HEART_BEAT_INTERVAL_KEY)
    return default_ms if override is None else override


class EphemeralInstances(Protocol):
    """What the sweep reads: NamingState satisfies it."""

    def ephemeral_lists(self) -> Iterable[tuple[ServiceKey, object]]:
        """Each service that has ephemeral instances, with a stamp of them: the same stamp
        object (compared by identity) means the same instances."""
        ...

    def instances(
        self, service: ServiceKey, *, ephemeral: bool | None = None
    ) -> tuple[Instance, ...]: ...


class _LastBeat:
    """An instance's last beat (None: not seen since the last reset), one object per
    instance, shared by the table and the sweep's prepared rows: the sweep reads it
    without hashing the instance's key."""

    __slots__ = ("ms",)

    def __init__(self, ms: int | None) -> None:
        self.ms = ms


_Watched = tuple[InstanceKey, int, int, bool, _LastBeat]
"""One ephemeral instance as the sweep checks it: key, its policy's unhealthy-after and
remove-after (ms), healthy, last beat."""


SweepCommand = SetInstanceHealth | RemoveInstances


class BeatTable:
    """The leader's last-beat time per ephemeral instance. Leader-side memory only.

    An instance the table has not seen counts as beaten when the sweep first sees it: a
    new leader (after `reset_all`) and a fresh registration both get a full grace period.
    """

    def __init__(self, policy: BeatPolicy | None = None) -> None:
        self._policy = policy or BeatPolicy()
        self._last: dict[InstanceKey, _LastBeat] = {}
        self._beaten: set[InstanceKey] = set()  # beat by its client since the last reset
        # per service: its stored ephemeral list (by identity) and that list prepared
        self._watched: dict[ServiceKey, tuple[object, tuple[_Watched, ...]]] = {}

    @property
    def policy(self) -> BeatPolicy:
        return self._policy

    def beat(self, key: InstanceKey, now_ms: int) -> None:
        """Record a client beat for `key` at `now_ms`."""
        last = self._last.get(key)
        if last is None:
            self._last[key] = _LastBeat(now_ms)
        elif last.ms is None or last.ms < now_ms:
            last.ms = now_ms
        self._beaten.add(key)

    def last_beat_ms(self, key: InstanceKey) -> int | None:
        last = self._last.get(key)
        return None if last is None else last.ms

    def reset_all(self, now_ms: int) -> None:
        """Forget every beat: a new leader gives every instance a fresh grace period."""
        del now_ms  # the grace starts when the sweep first sees each instance
        for last in self._last.values():
            last.ms = None
        self._beaten.clear()

    def sweep(self, now_ms: int, state: EphemeralInstances) -> tuple[SweepCommand, ...]:
        """Commands that bring the state in line with the beats, at `now_ms`:
        a SetInstanceHealth batch (unhealthy after silence; healthy again after a beat)
        and a RemoveInstances batch, each only if non-empty. Forgets instances gone.

        Runs every second over every ephemeral instance, so each service's instances are
        prepared (key, timeouts, health) once per change of its stored list, not once per
        sweep: 50,000 instances in 1,000 services took 34 ms a sweep instead of 259. The
        rows carry the timeouts, so each check is two comparisons, not a method call and an
        enum match: 4-6 ms instead of 22-27 (measured the same day)."""
        health: list[tuple[InstanceKey, bool]] = []
        remove: list[InstanceKey] = []
        table = self._last
        beaten = self._beaten
        watched: dict[ServiceKey, tuple[object, tuple[_Watched, ...]]] = {}
        visited = 0
        for service, stamp in state.ephemeral_lists():
            kept = self._watched.get(service)
            if kept is not None and kept[0] is stamp:
                rows = kept[1]
            else:
                rows = tuple(
                    (
                        key := i.key,
                        (policy := self._policy.for_metadata(i.metadata)).unhealthy_after_ms,
                        policy.remove_after_ms,
                        i.healthy,
                        table.get(key) or table.setdefault(key, _LastBeat(None)),
                    )
                    for i in state.instances(service, ephemeral=True)
                )
            watched[service] = (stamp, rows)
            visited += len(rows)
            # Silent for remove_after: removed; for unhealthy_after: unhealthy; less:
            # healthy. Plain comparisons, as this loop visits every instance every second.
            for key, unhealthy_after, remove_after, healthy, last in rows:
                if last.ms is None:  # first seen: a full grace period from now
                    last.ms = now_ms
                    continue
                silent_for = now_ms - last.ms
                if silent_for >= remove_after:
                    remove.append(key)
                elif silent_for >= unhealthy_after:
                    if healthy:
                        health.append((key, False))
                elif not healthy and key in beaten:
                    # Only a real beat revives an instance; the grace period does not.
                    health.append((key, True))
        self._watched = watched  # services gone are dropped with their rows
        if len(table) > visited:  # every instance visited is in the table: some are gone
            seen = {row[0] for _, rows in watched.values() for row in rows}
            for gone in table.keys() - seen:
                del table[gone]
                self._beaten.discard(gone)
        commands: list[SweepCommand] = []
        if health:
            commands.append(SetInstanceHealth(changes=tuple(health), stamped_at_ms=now_ms))
        if remove:
            commands.append(RemoveInstances(keys=tuple(remove), stamped_at_ms=now_ms))
        return tuple(commands)
