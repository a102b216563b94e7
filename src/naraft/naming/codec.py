"""Naming commands ↔ log payload bytes: one JSON object with `op` and a format version `v`.

`{"op": "naming.register_instance", "v": 1, ...fields}`. Decoding checks every field's
type and raises `CommandDecodeError` for anything else, so garbage never reaches `apply`.
Bump `FORMAT_VERSION` (and keep decoding the old one) when a command's fields change.
A new op leaves the format as it is, but a build before it cannot decode it: the service
proposes it only through its `CommandGate` (`naraft.naming.service`), once every member can.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import orjson

from naraft.naming.commands import (
    Command,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    DeregisterInstance,
    MetadataAction,
    MetadataScope,
    MetadataTarget,
    PatchInstance,
    RegisterInstance,
    ReleaseOwner,
    RemoveInstances,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadata,
    UpdateNamespace,
    UpdateService,
    UpdateSwitches,
)
from naraft.naming.errors import CommandDecodeError
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import (
    CHECKER_FIELDS,
    MAX_OWNER_CHARS,
    Cluster,
    HealthCheckerType,
    Instance,
    Selector,
    SelectorType,
)
from naraft.naming.validate import (
    MAX_CHECKER_FIELD_CHARS,
    MAX_CLUSTER_NAME_CHARS,
    MAX_METADATA_BATCH,
    MAX_METADATA_ENTRIES,
)

FORMAT_VERSION: Final = 1
OP_PREFIX: Final = "naming."

_E = TypeVar("_E", bound=enum.StrEnum)


def _service(key: ServiceKey) -> dict[str, str]:
    return {"ns": key.namespace_id, "group": key.group_name, "name": key.service_name}


def _instance_key(key: InstanceKey) -> dict[str, object]:
    return {
        "service": _service(key.service),
        "ephemeral": key.ephemeral,
        "cluster": key.cluster_name,
        "ip": key.ip,
        "port": key.port,
    }


def _instance(instance: Instance) -> dict[str, object]:
    # `owner` only when set: a v1 registration encodes as it did before owners existed.
    owner = {"owner": instance.owner} if instance.owner else {}
    return {
        "service": _service(instance.service),
        "ip": instance.ip,
        "port": instance.port,
        "cluster": instance.cluster_name,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
        "metadata": dict(instance.metadata),
        **owner,
    }


def _target(target: MetadataTarget) -> dict[str, object]:
    return {
        "ephemeral": target.ephemeral,
        "cluster": target.cluster_name,
        "ip": target.ip,
        "port": target.port,
    }


def _selector(selector: Selector) -> dict[str, str]:
    return {"type": selector.type.value, "expression": selector.expression}


def _fields(command: Command) -> tuple[str, dict[str, object]]:
    """The op name and the fields of `command` (without op, v and the stamp)."""
    match command:
        case CreateNamespace() | UpdateNamespace():
            op = "create_namespace" if isinstance(command, CreateNamespace) else "update_namespace"
            return op, {
                "namespace_id": command.namespace_id,
                "show_name": command.show_name,
                "description": command.description,
            }
        case DeleteNamespace():
            return "delete_namespace", {"namespace_id": command.namespace_id}
        case CreateService() | UpdateService():
            op = "create_service" if isinstance(command, CreateService) else "update_service"
            return op, {
                "service": _service(command.service),
                "protect_threshold": command.protect_threshold,
                "metadata": dict(command.metadata),
                "selector": _selector(command.selector),
            }
        case DeleteService():
            return "delete_service", {"service": _service(command.service)}
        case RegisterInstance():
            return "register_instance", {"instance": _instance(command.instance)}
        case UpdateInstance():
            return "update_instance", {"instance": _instance(command.instance)}
        case PatchInstance():
            return "patch_instance", {
                "key": _instance_key(command.key),
                "weight": command.weight,
                "metadata": None if command.metadata is None else dict(command.metadata),
                "enabled": command.enabled,
                "healthy": command.healthy,
            }
        case DeregisterInstance():
            return "deregister_instance", {"key": _instance_key(command.key)}
        case SetInstanceHealth():
            return "set_instance_health", {
                "changes": [[_instance_key(k), healthy] for k, healthy in command.changes]
            }
        case RemoveInstances():
            return "remove_instances", {"keys": [_instance_key(k) for k in command.keys]}
        case ReleaseOwner():
            return "release_owner", {
                "owner": command.owner,
                "keys": [_instance_key(k) for k in command.keys],
            }
        case UpdateSwitches():
            return "update_switches", {"entry": command.entry, "value": command.value}
        case UpdateCluster():
            cluster = command.cluster
            return "update_cluster", {
                "service": _service(command.service),
                "cluster": {
                    "name": cluster.name,
                    "checker": cluster.health_checker_type.value,
                    "options": dict(cluster.checker_options),
                    "check_port": cluster.check_port,
                    "use_instance_port": cluster.use_instance_port,
                    "metadata": dict(cluster.metadata),
                },
            }
        case UpdateMetadata():
            return "update_metadata", {
                "service": _service(command.service),
                "action": command.action.value,
                "scope": command.scope.value,
                "targets": [_target(t) for t in command.targets],
                "metadata": dict(command.metadata),
            }


def encode_command(command: Command) -> bytes:
    op, fields = _fields(command)
    return orjson.dumps(
        {
            "op": OP_PREFIX + op,
            "v": FORMAT_VERSION,
            **fields,
            "stamped_at_ms": command.stamped_at_ms,
        }
    )


class _Reader:
    """Typed access to a decoded JSON object; every mismatch is a CommandDecodeError."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = data
        self._where = where

    def _get(self, name: str) -> object:
        if name not in self._data:
            raise CommandDecodeError(f"{self._where}.{name} missing")
        return self._data[name]

    def _bad(self, name: str, expected: str) -> CommandDecodeError:
        return CommandDecodeError(f"{self._where}.{name} is not {expected}")

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def integer(self, name: str) -> int:
        value = self._get(name)
        if type(value) is not int:
            raise self._bad(name, "an integer")
        return value

    def number(self, name: str) -> float:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(name, "a finite number")
        if not math.isfinite(value):
            raise self._bad(name, "a finite number")
        return float(value)

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def string_map(self, name: str) -> dict[str, str]:
        value = self._get(name)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(name, "an object of strings")
        return dict(value)

    def child(self, name: str) -> _Reader:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return _Reader(value, f"{self._where}.{name}")

    def items(self, name: str) -> list[object]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "an array")
        return value

    def names(self) -> list[str]:
        return list(self._data)

    def is_null(self, name: str) -> bool:
        return self._get(name) is None

    def has(self, name: str) -> bool:
        return name in self._data


def _read_service(reader: _Reader) -> ServiceKey:
    return ServiceKey(
        namespace_id=reader.text("ns"),
        group_name=reader.text("group"),
        service_name=reader.text("name"),
    )


def _read_instance_key(reader: _Reader) -> InstanceKey:
    return InstanceKey(
        service=_read_service(reader.child("service")),
        ephemeral=reader.flag("ephemeral"),
        cluster_name=reader.text("cluster"),
        ip=reader.text("ip"),
        port=reader.integer("port"),
    )


def _read_instance(reader: _Reader) -> Instance:
    return Instance(
        service=_read_service(reader.child("service")),
        ip=reader.text("ip"),
        port=reader.integer("port"),
        cluster_name=reader.text("cluster"),
        weight=reader.number("weight"),
        healthy=reader.flag("healthy"),
        enabled=reader.flag("enabled"),
        ephemeral=reader.flag("ephemeral"),
        metadata=reader.string_map("metadata"),
        owner=_read_owner(reader, required=False),
    )


def _read_owner(reader: _Reader, *, required: bool) -> str:
    """A connection id: absent (not required) is "" (registered over v1); present, it must
    be 1..MAX_OWNER_CHARS characters."""
    if not required and not reader.has("owner"):
        return ""
    owner = reader.text("owner")
    if not 0 < len(owner) <= MAX_OWNER_CHARS:
        raise CommandDecodeError(f"owner is not 1..{MAX_OWNER_CHARS} characters")
    return owner


def _read_choice(reader: _Reader, name: str, kind: type[_E]) -> _E:
    value = reader.text(name)
    try:
        return kind(value)
    except ValueError:
        raise CommandDecodeError(f"{name} {value[:32]!r} is unknown") from None


def _read_target(reader: _Reader) -> MetadataTarget:
    return MetadataTarget(
        ephemeral=reader.flag("ephemeral"),
        cluster_name=reader.text("cluster"),
        ip=reader.text("ip"),
        port=reader.integer("port"),
    )


def _read_selector(reader: _Reader) -> Selector:
    try:
        selector_type = SelectorType(reader.text("type"))
    except ValueError:
        raise CommandDecodeError("selector.type is unknown") from None
    return Selector(selector_type, reader.text("expression"))


def _wrap_item(item: object, where: str) -> _Reader:
    if not isinstance(item, dict):
        raise CommandDecodeError(f"{where} item is not an object")
    return _Reader(item, where)


def _decode_namespace(r: _Reader, stamp: int, *, create: bool) -> Command:
    kind = CreateNamespace if create else UpdateNamespace
    return kind(
        namespace_id=r.text("namespace_id"),
        show_name=r.text("show_name"),
        description=r.text("description"),
        stamped_at_ms=stamp,
    )


def _decode_service_change(r: _Reader, stamp: int, *, create: bool) -> Command:
    kind = CreateService if create else UpdateService
    return kind(
        service=_read_service(r.child("service")),
        protect_threshold=r.number("protect_threshold"),
        metadata=r.string_map("metadata"),
        selector=_read_selector(r.child("selector")),
        stamped_at_ms=stamp,
    )


def _decode_patch(r: _Reader, stamp: int) -> Command:
    return PatchInstance(
        key=_read_instance_key(r.child("key")),
        weight=None if r.is_null("weight") else r.number("weight"),
        metadata=None if r.is_null("metadata") else r.string_map("metadata"),
        enabled=None if r.is_null("enabled") else r.flag("enabled"),
        healthy=None if r.is_null("healthy") else r.flag("healthy"),
        stamped_at_ms=stamp,
    )


def _decode_health(r: _Reader, stamp: int) -> Command:
    changes: list[tuple[InstanceKey, bool]] = []
    for item in r.items("changes"):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bool)):
            raise CommandDecodeError("changes item is not [key, healthy]")
        changes.append((_read_instance_key(_wrap_item(item[0], "changes")), item[1]))
    return SetInstanceHealth(changes=tuple(changes), stamped_at_ms=stamp)


def _decode_update_metadata(r: _Reader, stamp: int) -> Command:
    """Bounded as the API bounds it: at most MAX_METADATA_BATCH targets, and those only
    with scope `listed`; at most MAX_METADATA_ENTRIES metadata entries."""
    scope = _read_choice(r, "scope", MetadataScope)
    items = r.items("targets")
    if len(items) > MAX_METADATA_BATCH:
        raise CommandDecodeError(f"targets has more than {MAX_METADATA_BATCH} items")
    if items and scope is not MetadataScope.LISTED:
        raise CommandDecodeError(f"targets given with scope {scope.value}")
    metadata = r.string_map("metadata")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise CommandDecodeError(f"metadata has more than {MAX_METADATA_ENTRIES} entries")
    return UpdateMetadata(
        service=_read_service(r.child("service")),
        action=_read_choice(r, "action", MetadataAction),
        scope=scope,
        targets=tuple(_read_target(_wrap_item(i, "targets")) for i in items),
        metadata=metadata,
        stamped_at_ms=stamp,
    )


def _decode_update_cluster(r: _Reader, stamp: int) -> Command:
    """Bounded as the API bounds it: a cluster name, a port, the checker type's own fields
    (each of its type, strings of at most MAX_CHECKER_FIELD_CHARS), at most
    MAX_METADATA_ENTRIES metadata entries."""
    c = r.child("cluster")
    name = c.text("name")
    if not 0 < len(name) <= MAX_CLUSTER_NAME_CHARS:
        raise CommandDecodeError("cluster.name is empty or too long")
    kind = _read_choice(c, "checker", HealthCheckerType)
    allowed = CHECKER_FIELDS.get(kind, {})
    options = c.child("options")
    values: dict[str, str | int] = {}
    for field_name in options.names():
        if field_name not in allowed:
            raise CommandDecodeError(f"cluster.options.{field_name} is not a {kind} field")
        if isinstance(allowed[field_name], int):
            values[field_name] = options.integer(field_name)
        else:
            text = options.text(field_name)
            if len(text) > MAX_CHECKER_FIELD_CHARS:
                raise CommandDecodeError(f"cluster.options.{field_name} is too long")
            values[field_name] = text
    port = c.integer("check_port")
    if not 0 <= port <= 65535:
        raise CommandDecodeError("cluster.check_port is not a port")
    metadata = c.string_map("metadata")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise CommandDecodeError(f"metadata has more than {MAX_METADATA_ENTRIES} entries")
    cluster = Cluster(
        name=name,
        health_checker_type=kind,
        metadata=metadata,
        check_port=port,
        use_instance_port=c.flag("use_instance_port"),
        checker_options=values,
    )
    return UpdateCluster(
        service=_read_service(r.child("service")), cluster=cluster, stamped_at_ms=stamp
    )


def _read_keys(r: _Reader) -> tuple[InstanceKey, ...]:
    return tuple(_read_instance_key(_wrap_item(i, "keys")) for i in r.items("keys"))


_DECODERS: Final[Mapping[str, Callable[[_Reader, int], Command]]] = {
    "create_namespace": lambda r, s: _decode_namespace(r, s, create=True),
    "update_namespace": lambda r, s: _decode_namespace(r, s, create=False),
    "delete_namespace": lambda r, s: DeleteNamespace(
        namespace_id=r.text("namespace_id"), stamped_at_ms=s
    ),
    "create_service": lambda r, s: _decode_service_change(r, s, create=True),
    "update_service": lambda r, s: _decode_service_change(r, s, create=False),
    "delete_service": lambda r, s: DeleteService(
        service=_read_service(r.child("service")), stamped_at_ms=s
    ),
    "register_instance": lambda r, s: RegisterInstance(
        instance=_read_instance(r.child("instance")), stamped_at_ms=s
    ),
    "update_instance": lambda r, s: UpdateInstance(
        instance=_read_instance(r.child("instance")), stamped_at_ms=s
    ),
    "patch_instance": _decode_patch,
    "deregister_instance": lambda r, s: DeregisterInstance(
        key=_read_instance_key(r.child("key")), stamped_at_ms=s
    ),
    "set_instance_health": _decode_health,
    "remove_instances": lambda r, s: RemoveInstances(keys=_read_keys(r), stamped_at_ms=s),
    "release_owner": lambda r, s: ReleaseOwner(
        owner=_read_owner(r, required=True), keys=_read_keys(r), stamped_at_ms=s
    ),
    "update_switches": lambda r, s: UpdateSwitches(
        entry=r.text("entry"), value=r.text("value"), stamped_at_ms=s
    ),
    "update_metadata": _decode_update_metadata,
    "update_cluster": _decode_update_cluster,
}

OP_NAMES: Final = tuple(OP_PREFIX + op for op in _DECODERS)


def decode_command(payload: bytes) -> Command:
    """The command in `payload`. Raises CommandDecodeError for anything but a valid command."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise CommandDecodeError("not JSON") from None
    if not isinstance(data, dict):
        raise CommandDecodeError("not a JSON object")
    reader = _Reader(data, "command")
    op = reader.text("op")
    if not op.startswith(OP_PREFIX) or (decoder := _DECODERS.get(op[len(OP_PREFIX) :])) is None:
        raise CommandDecodeError(f"unknown op {op!r}")
    if reader.integer("v") != FORMAT_VERSION:
        raise CommandDecodeError(f"unsupported format version {data['v']!r}")
    return decoder(reader, reader.integer("stamped_at_ms"))
