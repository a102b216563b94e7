"""Read responses with Nacos 1.4.8's exact shapes: pure functions of model values.

Field order is fixed (the Python client diffs `str(host)` between polls, so host objects
must be stable: nothing per-request inside a host). See docs/nacos-compat.md#response-shapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import (
    CHECKER_FIELDS,
    Cluster,
    HealthCheckerType,
    Instance,
    Namespace,
    PushTarget,
    Service,
)
from naraft.naming.records import checker_view, selector_record, sorted_metadata
from naraft.naming.validate import JAVA_LONG_MAX
from naraft.state.datums import right_sized


def service_checksum(service: Service | None, instances: Iterable[Instance]) -> str:
    """MD5 over the service's metadata and every instance: changes iff the data changes."""
    digest = hashlib.md5(usedforsecurity=False)
    if service is not None:
        digest.update(orjson.dumps(sorted_metadata(service.metadata)))
        digest.update(str(service.protect_threshold).encode())
    for instance in instances:
        digest.update(
            orjson.dumps(
                [
                    instance.ip,
                    instance.port,
                    instance.cluster_name,
                    instance.weight,
                    instance.healthy,
                    instance.enabled,
                    instance.ephemeral,
                    sorted_metadata(instance.metadata),
                ]
            )
        )
    return digest.hexdigest()


def host_view(instance: Instance, *, healthy: bool, grouped_names: bool) -> dict[str, object]:
    """One `hosts[]` entry; `healthy` is the health bucket (all true past the threshold)."""
    service = instance.service
    return {
        "ip": instance.ip,
        "port": instance.port,
        "valid": healthy,
        "healthy": healthy,
        "marked": False,
        "instanceId": instance.instance_id,
        "metadata": sorted_metadata(instance.metadata),
        "enabled": instance.enabled,
        "weight": instance.weight,
        "clusterName": instance.cluster_name,
        "serviceName": service.grouped_name if grouped_names else service.service_name,
        "ephemeral": instance.ephemeral,
    }


@dataclass(frozen=True, slots=True)
class ListedHosts:
    """The part of an `instance/list` answer that depends only on the service's stored data
    and the request's filters: what `ListCache` keeps between reads. The hosts are kept
    only encoded (`hosts_json`, spliced into answers sent as JSON, which every API's are):
    as dictionaries beside it they took three times the memory (about 900 bytes a host)."""

    hosts_json: bytes
    count: int  # hosts in `hosts_json`
    checksum: str
    reach_protect_threshold: bool
    metadata: dict[str, str]
    service_name: str  # `dom`: grouped for clients that expect it


def listed_hosts(
    key: ServiceKey,
    service: Service | None,
    instances: Sequence[Instance],
    *,
    cluster_filter: Sequence[str],
    healthy_only: bool,
    grouped_names: bool,
) -> ListedHosts:
    """The hosts of an instance list, as Nacos's `doSrvIpxt` selects them.

    - `cluster_filter` empty means all clusters.
    - Protect threshold: if healthy / total (enabled or not) <= the service's threshold,
      every instance is returned in the healthy bucket and `reachProtectThreshold` is true.
    - Disabled instances are left out; `healthy_only` drops the unhealthy bucket.
    - Hosts come in the stored order (cluster, ip, port), so polls see a stable list.
    """
    selected = [i for i in instances if not cluster_filter or i.cluster_name in cluster_filter]
    healthy_count = sum(1 for i in selected if i.healthy)
    threshold = service.protect_threshold if service is not None else 0.0
    reach_threshold = bool(selected) and healthy_count / len(selected) <= threshold
    hosts: list[dict[str, object]] = []
    for instance in selected:
        bucket = instance.healthy or reach_threshold
        if (healthy_only and not bucket) or not instance.enabled:
            continue
        hosts.append(host_view(instance, healthy=bucket, grouped_names=grouped_names))
    return ListedHosts(
        hosts_json=right_sized(orjson.dumps(hosts)),  # cached: see ListCache
        count=len(hosts),
        checksum=service_checksum(service, selected),
        reach_protect_threshold=reach_threshold,
        metadata={} if service is None else sorted_metadata(service.metadata),
        service_name=key.grouped_name if grouped_names else key.service_name,
    )


def instance_list_view(
    key: ServiceKey,
    listed: ListedHosts,
    *,
    clusters: str,
    cache_ms: int,
    now_ms: int,
    encoded_hosts: bool = False,
) -> dict[str, object]:
    """The `GET /instance/list` answer: `listed` with what each request adds (`clusters`
    echoed verbatim, the cache time, the time of the answer). `encoded_hosts` puts the
    encoded hosts in place of the list, for an answer about to be encoded by orjson (every
    API's); without it they are decoded, fresh objects."""
    return {
        "name": key.grouped_name,
        "groupName": key.group_name,
        "clusters": clusters,
        "cacheMillis": cache_ms,
        "hosts": orjson.Fragment(listed.hosts_json)
        if encoded_hosts
        else orjson.loads(listed.hosts_json),
        "lastRefTime": now_ms,
        "checksum": listed.checksum,
        "allIPs": False,
        "reachProtectThreshold": listed.reach_protect_threshold,
        "valid": True,
        "dom": listed.service_name,
        "env": "",
        "useSpecifiedURL": False,
        "metadata": dict(listed.metadata),
    }


ListKey = tuple[ServiceKey, tuple[str, ...], bool, bool]
"""What selects the hosts of a list: service, cluster filter, healthy only, grouped names."""


class ListCache:
    """`ListedHosts` per (service, filters), valid while the service's stored data is the
    same: each entry keeps the `stamp` it was built for (the service's datums, compared by
    identity, so any write, rollback or install invalidates it). Least recently used
    entries go first past `max_entries` or `max_hosts` cached hosts, so neither many
    filters nor a few huge services can make it grow without bound."""

    def __init__(self, *, max_entries: int = 4096, max_hosts: int = 100_000) -> None:
        self._entries: dict[ListKey, tuple[tuple[object, ...], ListedHosts]] = {}
        self._max_entries = max_entries
        self._max_hosts = max_hosts
        self._hosts = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, key: ListKey, stamp: tuple[object, ...], build: Callable[[], ListedHosts]
    ) -> ListedHosts:
        found = self._entries.pop(key, None)
        if found is not None:
            if all(a is b for a, b in zip(found[0], stamp, strict=True)):
                self._entries[key] = found  # most recently used: last in insertion order
                return found[1]
            self._hosts -= found[1].count
        listed = build()
        if listed.count <= self._max_hosts:
            self._entries[key] = (stamp, listed)
            self._hosts += listed.count
            while len(self._entries) > self._max_entries or self._hosts > self._max_hosts:
                oldest = next(iter(self._entries))
                self._hosts -= self._entries.pop(oldest)[1].count
        return listed


def instance_detail_view(instance: Instance) -> dict[str, object]:
    """The `GET /instance` answer."""
    return {
        "service": instance.service.grouped_name,
        "ip": instance.ip,
        "port": instance.port,
        "clusterName": instance.cluster_name,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "instanceId": instance.instance_id,
        "metadata": sorted_metadata(instance.metadata),
    }


def service_view(service: Service) -> dict[str, object]:
    """The `GET /service` answer; `name` is the bare name."""
    key = service.key
    return {
        "name": key.service_name,
        "namespaceId": key.namespace_id,
        "protectThreshold": service.protect_threshold,
        "metadata": sorted_metadata(service.metadata),
        "selector": selector_record(service.selector),
        "groupName": key.group_name,
        "clusters": [
            {
                "name": cluster.name,
                "healthChecker": checker_view(cluster),
                "metadata": sorted_metadata(cluster.metadata),
            }
            for cluster in (service.clusters[name] for name in sorted(service.clusters))
        ],
    }


def health_checkers_view() -> dict[str, dict[str, object]]:
    """`GET /health/checkers`: every checker type a cluster may use, as a new checker of
    that type shows (the console's cluster dialog offers them)."""
    return {
        kind.value: {"type": kind.value, **CHECKER_FIELDS.get(kind, {})}
        for kind in HealthCheckerType
    }


def statuses_view(instances: Iterable[Instance]) -> dict[str, object]:
    """The `GET /instance/statuses` answer: `ip:port_healthy` per instance."""
    return {"ips": [f"{i.ip}:{i.port}_{'true' if i.healthy else 'false'}" for i in instances]}


def namespace_view(namespace: Namespace, *, public_as_blank: bool = True) -> dict[str, object]:
    """A console namespace; Nacos shows `public` with the id "" (and so does naraft)."""
    shown_id = namespace.namespace_id
    if public_as_blank and namespace.type == 0:
        shown_id = ""
    return {
        "namespace": shown_id,
        "namespaceShowName": namespace.show_name,
        "namespaceDesc": namespace.description or None,
        "quota": namespace.quota,
        "configCount": 0,
        "type": int(namespace.type),
    }


def subscriber_view(target: PushTarget) -> dict[str, object]:
    """One `/service/subscribers` entry (Nacos `Subscriber`)."""
    return {
        "addrStr": f"{target.client_ip}:{target.udp_port}",
        "agent": target.agent,
        "app": target.app,
        "ip": target.client_ip,
        "port": target.udp_port,
        "namespaceId": target.service.namespace_id,
        "serviceName": target.service.grouped_name,
        "cluster": target.clusters,
    }


def catalog_service_row(
    service: Service | None, key: ServiceKey, instances: Sequence[Instance]
) -> dict[str, object]:
    """One `serviceList[]` entry of `GET /catalog/services` (Nacos's ServiceView)."""
    clusters = {i.cluster_name for i in instances}
    if service is not None:
        clusters.update(service.clusters)
    healthy = sum(1 for i in instances if i.healthy)
    threshold = service.protect_threshold if service is not None else 0.0
    return {
        "name": key.service_name,
        "groupName": key.group_name,
        "clusterCount": len(clusters),
        "ipCount": len(instances),
        "healthyInstanceCount": healthy,
        "triggerFlag": "true" if instances and healthy / len(instances) <= threshold else "false",
    }


def catalog_instance_view(instance: Instance) -> dict[str, object]:
    """One `list[]` entry of `GET /catalog/instances` (Nacos's Instance JSON)."""
    return {
        "instanceId": instance.instance_id,
        "ip": instance.ip,
        "port": instance.port,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
        "clusterName": instance.cluster_name,
        "serviceName": instance.service.grouped_name,
        "metadata": sorted_metadata(instance.metadata),
    }


def catalog_detail_view(service: Service, instances: Sequence[Instance]) -> dict[str, object]:
    """`GET /catalog/service`: the service and its clusters (those with instances too)."""
    key = service.key
    names = sorted(set(service.clusters) | {i.cluster_name for i in instances})
    clusters = []
    for name in names:
        cluster = service.clusters.get(name) or Cluster(name=name)
        clusters.append(
            {
                "serviceName": key.grouped_name,
                "name": name,
                "healthChecker": checker_view(cluster),
                "metadata": sorted_metadata(cluster.metadata),
                "defaultCheckPort": cluster.check_port,
                "useIPPort4Check": cluster.use_instance_port,
            }
        )
    return {
        "service": {
            "name": key.service_name,
            "groupName": key.group_name,
            "protectThreshold": service.protect_threshold,
            "selector": selector_record(service.selector),
            "metadata": sorted_metadata(service.metadata),
        },
        "clusters": clusters,
    }


# Nacos 1.4 HealthCheckTask: a cluster's first check waits 2 s plus a random part.
FIRST_CHECK_DELAY_MS: Final = 2_000


def catalog_rt_view(service: Service, instances: Sequence[Instance]) -> dict[str, object]:
    """`GET /catalog/rt/service`: each cluster's health-check response times, as Nacos 1.4
    shows a cluster whose checks have not run yet (best `Long.MAX_VALUE`, worst 0, the
    normalized time its first check would wait): naraft runs no server-side checks."""
    names = sorted(set(service.clusters) | {i.cluster_name for i in instances})
    return {
        "clusters": [
            {
                "name": name,
                "checkRTBest": JAVA_LONG_MAX,
                "checkRTWorst": 0,
                "checkRTNormalized": FIRST_CHECK_DELAY_MS,
            }
            for name in names
        ]
    }


def catalog_detail_row(
    service: Service | None, key: ServiceKey, instances: Sequence[Instance]
) -> dict[str, object]:
    """One entry of `GET /catalog/services?withInstances=true` (Nacos's ServiceDetailInfo):
    the service with its instances by cluster."""
    clusters: dict[str, list[dict[str, object]]] = {}
    for name in sorted(service.clusters) if service is not None else ():
        clusters[name] = []
    for instance in instances:
        clusters.setdefault(instance.cluster_name, []).append(catalog_instance_view(instance))
    return {
        "serviceName": key.service_name,
        "groupName": key.group_name,
        "metadata": sorted_metadata(service.metadata) if service is not None else {},
        "clusterMap": {name: {"hosts": hosts} for name, hosts in sorted(clusters.items())},
    }


def metadata_updated_view(updated: Iterable[InstanceKey]) -> dict[str, object]:
    """Nacos's answer to a batch metadata change: each selected instance as its datum key
    (`ip:port:site:cluster`, the site always `unknown`), then its kind."""
    return {"updated": [_updated_entry(key) for key in updated]}


def _updated_entry(key: InstanceKey) -> str:
    kind = "ephemeral" if key.ephemeral else "persist"
    return f"{key.ip}:{key.port}:unknown:{key.cluster_name}:{kind}"
