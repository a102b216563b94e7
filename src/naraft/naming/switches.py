"""The cluster-wide switches (Nacos `SwitchDomain`): values, the entries `PUT` may change.

Only the fields naraft lets operators change are stored; the rest of Nacos's document is
constant and added when it is shown (`switches_view`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from naraft.errors import InvalidArgumentError
from naraft.naming.keys import SWITCH_DOMAIN_NAME
from naraft.naming.validate import JAVA_INT_MAX, JAVA_LONG_MAX


class ServerStatus(enum.StrEnum):
    UP = "UP"
    DOWN = "DOWN"
    WRITE_ONLY = "WRITE_ONLY"
    READ_ONLY = "READ_ONLY"
    STARTING = "STARTING"


@dataclass(frozen=True, slots=True, kw_only=True)
class Switches:
    """The replicated switch values, with Nacos 1.4.8's defaults (`SwitchDomain`)."""

    masters: tuple[str, ...] = ()
    default_push_cache_ms: int = 10_000
    client_beat_interval_ms: int = 5_000
    default_cache_ms: int = 3_000
    distro_threshold: float = 0.7
    health_check_enabled: bool = True
    auto_change_health_check_enabled: bool = True
    distro_enabled: bool = True
    enable_standalone: bool = True
    push_enabled: bool = True
    check_times: int = 3
    server_status_synchronization_period_ms: int = 2_000
    service_status_synchronization_period_ms: int = 5_000
    disable_add_ip: bool = False
    send_beat_only: bool = False
    light_beat_enabled: bool = True
    distro_server_expired_ms: int = 10_000
    overridden_server_status: ServerStatus | None = None
    default_instance_ephemeral: bool = True


DEFAULT_SWITCHES: Final = Switches()
"""Nacos's defaults, shared: a cluster whose switches were never set reads them on every
list and beat, and building the dataclass each time cost 2.5 µs (2 % of a local list)."""


def _parse_bool(entry: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidArgumentError("value", f"switch {entry} takes true or false")
    return lowered == "true"


MAX_VALUE_CHARS: Final = 4_096  # the raw text of any switch value
MAX_MASTERS: Final = 64
MAX_MASTER_CHARS: Final = 261  # host (253) : port


def _positive_int(entry: str, value: str, high: int) -> int:
    text = value.strip()
    try:
        number = int(text) if len(text) <= 32 else 0
    except ValueError:
        number = 0
    if not 0 < number <= high:
        raise InvalidArgumentError("value", f"switch {entry} takes an integer in 1..{high}")
    return number


def _parse_positive_long(entry: str, value: str) -> int:
    """Milliseconds Nacos keeps in a Java `long` (and Java clients read into one)."""
    return _positive_int(entry, value, JAVA_LONG_MAX)


def _parse_positive_java_int(entry: str, value: str) -> int:
    """A count Nacos keeps in a Java `int`."""
    return _positive_int(entry, value, JAVA_INT_MAX)


def _parse_ratio(entry: str, value: str) -> float:
    text = value.strip()
    try:
        number = float(text) if len(text) <= 64 else math.nan
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise InvalidArgumentError("value", f"switch {entry} takes a number in 0..1")
    return number


def _parse_status(entry: str, value: str) -> ServerStatus | None:
    text = value.strip().upper()
    if not text:
        return None
    try:
        return ServerStatus(text)
    except ValueError:
        allowed = ", ".join(s.value for s in ServerStatus)
        raise InvalidArgumentError("value", f"switch {entry} takes one of {allowed}") from None


def _parse_masters(entry: str, value: str) -> tuple[str, ...]:
    masters = tuple(m.strip() for m in value.split(",") if m.strip())
    if not masters:
        raise InvalidArgumentError("value", f"switch {entry} takes a comma-separated list")
    if len(masters) > MAX_MASTERS or any(len(m) > MAX_MASTER_CHARS for m in masters):
        raise InvalidArgumentError(
            "value",
            f"switch {entry} takes at most {MAX_MASTERS} addresses of {MAX_MASTER_CHARS} chars",
        )
    return masters


# entry name on the wire → (Switches attribute, parser); Nacos SwitchEntry names.
SWITCH_ENTRIES: Final[Mapping[str, tuple[str, Callable[[str, str], object]]]] = {
    "distroThreshold": ("distro_threshold", _parse_ratio),
    "clientBeatInterval": ("client_beat_interval_ms", _parse_positive_long),
    "pushCacheMillis": ("default_push_cache_ms", _parse_positive_long),
    "defaultCacheMillis": ("default_cache_ms", _parse_positive_long),
    "masters": ("masters", _parse_masters),
    "distro": ("distro_enabled", _parse_bool),
    "check": ("health_check_enabled", _parse_bool),
    "pushEnabled": ("push_enabled", _parse_bool),
    "serviceStatusSynchronizationPeriodMillis": (
        "service_status_synchronization_period_ms",
        _parse_positive_long,
    ),
    "serverStatusSynchronizationPeriodMillis": (
        "server_status_synchronization_period_ms",
        _parse_positive_long,
    ),
    "healthCheckTimes": ("check_times", _parse_positive_java_int),
    "disableAddIP": ("disable_add_ip", _parse_bool),
    "sendBeatOnly": ("send_beat_only", _parse_bool),
    "enableStandalone": ("enable_standalone", _parse_bool),
    "overriddenServerStatus": ("overridden_server_status", _parse_status),
    "defaultInstanceEphemeral": ("default_instance_ephemeral", _parse_bool),
    "distroServerExpiredMillis": ("distro_server_expired_ms", _parse_positive_long),
    "lightBeatEnabled": ("light_beat_enabled", _parse_bool),
    "autoChangeHealthCheckEnabled": ("auto_change_health_check_enabled", _parse_bool),
}
INTEGER_SWITCHES: Final[tuple[str, ...]] = tuple(
    entry
    for entry, (_attr, parse) in SWITCH_ENTRIES.items()
    if parse in (_parse_positive_long, _parse_positive_java_int)
)
"""The switches that take a positive integer (a Java long, or an int for healthCheckTimes)."""


def with_entry(switches: Switches, entry: str, value: str) -> Switches:
    """`switches` with one entry changed. Raises InvalidArgumentError for an unknown
    entry (field `entry`) or a value its entry does not take (field `value`)."""
    known = SWITCH_ENTRIES.get(entry)
    if known is None:
        raise InvalidArgumentError("entry", f"unknown switch entry {entry[:64]!r}")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidArgumentError(
            "value", f"switch {entry} takes at most {MAX_VALUE_CHARS} characters"
        )
    attribute, parse = known
    change: dict[str, Any] = {attribute: parse(entry, value)}
    return replace(switches, **change)


# Constant parts of Nacos's SwitchDomain document (not changeable in naraft).
_HEALTH_PARAMS: Final = {
    "httpHealthParams": {"max": 5000, "min": 500, "factor": 0.85},
    "tcpHealthParams": {"max": 5000, "min": 1000, "factor": 0.75},
    "mysqlHealthParams": {"max": 3000, "min": 2000, "factor": 0.65},
}


def switches_view(switches: Switches) -> dict[str, object]:
    """The `GET /operator/switches` document: Nacos's SwitchDomain field names and order."""
    return {
        "name": SWITCH_DOMAIN_NAME,
        "masters": list(switches.masters) or None,
        "adWeightMap": {},
        "defaultPushCacheMillis": switches.default_push_cache_ms,
        "clientBeatInterval": switches.client_beat_interval_ms,
        "defaultCacheMillis": switches.default_cache_ms,
        "distroThreshold": switches.distro_threshold,
        "healthCheckEnabled": switches.health_check_enabled,
        "autoChangeHealthCheckEnabled": switches.auto_change_health_check_enabled,
        "distroEnabled": switches.distro_enabled,
        "enableStandalone": switches.enable_standalone,
        "pushEnabled": switches.push_enabled,
        "checkTimes": switches.check_times,
        **_HEALTH_PARAMS,
        "incrementalList": [],
        "serverStatusSynchronizationPeriodMillis": switches.server_status_synchronization_period_ms,
        "serviceStatusSynchronizationPeriodMillis": (
            switches.service_status_synchronization_period_ms
        ),
        "disableAddIP": switches.disable_add_ip,
        "sendBeatOnly": switches.send_beat_only,
        "lightBeatEnabled": switches.light_beat_enabled,
        "limitedUrlMap": {},
        "distroServerExpiredMillis": switches.distro_server_expired_ms,
        "pushGoVersion": "0.1.0",
        "pushJavaVersion": "0.1.0",
        "pushPythonVersion": "0.4.3",
        "pushCVersion": "1.0.12",
        "pushCSharpVersion": "0.9.0",
        "enableAuthentication": False,
        "overriddenServerStatus": (
            None
            if switches.overridden_server_status is None
            else switches.overridden_server_status.value
        ),
        "defaultInstanceEphemeral": switches.default_instance_ephemeral,
        "healthCheckWhiteList": [],
    }


def switches_record(switches: Switches) -> dict[str, object]:
    """The stored datum value: the same document as the view (Nacos stores SwitchDomain)."""
    return switches_view(switches)


_RECORD_INT_LIMITS: Final = {"checkTimes": JAVA_INT_MAX}


def switches_from_record(record: Mapping[str, Any]) -> Switches:
    """Read a stored switch document; missing or ill-typed fields keep their defaults."""
    defaults = DEFAULT_SWITCHES
    values: dict[str, Any] = {}
    wire_to_attribute = {
        "defaultPushCacheMillis": "default_push_cache_ms",
        "clientBeatInterval": "client_beat_interval_ms",
        "defaultCacheMillis": "default_cache_ms",
        "distroThreshold": "distro_threshold",
        "healthCheckEnabled": "health_check_enabled",
        "autoChangeHealthCheckEnabled": "auto_change_health_check_enabled",
        "distroEnabled": "distro_enabled",
        "enableStandalone": "enable_standalone",
        "pushEnabled": "push_enabled",
        "checkTimes": "check_times",
        "serverStatusSynchronizationPeriodMillis": "server_status_synchronization_period_ms",
        "serviceStatusSynchronizationPeriodMillis": "service_status_synchronization_period_ms",
        "disableAddIP": "disable_add_ip",
        "sendBeatOnly": "send_beat_only",
        "lightBeatEnabled": "light_beat_enabled",
        "distroServerExpiredMillis": "distro_server_expired_ms",
        "defaultInstanceEphemeral": "default_instance_ephemeral",
    }
    for wire, attribute in wire_to_attribute.items():
        value = record.get(wire)
        default = getattr(defaults, attribute)
        if type(value) is int and not 0 < value <= _RECORD_INT_LIMITS.get(wire, JAVA_LONG_MAX):
            continue  # out of what the switch takes (an older build stored it): the default
        if type(value) is float and not math.isfinite(value):
            continue
        if type(value) is type(default):
            values[attribute] = value
        elif isinstance(default, float) and type(value) is int:
            values[attribute] = float(value)
    masters = record.get("masters")
    if isinstance(masters, list) and all(isinstance(m, str) for m in masters):
        values["masters"] = tuple(masters)
    status = record.get("overriddenServerStatus")
    if isinstance(status, str) and status in ServerStatus.__members__:
        values["overridden_server_status"] = ServerStatus(status)
    return replace(defaults, **values)
