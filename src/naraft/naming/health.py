"""Health of ephemeral instances: a pure beat policy and the leader's last-beat table.

Nacos 1.x: an ephemeral instance is unhealthy 15 s after its last client beat and removed
30 s after it (docs/nacos-compat.md), with per-instance overrides in metadata. Both parts
here are pure: the caller passes the time. The leader's shell sweeps every few seconds
and proposes whatever commands come out; followers forward beats to the leader.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Protocol

from naraft.naming.commands import RemoveInstances, SetInstanceHealth
from naraft.naming.keys import InstanceKey
from naraft.naming.model import Instance
from naraft.naming.validate import JAVA_LONG_MAX

# Nacos PreservedMetadataKeys: per-instance overrides, in milliseconds.
HEART_BEAT_TIMEOUT_KEY: Final = "preserved.heart.beat.timeout"
IP_DELETE_TIMEOUT_KEY: Final = "preserved.ip.delete.timeout"
HEART_BEAT_INTERVAL_KEY: Final = "preserved.heart.beat.interval"


class InstanceVerdict(enum.Enum):
    HEALTHY = enum.auto()
    UNHEALTHY = enum.auto()
    REMOVE = enum.auto()


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

    def verdict(self, *, now_ms: int, last_beat_ms: int) -> InstanceVerdict:
        silent_for = now_ms - last_beat_ms
        if silent_for >= self.remove_after_ms:
            return InstanceVerdict.REMOVE
        if silent_for >= self.unhealthy_after_ms:
            return InstanceVerdict.UNHEALTHY
        return InstanceVerdict.HEALTHY

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

    def ephemeral_instances(self) -> Iterable[Instance]: ...


SweepCommand = SetInstanceHealth | RemoveInstances


class BeatTable:
    """The leader's last-beat time per ephemeral instance. Leader-side memory only.

    An instance the table has not seen counts as beaten when the sweep first sees it: a
    new leader (after `reset_all`) and a fresh registration both get a full grace period.
    """

    def __init__(self, policy: BeatPolicy | None = None) -> None:
        self._policy = policy or BeatPolicy()
        self._last_beat_ms: dict[InstanceKey, int] = {}
        self._beaten: set[InstanceKey] = set()  # beat by its client since the last reset

    @property
    def policy(self) -> BeatPolicy:
        return self._policy

    def beat(self, key: InstanceKey, now_ms: int) -> None:
        """Record a client beat for `key` at `now_ms`."""
        self._last_beat_ms[key] = max(now_ms, self._last_beat_ms.get(key, now_ms))
        self._beaten.add(key)

    def last_beat_ms(self, key: InstanceKey) -> int | None:
        return self._last_beat_ms.get(key)

    def reset_all(self, now_ms: int) -> None:
        """Forget every beat: a new leader gives every instance a fresh grace period."""
        del now_ms  # the grace starts when the sweep first sees each instance
        self._last_beat_ms.clear()
        self._beaten.clear()

    def sweep(self, now_ms: int, state: EphemeralInstances) -> tuple[SweepCommand, ...]:
        """Commands that bring the state in line with the beats, at `now_ms`:
        a SetInstanceHealth batch (unhealthy after silence; healthy again after a beat)
        and a RemoveInstances batch, each only if non-empty. Forgets instances gone."""
        health: list[tuple[InstanceKey, bool]] = []
        remove: list[InstanceKey] = []
        seen: set[InstanceKey] = set()
        for instance in state.ephemeral_instances():
            key = instance.key
            seen.add(key)
            last_beat_ms = self._last_beat_ms.setdefault(key, now_ms)
            verdict = self._policy.for_metadata(instance.metadata).verdict(
                now_ms=now_ms, last_beat_ms=last_beat_ms
            )
            match verdict:
                case InstanceVerdict.REMOVE:
                    remove.append(key)
                case InstanceVerdict.UNHEALTHY:
                    if instance.healthy:
                        health.append((key, False))
                case InstanceVerdict.HEALTHY:
                    # Only a real beat revives an instance; the grace period does not.
                    if not instance.healthy and key in self._beaten:
                        health.append((key, True))
        for gone in self._last_beat_ms.keys() - seen:
            del self._last_beat_ms[gone]
            self._beaten.discard(gone)
        commands: list[SweepCommand] = []
        if health:
            commands.append(SetInstanceHealth(changes=tuple(health), stamped_at_ms=now_ms))
        if remove:
            commands.append(RemoveInstances(keys=tuple(remove), stamped_at_ms=now_ms))
        return tuple(commands)
