"""Read a Nacos 1.x naming data directory (the legacy Raft's `RaftStore` files).

Layout (Nacos `RaftStore`): `${nacos.home}/data/naming/meta.properties` (`term=<n>`) and
`data/naming/data/<namespaceId>/<key with ':' as '#'>`, one UTF-8 JSON `Datum`
(`{"key", "value", "timestamp"}`) per file; the switch datum sits at the top of `data/`.
The key is read from the content, never from the name. Parse rules as `readDatum`:

- files whose name does not start with `com.alibaba.nacos.naming` and blank files are skipped;
- service metadata: first with every backslash deleted (an old double-escaped format), else
  as is; a blank `groupName` becomes `DEFAULT_GROUP`, a `name` without `@@` gets
  `DEFAULT_GROUP@@`;
- persistent instance lists: `{"instanceList": [...]}`, or the legacy bare array (then the
  service gets `DEFAULT_GROUP@@`); every instance is imported as persistent;
- the switch datum and ephemeral lists are noted and skipped.

Unlike Nacos (where one bad file stops the server), an unreadable file is reported with its
name and reason and the rest is read. Pure: no network, no naraft state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

KEY_PREFIX: Final = "com.alibaba.nacos.naming"
SERVICE_META_PREFIX: Final = "com.alibaba.nacos.naming.domains.meta."
INSTANCE_LIST_PREFIX: Final = "com.alibaba.nacos.naming.iplist."
EPHEMERAL_PREFIX: Final = "com.alibaba.nacos.naming.iplist.ephemeral."
SWITCH_NAME: Final = "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
DEFAULT_GROUP: Final = "DEFAULT_GROUP"
DEFAULT_NAMESPACE: Final = "public"
GROUP_SEPARATOR: Final = "@@"
NAMESPACE_SEPARATOR: Final = "##"


class NacosFormatError(ValueError):
    """One datum file cannot be imported: `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class NacosService:
    namespace_id: str
    group_name: str
    service_name: str  # without the group
    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict)
    selector: Mapping[str, Any] | None = None
    source: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class NacosInstance:
    ip: str
    port: int
    weight: float = 1.0
    healthy: bool = True
    enabled: bool = True
    cluster_name: str = "DEFAULT"
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class NacosInstanceList:
    namespace_id: str
    group_name: str
    service_name: str
    instances: tuple[NacosInstance, ...]
    source: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreadableFile:
    path: Path
    reason: str


@dataclass(slots=True, kw_only=True)
class NacosData:
    """What a Nacos data directory holds, ready to propose."""

    root: Path  # the `data/naming/data` directory read
    term: int = 0
    services: list[NacosService] = field(default_factory=list)
    instance_lists: list[NacosInstanceList] = field(default_factory=list)
    unreadable: list[UnreadableFile] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def namespaces(self) -> list[str]:
        found = {s.namespace_id for s in self.services}
        found |= {lst.namespace_id for lst in self.instance_lists}
        return sorted(found)

    @property
    def instance_count(self) -> int:
        return sum(len(lst.instances) for lst in self.instance_lists)


def find_data_dir(path: Path) -> Path:
    """The `data/naming/data` directory under `path` (nacos home, data/naming, or itself)."""
    for candidate in (path / "data" / "naming" / "data", path / "naming" / "data", path / "data"):
        if candidate.is_dir():
            return candidate
    if path.is_dir():
        return path
    raise NacosFormatError(f"{path} is not a directory")


def read_term(data_dir: Path) -> int:
    """`term` from the `meta.properties` next to `data/` (0 when missing)."""
    properties = data_dir.parent / "meta.properties"
    try:
        text = properties.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith(("#", "!")) and name.strip() == "term":
            try:
                return int(value.strip())
            except ValueError:
                return 0
    return 0


def datum_files(data_dir: Path) -> Iterator[Path]:
    """Every candidate file: inside namespace directories, then at the top level."""
    entries = sorted(data_dir.iterdir())
    for entry in entries:
        if entry.is_dir():
            yield from sorted(p for p in entry.iterdir() if p.is_file())
    yield from (entry for entry in entries if entry.is_file())


def read_nacos_dir(path: Path) -> NacosData:
    """Read everything importable under `path`; never raises for a bad datum file."""
    data_dir = find_data_dir(path)
    result = NacosData(root=data_dir, term=read_term(data_dir))
    for file in datum_files(data_dir):
        if not file.name.startswith(KEY_PREFIX):
            result.skipped.append((file, "not a Nacos datum file"))
            continue
        try:
            read_datum_file(file, result)
        except NacosFormatError as error:
            result.unreadable.append(UnreadableFile(path=file, reason=error.reason))
        except UnicodeDecodeError as error:
            result.unreadable.append(UnreadableFile(path=file, reason=f"not UTF-8: {error}"))
        except OSError as error:
            result.unreadable.append(UnreadableFile(path=file, reason=f"cannot read: {error}"))
    return result


def read_datum_file(file: Path, into: NacosData) -> None:
    text = file.read_bytes().decode("utf-8", errors="strict") if file.stat().st_size else ""
    if not text.strip():
        into.skipped.append((file, "blank"))
        return
    if file.name.endswith(SWITCH_NAME):
        into.skipped.append((file, "the switch datum (naraft keeps its own switches)"))
        return
    if file.name.startswith(SERVICE_META_PREFIX):
        into.services.append(_service(file, text))
    elif file.name.startswith(EPHEMERAL_PREFIX):
        into.skipped.append((file, "ephemeral instances are not persisted data"))
    elif file.name.startswith(INSTANCE_LIST_PREFIX):
        into.instance_lists.append(_instance_list(file, text))
    else:
        into.skipped.append((file, "not a naming datum naraft imports"))


def _loads(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise NacosFormatError(f"not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise NacosFormatError("not a JSON object (a Datum)")
    return data


def _split_key(key: object, prefix: str) -> tuple[str, str]:
    """(namespace, grouped name) from a full key."""
    if not isinstance(key, str) or not key.startswith(prefix):
        raise NacosFormatError(f"key {key!r} does not start with {prefix}")
    rest = key[len(prefix) :]
    namespace, sep, grouped = rest.partition(NAMESPACE_SEPARATOR)
    if not sep or not grouped:
        raise NacosFormatError(f"key {key!r} has no namespace##service part")
    return namespace or DEFAULT_NAMESPACE, grouped


def _split_group(grouped: str, group: str | None = None) -> tuple[str, str]:
    if GROUP_SEPARATOR in grouped:
        found_group, _, name = grouped.partition(GROUP_SEPARATOR)
        return found_group or DEFAULT_GROUP, name
    return group or DEFAULT_GROUP, grouped


def _service(file: Path, text: str) -> NacosService:
    try:
        datum = _loads(text.replace("\\", ""))
        value = datum.get("value")
        if not isinstance(value, dict):
            raise NacosFormatError("value is not an object")
    except NacosFormatError:
        datum = _loads(text)
        value = datum.get("value")
    if not isinstance(value, dict):
        raise NacosFormatError("the service datum's value is not an object")
    namespace, grouped = _split_key(datum.get("key"), SERVICE_META_PREFIX)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        name = grouped
    group = value.get("groupName") if isinstance(value.get("groupName"), str) else None
    group_name, service_name = _split_group(name, group.strip() if group else None)
    if not service_name:
        raise NacosFormatError("the service has no name")
    threshold = value.get("protectThreshold", 0.0)
    selector = value.get("selector")
    return NacosService(
        namespace_id=str(value.get("namespaceId") or namespace),
        group_name=group_name,
        service_name=service_name,
        protect_threshold=float(threshold) if isinstance(threshold, int | float) else 0.0,
        metadata=_str_map(value.get("metadata")),
        selector=selector if isinstance(selector, dict) and selector.get("type") else None,
        source=file,
    )


def _instance_list(file: Path, text: str) -> NacosInstanceList:
    datum = _loads(text)
    namespace, grouped = _split_key(datum.get("key"), INSTANCE_LIST_PREFIX)
    value = datum.get("value")
    if isinstance(value, dict) and isinstance(value.get("instanceList", []), list):
        raw = value.get("instanceList", [])
    elif isinstance(value, list):  # legacy: a bare array, the key without DEFAULT_GROUP@@
        raw = value
    else:
        raise NacosFormatError("value is neither {instanceList: [...]} nor a legacy array")
    group_name, service_name = _split_group(grouped)
    return NacosInstanceList(
        namespace_id=namespace,
        group_name=group_name,
        service_name=service_name,
        instances=tuple(_instance(item, i) for i, item in enumerate(raw)),
        source=file,
    )


def _instance(item: object, position: int) -> NacosInstance:
    if not isinstance(item, dict):
        raise NacosFormatError(f"instance {position} is not an object")
    ip, port = item.get("ip"), item.get("port")
    if not isinstance(ip, str) or not ip or not isinstance(port, int):
        raise NacosFormatError(f"instance {position} has no ip/port")
    weight = item.get("weight", 1.0)
    return NacosInstance(
        ip=ip,
        port=port,
        weight=float(weight) if isinstance(weight, int | float) else 1.0,
        healthy=bool(item.get("healthy", True)),
        enabled=bool(item.get("enabled", True)),
        cluster_name=str(item.get("clusterName") or "DEFAULT"),
        metadata=_str_map(item.get("metadata")),
    )


def _str_map(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
