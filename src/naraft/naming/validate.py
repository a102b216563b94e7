"""Raw request values → domain values, or InvalidArgumentError naming the field and rule.

Pure functions, no state: the service calls them before anything is proposed
(docs/conventions.md#errors).
Raw values are the strings the client sent (None when absent); field names are the Open
API names in snake_case (the API maps them back to camelCase for error bodies).
Rules follow Nacos 1.4.8 (docs/nacos-compat.md#validation).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.errors import InvalidArgumentError
from naraft.naming.commands import MetadataScope, MetadataTarget
from naraft.naming.keys import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE_ID,
    GROUP_SEPARATOR,
    InstanceKey,
    ServiceKey,
)
from naraft.naming.model import (
    CHECKER_FIELDS,
    HealthCheckerType,
    Instance,
    Selector,
    SelectorType,
)

MAX_NAMESPACE_ID_CHARS: Final = 128
MAX_GROUP_NAME_CHARS: Final = 128
MAX_SERVICE_NAME_CHARS: Final = 512
MAX_CLUSTER_NAME_CHARS: Final = 64
MAX_HOST_CHARS: Final = 253
MAX_METADATA_ENTRIES: Final = 128
MAX_METADATA_KEY_CHARS: Final = 256
MAX_METADATA_VALUE_CHARS: Final = 16_384
MAX_METADATA_BATCH: Final = 1_000  # instances one batch metadata request may list
MAX_NAMESPACE_NAME_CHARS: Final = 128
MAX_DESCRIPTION_CHARS: Final = 256
MAX_WEIGHT: Final = 10_000.0
MAX_PAGE_SIZE: Final = 10_000
MAX_SELECTOR_CHARS: Final = 4_096  # the selector JSON, expression included
MAX_CLUSTERS_FILTER: Final = 64  # names in `clusters=c1,c2,...`
MAX_NUMBER_CHARS: Final = 64  # the text of one numeric parameter
MAX_CHECKER_CHARS: Final = 4_096  # the `healthChecker` JSON of `PUT /cluster`
MAX_CHECKER_FIELD_CHARS: Final = 1_024  # one of its text fields (path, headers, cmd, ...)
# Java's ranges: Nacos keeps these fields in a Java `int` or `long`, and so do its clients.
JAVA_INT_MAX: Final = (1 << 31) - 1
JAVA_LONG_MAX: Final = (1 << 63) - 1

_NAMESPACE_ID = re.compile(r"[\w-]+", re.ASCII)  # Nacos console: ^[\w-]+
_GROUP_NAME = re.compile(r"[0-9a-zA-Z.:_-]+")
_SERVICE_NAME = re.compile(r"[0-9a-zA-Z@.:_-]+")  # Nacos Service.validate
_CLUSTER_NAME = re.compile(r"[0-9a-zA-Z-]+")  # Nacos Cluster.validate
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # ASCII digits only, unlike \d
# a dotted quad exactly as `ipaddress` writes it (no leading zeros): accepted as it is
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_NAMESPACE_NAME_FORBIDDEN = re.compile(r"[@#$%^&*]")  # Nacos namespaceNameCheck


@dataclass(frozen=True, slots=True, kw_only=True)
class RawInstance:
    """An instance request as sent: every field a string or None (absent)."""

    namespace_id: str | None = None
    group_name: str | None = None
    service_name: str | None = None
    cluster_name: str | None = None
    ip: str | None = None
    port: str | None = None
    weight: str | None = None
    enabled: str | None = None
    healthy: str | None = None
    ephemeral: str | None = None
    metadata: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawService:
    """A service request as sent: every field a string or None (absent)."""

    namespace_id: str | None = None
    group_name: str | None = None
    service_name: str | None = None
    protect_threshold: str | None = None
    metadata: str | None = None
    selector: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawMetadataBatch:
    """A batch metadata request (`/instance/metadata/batch`) as sent."""

    namespace_id: str | None = None
    group_name: str | None = None
    service_name: str | None = None
    consistency_type: str | None = None
    instances: str | None = None
    metadata: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawCluster:
    """A cluster update (`PUT /cluster`) as sent."""

    namespace_id: str | None = None
    group_name: str | None = None
    service_name: str | None = None
    cluster_name: str | None = None
    check_port: str | None = None
    use_instance_port: str | None = None
    health_checker: str | None = None
    metadata: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat:
    """A client beat's JSON payload (`beat=`), as Nacos's RsInfo; unknown keys ignored."""

    service_name: str | None
    ip: str
    port: int
    cluster_name: str | None
    weight: float
    metadata: Mapping[str, str]
    ephemeral: bool


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def required(field: str, value: str | None) -> str:
    if value is None or not value.strip():
        raise InvalidArgumentError(field, "is required")
    return value.strip()


def _charset(field: str, value: str, pattern: re.Pattern[str], allowed: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgumentError(field, f"must be at most {limit} characters")
    if pattern.fullmatch(value) is None:
        raise InvalidArgumentError(field, f"must match {allowed}")
    return value


def namespace_id(value: str | None) -> str:
    """A namespace id; blank means `public`. Naming needs no prior namespace creation."""
    if _blank(value):
        return DEFAULT_NAMESPACE_ID
    assert value is not None
    return _charset(
        "namespace_id", value.strip(), _NAMESPACE_ID, "[0-9a-zA-Z_-]+", MAX_NAMESPACE_ID_CHARS
    )


def group_name(value: str | None) -> str:
    if _blank(value):
        return DEFAULT_GROUP
    assert value is not None
    return _charset(
        "group_name", value.strip(), _GROUP_NAME, "[0-9a-zA-Z.:_-]+", MAX_GROUP_NAME_CHARS
    )


SERVICE_KEYS_KEPT: Final = 1_024


@functools.lru_cache(maxsize=SERVICE_KEYS_KEPT)
def service_key(namespace: str | None, group: str | None, service_name: str | None) -> ServiceKey:
    """The service named by `serviceName` (grouped by `groupName` unless it has `@@`).

    Every list, beat and registration names its service, and most name one of a few, so
    the keys of the last `SERVICE_KEYS_KEPT` spellings are kept (a refusal is not): the
    same spelling skips the checks and gives the same key object, whose look-ups in the
    list cache and the instance index then succeed on identity."""
    name = required("service_name", service_name)
    _charset("service_name", name, _SERVICE_NAME, "[0-9a-zA-Z@.:_-]+", MAX_SERVICE_NAME_CHARS)
    if GROUP_SEPARATOR in name:
        parts = name.split(GROUP_SEPARATOR)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InvalidArgumentError(
                "service_name", "must be serviceName or groupName@@serviceName"
            )
        group_part, name = parts
        try:
            group = group_name(group_part)
        except InvalidArgumentError as error:  # the client sent it inside `serviceName`
            raise InvalidArgumentError("service_name", f"its group: {error.rule}") from None
    else:
        group = group_name(group)
    return ServiceKey(namespace_id=namespace_id(namespace), group_name=group, service_name=name)


def cluster_name(value: str | None, field: str = "cluster_name") -> str:
    if _blank(value):
        return DEFAULT_CLUSTER
    assert value is not None
    return _charset(field, value.strip(), _CLUSTER_NAME, "[0-9a-zA-Z-]+", MAX_CLUSTER_NAME_CHARS)


def clusters_filter(value: str | None) -> tuple[str, ...]:
    """`clusters=c1,c2` → ("c1", "c2"); blank means every cluster."""
    if _blank(value):
        return ()
    assert value is not None
    names = [c for c in value.split(",") if c.strip()]
    if len(names) > MAX_CLUSTERS_FILTER:
        raise InvalidArgumentError("clusters", f"must name at most {MAX_CLUSTERS_FILTER} clusters")
    return tuple(cluster_name(c, "clusters") for c in names)


def ip(value: str | None, field: str = "ip") -> str:
    text = required(field, value)
    if _CANONICAL_IPV4.fullmatch(text) is not None:  # every registration and beat: 0.4 µs
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) > MAX_HOST_CHARS or _HOST_NAME.fullmatch(text) is None:
        raise InvalidArgumentError(field, "must be an IPv4 or IPv6 address or a host name")
    return text


def _integer(field: str, value: str | None, low: int, high: int) -> int:
    text = required(field, value)
    try:
        if len(text) > MAX_NUMBER_CHARS:
            raise ValueError(text)
        number = int(text)
    except ValueError:
        raise InvalidArgumentError(field, f"must be an integer in {low}..{high}") from None
    if not low <= number <= high:
        raise InvalidArgumentError(field, f"must be an integer in {low}..{high}")
    return number


def port(value: str | None) -> int:
    return _integer("port", value, 1, 65_535)


def _number(field: str, value: str, low: float, high: float) -> float:
    """A finite float in low..high (NaN and the infinities are outside every range)."""
    try:
        text = value.strip()
        number = float(text) if len(text) <= MAX_NUMBER_CHARS else math.nan
    except ValueError:
        number = math.nan
    if not low <= number <= high:  # also false for NaN
        raise InvalidArgumentError(field, f"must be a number in {low:g}..{high:g}")
    return number


def weight(value: str | None, default: float = 1.0) -> float:
    if _blank(value):
        return default
    assert value is not None
    return _number("weight", value, 0.0, MAX_WEIGHT)


def flag(field: str, value: str | None, default: bool) -> bool:
    """A boolean parameter: `true`/`false` in any case; blank means `default`."""
    if _blank(value):
        return default
    assert value is not None
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidArgumentError(field, "must be true or false")
    return lowered == "true"


def optional_flag(field: str, value: str | None) -> bool | None:
    return None if _blank(value) else flag(field, value, False)


def _metadata_value(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    raise InvalidArgumentError("metadata", "values must be strings, numbers or booleans")


def metadata_breach(metadata: Mapping[str, str]) -> str | None:
    """The bound `metadata` breaks, or None. Registration refuses such metadata, and a
    batch change that would leave an instance with it is rejected on apply."""
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"must have at most {MAX_METADATA_ENTRIES} entries"
    for key, text in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            return f"keys must be 1..{MAX_METADATA_KEY_CHARS} chars"
        if len(text) > MAX_METADATA_VALUE_CHARS:
            return f"values must be at most {MAX_METADATA_VALUE_CHARS} chars"
    return None


def metadata_from_object(raw: object, field: str = "metadata") -> dict[str, str]:
    if not isinstance(raw, dict):
        raise InvalidArgumentError(field, "must be a JSON object")
    if len(raw) > MAX_METADATA_ENTRIES:  # before converting: the count bounds the work
        raise InvalidArgumentError(field, f"must have at most {MAX_METADATA_ENTRIES} entries")
    result = {str(k): _metadata_value(v) for k, v in raw.items()}
    breach = metadata_breach(result)
    if breach is not None:
        raise InvalidArgumentError(field, breach)
    return result


def metadata(value: str | None) -> dict[str, str]:
    """A JSON object (values become strings) or legacy `k=v,k2=v2`; blank means {}."""
    if _blank(value):
        return {}
    assert value is not None
    text = value.strip()
    if text.startswith("{"):
        try:
            loaded: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise InvalidArgumentError("metadata", "must be a JSON object") from None
        return metadata_from_object(loaded)
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, item_value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError("metadata", "must be a JSON object or k=v,k2=v2")
        pairs[key.strip()] = item_value.strip()
    return metadata_from_object(pairs)


def instance(raw: RawInstance, *, default_ephemeral: bool = True) -> Instance:
    """A full instance record from a register or update request, with Nacos's defaults."""
    return Instance(
        service=service_key(raw.namespace_id, raw.group_name, raw.service_name),
        ip=ip(raw.ip),
        port=port(raw.port),
        cluster_name=cluster_name(raw.cluster_name),
        weight=weight(raw.weight),
        enabled=flag("enabled", raw.enabled, True),
        healthy=flag("healthy", raw.healthy, True),
        ephemeral=flag("ephemeral", raw.ephemeral, default_ephemeral),
        metadata=metadata(raw.metadata),
    )


def instance_key(raw: RawInstance, *, default_ephemeral: bool = True) -> InstanceKey:
    return InstanceKey(
        service=service_key(raw.namespace_id, raw.group_name, raw.service_name),
        ephemeral=flag("ephemeral", raw.ephemeral, default_ephemeral),
        cluster_name=cluster_name(raw.cluster_name),
        ip=ip(raw.ip),
        port=port(raw.port),
    )


def consistency_type(value: str | None) -> MetadataScope:
    """`consistencyType` of a batch metadata change: `ephemeral` or `persist` (exactly, as
    Nacos compares them) select every instance of that kind; blank, the listed ones.
    Nacos ignores any other value silently; naraft refuses it."""
    if _blank(value):
        return MetadataScope.LISTED
    assert value is not None
    text = value.strip()
    for scope in (MetadataScope.EPHEMERAL, MetadataScope.PERSISTENT):
        if text == scope.value:
            return scope
    raise InvalidArgumentError("consistency_type", "must be ephemeral, persist or empty")


_TARGETS_SHAPE: Final = "must be a JSON array of {ip, port, clusterName, ephemeral} objects"


def metadata_targets(value: str | None) -> tuple[MetadataTarget, ...]:
    """`instances` of a batch metadata change: a JSON array of objects with `ip`, `port`,
    `clusterName` (blank: DEFAULT) and `ephemeral` (default true, as Nacos's Instance);
    other keys are ignored, as Nacos ignores them. Blank means none. Each instance once,
    in the order first listed. Nacos passes over a list it cannot parse; naraft refuses it."""
    if _blank(value):
        return ()
    assert value is not None
    try:
        loaded: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("instances", _TARGETS_SHAPE) from None
    if not isinstance(loaded, list):
        raise InvalidArgumentError("instances", _TARGETS_SHAPE)
    if len(loaded) > MAX_METADATA_BATCH:
        raise InvalidArgumentError("instances", f"must list at most {MAX_METADATA_BATCH} instances")
    return tuple(dict.fromkeys(_metadata_target(n, item) for n, item in enumerate(loaded)))


def _metadata_target(position: int, item: object) -> MetadataTarget:
    """One item of `instances`; an error names `instances`, the item and what is wrong."""
    if not isinstance(item, dict):
        raise InvalidArgumentError("instances", f"item {position} must be a JSON object")
    try:
        cluster = _json_text("clusterName", item.get("clusterName"))
        return MetadataTarget(
            ephemeral=_json_flag("ephemeral", item.get("ephemeral")),
            cluster_name=cluster_name(cluster, "clusterName"),
            ip=ip(_json_text("ip", item.get("ip"))),
            port=port(_json_text("port", item.get("port"), integer=True)),
        )
    except InvalidArgumentError as error:
        raise InvalidArgumentError(
            "instances", f"item {position}: {error.field} {error.rule}"
        ) from None


def _json_text(field: str, value: object, *, integer: bool = False) -> str | None:
    """A JSON value where a parameter's text is expected: a string (null: None), or with
    `integer` also a JSON integer (Nacos reads `"port": 80` and `"port": "80"` alike)."""
    if value is None or isinstance(value, str):
        return value
    if integer and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidArgumentError(field, "must be an integer" if integer else "must be a string")


def _json_flag(field: str, value: object) -> bool:
    """A JSON boolean, or its text; null or absent is true (Nacos's Instance default)."""
    if isinstance(value, bool):
        return value
    if value is None or isinstance(value, str):
        return flag(field, value, True)
    raise InvalidArgumentError(field, "must be true or false")


def protect_threshold(value: str | None, *, is_required: bool = False) -> float:
    if is_required:
        required("protect_threshold", value)
    if _blank(value):
        return 0.0
    assert value is not None
    return _number("protect_threshold", value, 0.0, 1.0)


def selector(value: str | None) -> Selector:
    """`{"type":"none"}` or `{"type":"label","expression":"..."}`; blank means none."""
    if _blank(value):
        return Selector()
    assert value is not None
    if len(value) > MAX_SELECTOR_CHARS:
        raise InvalidArgumentError("selector", f"must be at most {MAX_SELECTOR_CHARS} characters")
    try:
        loaded: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("selector", "must be a JSON object") from None
    if not isinstance(loaded, dict):
        raise InvalidArgumentError("selector", "must be a JSON object")
    kind = loaded.get("type")
    if kind == SelectorType.NONE.value:
        return Selector()
    if kind == SelectorType.LABEL.value:
        expression = loaded.get("expression", "")
        if not isinstance(expression, str):
            raise InvalidArgumentError("selector", "expression must be a string")
        return Selector(SelectorType.LABEL, expression)
    raise InvalidArgumentError("selector", "type must be none or label")


def page(page_no: str | None, page_size: str | None) -> tuple[int, int]:
    """(pageNo, pageSize): both required, 1-based, pageSize at most MAX_PAGE_SIZE."""
    return (
        _integer("page_no", page_no, 1, 1_000_000_000),
        _integer("page_size", page_size, 1, MAX_PAGE_SIZE),
    )


def optional_page(
    page_no: str | None, page_size: str | None, *, default_size: int
) -> tuple[int, int]:
    return (
        1 if _blank(page_no) else _integer("page_no", page_no, 1, 1_000_000_000),
        default_size if _blank(page_size) else _integer("page_size", page_size, 1, MAX_PAGE_SIZE),
    )


def udp_port(value: str | None) -> int:
    """`udpPort` on a list request: 0 (or blank) means no push."""
    if _blank(value):
        return 0
    return _integer("udp_port", value, 0, 65_535)


def beat(value: str) -> Beat:
    """Parse the `beat` JSON of `PUT /instance/beat` (nacos RsInfo; unknown keys ignored)."""
    try:
        loaded: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("beat", "must be a JSON object") from None
    if not isinstance(loaded, dict):
        raise InvalidArgumentError("beat", "must be a JSON object")
    raw_port = loaded.get("port")
    if isinstance(raw_port, bool) or not isinstance(raw_port, int) or not 1 <= raw_port <= 65_535:
        raise InvalidArgumentError("beat", "port must be an integer in 1..65535")
    raw_ip = loaded.get("ip")
    if not isinstance(raw_ip, str):
        raise InvalidArgumentError("beat", "ip must be a string")
    raw_weight = loaded.get("weight", 1.0)
    if isinstance(raw_weight, bool) or not isinstance(raw_weight, int | float):
        raise InvalidArgumentError("beat", "weight must be a number")
    raw_cluster = loaded.get("cluster")
    raw_service = loaded.get("serviceName")
    raw_ephemeral = loaded.get("ephemeral", True)
    return Beat(
        service_name=raw_service if isinstance(raw_service, str) and raw_service else None,
        ip=ip(raw_ip),
        port=raw_port,
        cluster_name=(
            cluster_name(raw_cluster) if isinstance(raw_cluster, str) and raw_cluster else None
        ),
        weight=_number("weight", str(raw_weight), 0.0, MAX_WEIGHT),
        metadata=metadata_from_object(loaded.get("metadata") or {}, "beat"),
        ephemeral=raw_ephemeral if isinstance(raw_ephemeral, bool) else True,
    )


def new_namespace_id(value: str | None, field: str = "custom_namespace_id") -> str | None:
    """A custom namespace id to create (`customNamespaceId` in v1, `namespaceId` in v2), or
    None when the server should generate one."""
    if _blank(value):
        return None
    assert value is not None
    text = value.strip()
    _charset(field, text, _NAMESPACE_ID, "[0-9a-zA-Z_-]+", MAX_NAMESPACE_ID_CHARS)
    return text


def namespace_show_name(value: str | None, field: str = "namespace_name") -> str:
    """A namespace's name: `namespaceName` on create (and on a v2 update),
    `namespaceShowName` on a v1 update."""
    name = required(field, value)
    if len(name) > MAX_NAMESPACE_NAME_CHARS:
        raise InvalidArgumentError(field, f"must be at most {MAX_NAMESPACE_NAME_CHARS} characters")
    if _NAMESPACE_NAME_FORBIDDEN.search(name) is not None:
        raise InvalidArgumentError(field, "must not contain @#$%^&*")
    return name


def description(value: str | None) -> str:
    text = "" if value is None else value.strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise InvalidArgumentError(
            "namespace_desc", f"must be at most {MAX_DESCRIPTION_CHARS} characters"
        )
    return text


def search_text(field: str, value: str | None, limit: int) -> str:
    """A substring to search names for (blank: match all), at most `limit` characters."""
    text = (value or "").strip()
    if len(text) > limit:
        raise InvalidArgumentError(field, f"at most {limit} characters")
    return text


def optional_cluster(value: str | None) -> str | None:
    """A cluster to filter by, or None (blank: every cluster)."""
    return None if _blank(value) else cluster_name(value)


def check_port(value: str | None) -> int:
    """`checkPort`, required as in Nacos; 0..65535 (Nacos takes anything, as 0 if not a
    number)."""
    return _integer("checkPort", value, 0, 65_535)


def health_checker(value: str | None) -> tuple[HealthCheckerType, dict[str, str | int]]:
    """`healthChecker`, required: a JSON object with `type` (TCP, HTTP, MYSQL or NONE, in
    any case) and that type's own fields (`CHECKER_FIELDS`: HTTP `path`, `headers`,
    `expectedResponseCode`; MYSQL `user`, `pwd`, `cmd`), each of its kind or null; other
    keys are ignored, as Nacos's reader ignores them."""
    text = required("healthChecker", value)
    if len(text) > MAX_CHECKER_CHARS:
        raise InvalidArgumentError("healthChecker", f"must be at most {MAX_CHECKER_CHARS} chars")
    try:
        raw: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidArgumentError("healthChecker", "must be a JSON object") from None
    if not isinstance(raw, dict):
        raise InvalidArgumentError("healthChecker", "must be a JSON object")
    kind_text = raw.get("type")
    kinds = {t.value: t for t in HealthCheckerType}
    if not isinstance(kind_text, str) or kind_text.upper() not in kinds:
        raise InvalidArgumentError(
            "healthChecker", f"type must be one of {', '.join(sorted(kinds))}"
        )
    kind = kinds[kind_text.upper()]
    options: dict[str, str | int] = {}
    for name, unset in CHECKER_FIELDS.get(kind, {}).items():
        field_value = raw.get(name)
        if field_value is None:
            continue
        if isinstance(unset, int):
            if isinstance(field_value, str) and field_value.strip().isascii():
                field_value = field_value.strip()
                digits = field_value.isdigit() and len(field_value) <= 3
                field_value = int(field_value) if digits else field_value
            if type(field_value) is not int or not 100 <= field_value <= 599:
                raise InvalidArgumentError(
                    "healthChecker", f"{name} must be an HTTP status code, 100..599"
                )
        elif not isinstance(field_value, str) or len(field_value) > MAX_CHECKER_FIELD_CHARS:
            raise InvalidArgumentError(
                "healthChecker",
                f"{name} must be a string of at most {MAX_CHECKER_FIELD_CHARS} chars",
            )
        options[name] = field_value
    return kind, options
