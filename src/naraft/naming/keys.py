"""Nacos names and datum keys: defaults, `group@@service` grouping, and KeyBuilder keys.

The key grammar is Nacos 1.x's `KeyBuilder` (docs/nacos-compat.md#datum-keys), so a
digest of (key, version) sees the same keyspace a Nacos data directory would hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_NAMESPACE_ID: Final = "public"
DEFAULT_GROUP: Final = "DEFAULT_GROUP"
DEFAULT_CLUSTER: Final = "DEFAULT"

GROUP_SEPARATOR: Final = "@@"  # Nacos Constants.SERVICE_INFO_SPLITER
NAMESPACE_SEPARATOR: Final = "##"  # KeyBuilder.NAMESPACE_KEY_CONNECTOR

SERVICE_META_PREFIX: Final = "com.alibaba.nacos.naming.domains.meta."
INSTANCE_LIST_PREFIX: Final = "com.alibaba.nacos.naming.iplist."
EPHEMERAL_INSTANCE_LIST_PREFIX: Final = "com.alibaba.nacos.naming.iplist.ephemeral."
SWITCH_DOMAIN_NAME: Final = "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
SWITCH_KEY: Final = SERVICE_META_PREFIX + SWITCH_DOMAIN_NAME
INSTANCE_SEPARATOR: Final = "/"  # list key → one instance's datum; in no name's alphabet
# Nacos keeps namespaces in its config database, not in naming; naraft replicates them too.
NAMESPACE_PREFIX: Final = "naraft.naming.namespace."


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceKey:
    """A service's identity: namespace plus grouped name (`group@@service`)."""

    namespace_id: str
    group_name: str
    service_name: str  # without the group prefix

    @property
    def grouped_name(self) -> str:
        return grouped_name(self.group_name, self.service_name)

    def __str__(self) -> str:
        return f"{self.namespace_id}{NAMESPACE_SEPARATOR}{self.grouped_name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceKey:
    """An instance's identity (docs/nacos-compat.md): service, store kind, cluster, ip, port."""

    service: ServiceKey
    ephemeral: bool
    cluster_name: str
    ip: str
    port: int

    @property
    def instance_id(self) -> str:
        """Nacos's default instance id: `ip#port#cluster#group@@service`."""
        return instance_id(self.ip, self.port, self.cluster_name, self.service.grouped_name)


def grouped_name(group_name: str, service_name: str) -> str:
    return f"{group_name}{GROUP_SEPARATOR}{service_name}"


def split_grouped_name(name: str) -> tuple[str, str]:
    """`group@@service` → (group, service); a name without `@@` is in `DEFAULT_GROUP`."""
    group, sep, service = name.partition(GROUP_SEPARATOR)
    if not sep:
        return DEFAULT_GROUP, name
    return group, service


def instance_id(ip: str, port: int, cluster_name: str, grouped_service_name: str) -> str:
    return f"{ip}#{port}#{cluster_name}#{grouped_service_name}"


def service_meta_key(service: ServiceKey) -> str:
    return f"{SERVICE_META_PREFIX}{service}"


def instance_list_key(service: ServiceKey, *, ephemeral: bool) -> str:
    prefix = EPHEMERAL_INSTANCE_LIST_PREFIX if ephemeral else INSTANCE_LIST_PREFIX
    return f"{prefix}{service}"


def instance_datum_key(key: InstanceKey, list_key: str | None = None) -> str:
    """The datum of one instance: its list's key (`list_key`, when the caller has it),
    `/`, then `ip#port#cluster`. Each instance is a datum of its own, so a registration
    writes one record, whatever the size of its service (docs/nacos-compat.md#datum-keys);
    the list key names the group."""
    if list_key is None:
        list_key = instance_list_key(key.service, ephemeral=key.ephemeral)
    cluster = key.cluster_name or DEFAULT_CLUSTER
    return f"{list_key}{INSTANCE_SEPARATOR}{key.ip}#{key.port}#{cluster}"


def namespace_key(namespace_id: str) -> str:
    return f"{NAMESPACE_PREFIX}{namespace_id}"


def service_meta_prefix(namespace_id: str) -> str:
    """The prefix of every service-metadata key in one namespace (never the switch key)."""
    return f"{SERVICE_META_PREFIX}{namespace_id}{NAMESPACE_SEPARATOR}"


def service_of_key(key: str) -> ServiceKey | None:
    """The service whose data a datum key holds (its metadata, an instance of it, or a
    list written before instances had datums of their own); None for the switch key, a
    namespace, or a key of another kind."""
    for prefix in (EPHEMERAL_INSTANCE_LIST_PREFIX, INSTANCE_LIST_PREFIX):
        if key.startswith(prefix):
            rest = key[len(prefix) :].partition(INSTANCE_SEPARATOR)[0]
            return service_key_from_meta_key(SERVICE_META_PREFIX + rest)
    return service_key_from_meta_key(key)


def service_key_from_meta_key(key: str) -> ServiceKey | None:
    """The service a service-metadata key names; None for the switch key or another kind."""
    if not key.startswith(SERVICE_META_PREFIX) or key == SWITCH_KEY:
        return None
    namespace_id, sep, name = key[len(SERVICE_META_PREFIX) :].partition(NAMESPACE_SEPARATOR)
    if not sep:
        return None
    group, service = split_grouped_name(name)
    return ServiceKey(namespace_id=namespace_id, group_name=group, service_name=service)
