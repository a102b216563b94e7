"""Datum values ↔ model values: Nacos 1.x's JSON shapes for services and instance lists.

The shapes follow Nacos 1.4.8 (docs/nacos-compat.md#stored-values: `Service` with
`clusterMap`, `Instances` as `{"instanceList": [...]}`), minus what depends on a
replica's clock (`lastBeat`), so that every replica writes the same bytes for the same
command. Encoding is canonical: field order is fixed and metadata keys are sorted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from naraft.naming.errors import CorruptDatumError
from naraft.naming.keys import DEFAULT_CLUSTER, ServiceKey, instance_id, split_grouped_name
from naraft.naming.model import (
    CHECKER_FIELDS,
    DEFAULT_CHECK_PORT,
    Cluster,
    HealthCheckerType,
    Instance,
    Namespace,
    NamespaceType,
    Selector,
    SelectorType,
    Service,
    instance_sort_key,
)

_CHECKER_TYPES = frozenset(t.value for t in HealthCheckerType)


def sorted_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: metadata[k] for k in sorted(metadata)}


def selector_record(selector: Selector) -> dict[str, str]:
    if selector.type is SelectorType.NONE:
        return {"type": SelectorType.NONE.value}
    return {"type": selector.type.value, "expression": selector.expression}


def checker_view(cluster: Cluster) -> dict[str, object]:
    """The cluster's `healthChecker` as Nacos shows it: `type`, and that type's fields."""
    kind = cluster.health_checker_type
    view: dict[str, object] = {"type": kind.value}
    for name, unset in CHECKER_FIELDS.get(kind, {}).items():
        view[name] = cluster.checker_options.get(name, unset)
    return view


def cluster_record(cluster: Cluster, service: ServiceKey) -> dict[str, object]:
    """A cluster as stored. What `PUT /cluster` sets is written only when it differs from
    Nacos's defaults, so a cluster it never touched is stored byte for byte as builds
    before it stored one (replicas of two builds compare equal in a rolling upgrade)."""
    record: dict[str, object] = {
        "name": cluster.name,
        "serviceName": service.grouped_name,
        "healthChecker": {"type": cluster.health_checker_type.value},
        "metadata": sorted_metadata(cluster.metadata),
    }
    if cluster.checker_options:
        record["healthChecker"] = {
            "type": cluster.health_checker_type.value,
            **{k: cluster.checker_options[k] for k in sorted(cluster.checker_options)},
        }
    if cluster.check_port != DEFAULT_CHECK_PORT or not cluster.use_instance_port:
        record["defaultCheckPort"] = cluster.check_port
        record["useIPPort4Check"] = cluster.use_instance_port
    return record


def _checker_options(
    key: str, kind: HealthCheckerType, raw: dict[str, object]
) -> dict[str, str | int]:
    options: dict[str, str | int] = {}
    for name, unset in CHECKER_FIELDS.get(kind, {}).items():
        value = raw.get(name)
        if value is None:
            continue
        wrong = CorruptDatumError(key, f"healthChecker.{name} has the wrong type")
        if isinstance(unset, int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise wrong
            options[name] = value
        else:
            if not isinstance(value, str):
                raise wrong
            options[name] = value
    return options


def encode_service(service: Service) -> bytes:
    key = service.key
    record = {
        "name": key.grouped_name,
        "groupName": key.group_name,
        "namespaceId": key.namespace_id,
        "protectThreshold": service.protect_threshold,
        "metadata": sorted_metadata(service.metadata),
        "selector": selector_record(service.selector),
        "clusterMap": {
            name: cluster_record(service.clusters[name], key) for name in sorted(service.clusters)
        },
        "lastModifiedMillis": service.last_modified_ms,
    }
    return orjson.dumps(record)


def stored_instance(instance: Instance, service: ServiceKey) -> Instance:
    """Exactly what `decode_instance` gives for `encode_instance(instance)` in `service`,
    without the JSON round trip: the state machine keeps it as the decoded record of the
    datum it just wrote (tests/naming/test_records.py checks the equivalence)."""
    metadata = instance.metadata
    if (
        instance.service == service
        and type(instance.weight) is float
        and instance.cluster_name
        and type(metadata) is dict
        and (not metadata or list(metadata) == sorted(metadata))
        and all(type(k) is str and type(v) is str for k, v in metadata.items())
    ):
        return instance  # already as decoding would build it
    return replace(
        instance,
        service=service,
        weight=float(instance.weight),
        cluster_name=instance.cluster_name or DEFAULT_CLUSTER,
        metadata={str(k): str(metadata[k]) for k in sorted(metadata)},
    )


def instance_record(instance: Instance, grouped_name: str | None = None) -> dict[str, object]:
    """The stored record; `grouped_name` is the instance's service's, if the caller has it."""
    if grouped_name is None:
        grouped_name = instance.service.grouped_name
    metadata = instance.metadata
    return {
        "instanceId": instance_id(instance.ip, instance.port, instance.cluster_name, grouped_name),
        "ip": instance.ip,
        "port": instance.port,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
        "clusterName": instance.cluster_name,
        "serviceName": grouped_name,
        "metadata": sorted_metadata(metadata) if metadata else {},
        "marked": False,
        # naraft's own: the registering client connection, only when there is one, so a
        # v1 instance's record is byte-for-byte what it was before owners existed.
        **({"owner": instance.owner} if instance.owner else {}),
    }


def encode_namespace(namespace: Namespace) -> bytes:
    return orjson.dumps(
        {
            "namespace": namespace.namespace_id,
            "namespaceShowName": namespace.show_name,
            "namespaceDesc": namespace.description,
            "quota": namespace.quota,
            "type": int(namespace.type),
        }
    )


def _load_object(key: str, value: bytes) -> dict[str, Any]:
    try:
        loaded = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise CorruptDatumError(key, f"not JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise CorruptDatumError(key, "not a JSON object")
    return loaded


def _string_map(key: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptDatumError(key, "metadata is not an object")
    return {str(k): str(v) for k, v in value.items()}


def decode_service(key: str, value: bytes, service: ServiceKey) -> Service:
    record = _load_object(key, value)
    selector_raw = record.get("selector")
    selector = Selector()
    if isinstance(selector_raw, dict) and selector_raw.get("type") == SelectorType.LABEL.value:
        selector = Selector(SelectorType.LABEL, str(selector_raw.get("expression", "")))
    clusters: dict[str, Cluster] = {}
    cluster_map = record.get("clusterMap") or {}
    if not isinstance(cluster_map, dict):
        raise CorruptDatumError(key, "clusterMap is not an object")
    for name, raw in cluster_map.items():
        checker = HealthCheckerType.TCP
        options: dict[str, str | int] = {}
        check_port, use_instance_port = DEFAULT_CHECK_PORT, True
        if isinstance(raw, dict):
            checker_raw = raw.get("healthChecker")
            checker_type = checker_raw.get("type") if isinstance(checker_raw, dict) else None
            if checker_type in _CHECKER_TYPES:
                checker = HealthCheckerType(checker_type)
            if isinstance(checker_raw, dict):
                options = _checker_options(key, checker, checker_raw)
            metadata = _string_map(key, raw.get("metadata"))
            port = raw.get("defaultCheckPort", DEFAULT_CHECK_PORT)
            use = raw.get("useIPPort4Check", True)
            if type(port) is not int or not isinstance(use, bool):
                raise CorruptDatumError(key, f"cluster {name} has a bad check port or flag")
            check_port, use_instance_port = port, use
        else:
            metadata = {}
        clusters[str(name)] = Cluster(
            name=str(name),
            health_checker_type=checker,
            metadata=metadata,
            check_port=check_port,
            use_instance_port=use_instance_port,
            checker_options=options,
        )
    threshold = record.get("protectThreshold", 0.0)
    modified = record.get("lastModifiedMillis", 0)
    return Service(
        key=service,
        protect_threshold=float(threshold) if isinstance(threshold, int | float) else 0.0,
        metadata=_string_map(key, record.get("metadata")),
        selector=selector,
        clusters=clusters,
        last_modified_ms=modified if isinstance(modified, int) else 0,
    )


def decode_instances(key: str, value: bytes, service: ServiceKey) -> tuple[Instance, ...]:
    """An instance list datum (as written before each instance had a datum of its own).
    Each instance's service is `service` (the key's service)."""
    record = _load_object(key, value)
    raw_list = record.get("instanceList") or []
    if not isinstance(raw_list, list):
        raise CorruptDatumError(key, "instanceList is not an array")
    instances = [_instance_of_record(key, raw, service) for raw in raw_list]
    return tuple(sorted(instances, key=instance_sort_key))


def encode_instance(instance: Instance) -> bytes:
    """One instance's datum: its record, byte for byte as it stands in a list's."""
    return orjson.dumps(instance_record(instance))


def decode_instance(key: str, value: bytes, service: ServiceKey) -> Instance:
    """One instance's datum; its service is `service` (the key's service)."""
    return _instance_of_record(key, _load_object(key, value), service)


def _instance_of_record(key: str, raw: object, service: ServiceKey) -> Instance:
    if not isinstance(raw, dict):
        raise CorruptDatumError(key, "an instance is not an object")
    ip, port = raw.get("ip"), raw.get("port")
    if not isinstance(ip, str) or not isinstance(port, int):
        raise CorruptDatumError(key, "an instance lacks ip or port")
    weight = raw.get("weight", 1.0)
    owner = raw.get("owner", "")
    return Instance(
        service=service,
        ip=ip,
        port=port,
        cluster_name=str(raw.get("clusterName") or DEFAULT_CLUSTER),
        weight=float(weight) if isinstance(weight, int | float) else 1.0,
        healthy=raw.get("healthy", True) is True,
        enabled=raw.get("enabled", True) is True,
        ephemeral=raw.get("ephemeral", True) is True,
        metadata=_string_map(key, raw.get("metadata")),
        owner=owner if isinstance(owner, str) else "",
    )


def decode_namespace(key: str, value: bytes) -> Namespace:
    record = _load_object(key, value)
    namespace_id = record.get("namespace")
    if not isinstance(namespace_id, str):
        raise CorruptDatumError(key, "namespace id missing")
    quota = record.get("quota", 200)
    return Namespace(
        namespace_id=namespace_id,
        show_name=str(record.get("namespaceShowName") or namespace_id),
        description=str(record.get("namespaceDesc") or ""),
        quota=quota if isinstance(quota, int) else 200,
        type=NamespaceType.GLOBAL if record.get("type") == 0 else NamespaceType.CUSTOM,
    )


def service_key_of(namespace_id: str, grouped: str) -> ServiceKey:
    group, name = split_grouped_name(grouped)
    return ServiceKey(namespace_id=namespace_id, group_name=group, service_name=name)
