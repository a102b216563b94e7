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
name and a one-line reason and the rest is read: bad JSON, a number with more digits than a
64-bit integer has, nesting deeper than Python's recursion limit, a value of the wrong type,
text that is not UTF-8 (or holds a lone surrogate), a file over the size cap (listed by its
size, never read), a symlink. Symlinks are followed only when they resolve inside the
directory they were found in (the data directory, or the `naming` directory for
`meta.properties`); one that leads out is listed as unreadable and never opened. Special
files (FIFOs, devices, sockets) are skipped unopened. Pure: no network, no naraft state.
"""

from __future__ import annotations

import json
import math
import os
import stat
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
DEFAULT_MAX_FILE_BYTES: Final = 16 * 1024 * 1024
"""The size cap per datum file: Nacos keeps one service's instance list per file, and 16 MiB
is tens of thousands of instances; `--max-file-mib` raises it."""
MAX_PROPERTIES_BYTES: Final = 64 * 1024
MAX_INTEGER_DIGITS: Final = 20  # a signed 64-bit integer has at most 19 digits and a sign
MAX_REASON_CHARS: Final = 200


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
    """The `data/naming/data` directory under `path` (nacos home, data/naming, or itself),
    resolved; a symlinked candidate that leads out of `path` is refused."""
    try:
        top = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise NacosFormatError(f"{path} cannot be read: {error}") from None
    for candidate in (top / "data" / "naming" / "data", top / "naming" / "data", top / "data"):
        if candidate.is_dir():
            resolved = candidate.resolve()
            if not resolved.is_relative_to(top):
                raise NacosFormatError(f"{candidate} is a symlink out of {path} (to {resolved})")
            return resolved
    if top.is_dir():
        return top
    raise NacosFormatError(f"{path} is not a directory")


def read_term(data_dir: Path, *, into: NacosData | None = None) -> int:
    """`term` from the `meta.properties` next to `data/` (0 when missing or unreadable; an
    unreadable one is listed in `into`)."""
    properties = data_dir.parent / "meta.properties"
    if not os.path.lexists(properties):
        return 0
    try:
        raw = read_contained(properties, data_dir.parent, MAX_PROPERTIES_BYTES)
    except NacosFormatError as error:
        if into is not None:
            into.unreadable.append(UnreadableFile(path=properties, reason=error.reason))
        return 0
    for line in raw.decode("utf-8", errors="replace").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith(("#", "!")) and name.strip() == "term":
            text = value.strip()
            if len(text) > MAX_INTEGER_DIGITS or not (text.isascii() and text.isdigit()):
                return 0
            return int(text)
    return 0


def read_contained(file: Path, tree: Path, max_bytes: int) -> bytes:
    """`file`'s bytes, if it resolves inside `tree` (resolved), is a regular file and holds
    at most `max_bytes`; else NacosFormatError saying which. The size is checked on the
    open file, and at most `max_bytes + 1` bytes are ever read (a file that grows)."""
    resolved = _resolve_inside(file, tree)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as error:
        raise NacosFormatError(f"cannot be read: {_one_line(str(error))}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NacosFormatError("not a regular file")
        if info.st_size > max_bytes:
            raise NacosFormatError(f"{info.st_size} bytes, over the {max_bytes}-byte cap")
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise NacosFormatError(f"grew past the {max_bytes}-byte cap while being read")
        return b"".join(chunks)
    except OSError as error:
        raise NacosFormatError(f"cannot be read: {_one_line(str(error))}") from None
    finally:
        os.close(fd)


def _resolve_inside(file: Path, tree: Path) -> Path:
    """`file` with every symlink resolved, if that is inside `tree` (resolved)."""
    try:
        resolved = file.resolve(strict=True)
    except (OSError, RuntimeError) as error:  # a dangling link, a loop
        raise NacosFormatError(f"cannot be read: {_one_line(str(error))}") from None
    if not resolved.is_relative_to(tree):
        raise NacosFormatError(f"a symlink out of {tree} (to {resolved}): not followed")
    return resolved


def _entries(directory: Path, into: NacosData | None) -> list[Path]:
    """The entries of `directory`, sorted; one that cannot be listed is noted in `into`."""
    try:
        return sorted(directory.iterdir())
    except OSError as error:
        if into is not None:
            reason = f"cannot be listed: {_one_line(str(error))}"
            into.unreadable.append(UnreadableFile(path=directory, reason=reason))
        return []


def datum_files(data_dir: Path, into: NacosData | None = None) -> Iterator[Path]:
    """Every candidate file: inside namespace directories, then at the top level. A
    directory (or a symlink to one) that resolves outside `data_dir` is listed in `into` as
    unreadable and not entered; special files are noted as skipped."""
    entries = _entries(data_dir, into)
    for entry in entries:
        if not entry.is_dir():
            continue
        try:
            inside = entry.resolve(strict=True).is_relative_to(data_dir)
        except (OSError, RuntimeError):
            inside = False
        if not inside:
            if into is not None:
                into.unreadable.append(
                    UnreadableFile(path=entry, reason=f"a symlink out of {data_dir}: not followed")
                )
            continue
        yield from (p for p in _entries(entry, into) if not p.is_dir())
    yield from (entry for entry in entries if not entry.is_dir())


def read_nacos_dir(path: Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> NacosData:
    """Read everything importable under `path`; never raises for a bad datum file."""
    data_dir = find_data_dir(path)
    result = NacosData(root=data_dir)
    result.term = read_term(data_dir, into=result)
    for file in datum_files(data_dir, result):
        if not file.name.startswith(KEY_PREFIX):
            result.skipped.append((file, "not a Nacos datum file"))
            continue
        try:
            read_datum_file(file, result, tree=data_dir, max_bytes=max_file_bytes)
        except NacosFormatError as error:
            reason = _one_line(error.reason)
            result.unreadable.append(UnreadableFile(path=file, reason=reason))
        except UnicodeError as error:
            reason = _one_line(f"not UTF-8: {error}")
            result.unreadable.append(UnreadableFile(path=file, reason=reason))
        except RecursionError:
            reason = "nested too deeply to read"
            result.unreadable.append(UnreadableFile(path=file, reason=reason))
        except OSError as error:
            reason = _one_line(f"cannot be read: {error}")
            result.unreadable.append(UnreadableFile(path=file, reason=reason))
        except (ValueError, TypeError, OverflowError, MemoryError) as error:
            # a last net: the checks above should have named the problem already
            reason = _one_line(f"cannot be read ({type(error).__name__}: {error})")
            result.unreadable.append(UnreadableFile(path=file, reason=reason))
    return result


def shown(text: object) -> str:
    """`text` (a path or a reason) as one printable line: undecodable bytes of a file name
    and control characters are escaped, so printing it can neither fail nor break a line."""
    raw = str(text).encode("utf-8", errors="surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def _one_line(text: str) -> str:
    """`text` on one printable line of at most MAX_REASON_CHARS characters."""
    flat = shown(text)
    if len(flat) > MAX_REASON_CHARS:
        return flat[: MAX_REASON_CHARS - 3] + "..."
    return flat


def read_datum_file(
    file: Path, into: NacosData, *, tree: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> None:
    """Read one datum file (inside `tree`, at most `max_bytes`) into `into`."""
    if not stat.S_ISREG(_resolve_inside(file, tree).stat().st_mode):
        into.skipped.append((file, "not a regular file (never opened)"))
        return
    text = read_contained(file, tree, max_bytes).decode("utf-8", errors="strict")
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


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS - 1:
        raise NacosFormatError(f"a number with {digits} digits (more than a 64-bit integer)")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NacosFormatError(f"a number out of range ({text[:40]})")
    return number


def _no_constant(text: str) -> float:
    raise NacosFormatError(f"{text} is not a JSON number")


def _loads(text: str) -> dict[str, Any]:
    """One JSON object; numbers bounded as they are parsed (no 5,000-digit integers, no
    infinities, no NaN), deep nesting and lone surrogates refused."""
    try:
        data = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as error:
        raise NacosFormatError(f"not JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise NacosFormatError("nested too deeply to read") from None
    if not isinstance(data, dict):
        raise NacosFormatError("not a JSON object (a Datum)")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NacosFormatError("holds a lone surrogate (\\ud800-\\udfff): not Unicode") from None
    except RecursionError:
        raise NacosFormatError("nested too deeply to read") from None
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
        protect_threshold=_number(threshold, 0.0),
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
    if not isinstance(ip, str) or not ip or isinstance(port, bool) or not isinstance(port, int):
        raise NacosFormatError(f"instance {position} has no ip/port")
    if not 0 < port < 65_536:
        raise NacosFormatError(f"instance {position} has port {port}, not in 1..65535")
    return NacosInstance(
        ip=ip,
        port=port,
        weight=_number(item.get("weight", 1.0), 1.0),
        healthy=bool(item.get("healthy", True)),
        enabled=bool(item.get("enabled", True)),
        cluster_name=str(item.get("clusterName") or "DEFAULT"),
        metadata=_str_map(item.get("metadata")),
    )


def _number(raw: object, default: float) -> float:
    """A JSON number as a float (`default` for anything else, booleans included)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return default
    return float(raw)


def _str_map(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
