"""Read responses with Nacos 1.4.8's exact shapes: pure functions of model values.

Field order is fixed (the Python client diffs `str(host)` between polls, so host objects
must be stable: nothing per-request inside a host). See docs/nacos-compat.md#response-shapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import orjson

from naraft.naming.keys import ServiceKey
from naraft.naming.model import Instance, Namespace, PushTarget, Service
from naraft.naming.records import selector_record, sorted_metadata


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


def instance_list_view(
    key: ServiceKey,
    service: Service | None,
    instances: Sequence[Instance],
    *,
    clusters: str,
    cluster_filter: Sequence[str],
    healthy_only: bool,
    grouped_names: bool,
    cache_ms: int,
    now_ms: int,
) -> dict[str, object]:
    """The `GET /instance/list` answer, as Nacos's `doSrvIpxt`.

    - `cluster_filter` empty means all clusters; `clusters` is echoed verbatim.
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
    return {
        "name": key.grouped_name,
        "groupName": key.group_name,
        "clusters": clusters,
        "cacheMillis": cache_ms,
        "hosts": hosts,
        "lastRefTime": now_ms,
        "checksum": service_checksum(service, selected),
        "allIPs": False,
        "reachProtectThreshold": reach_threshold,
        "valid": True,
        "dom": key.grouped_name if grouped_names else key.service_name,
        "env": "",
        "useSpecifiedURL": False,
        "metadata": {} if service is None else sorted_metadata(service.metadata),
    }


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
                "healthChecker": {"type": cluster.health_checker_type.value},
                "metadata": sorted_metadata(cluster.metadata),
            }
            for cluster in (service.clusters[name] for name in sorted(service.clusters))
        ],
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
        cluster = service.clusters.get(name)
        clusters.append(
            {
                "serviceName": key.grouped_name,
                "name": name,
                "healthChecker": {
                    "type": cluster.health_checker_type.value if cluster is not None else "TCP"
                },
                "metadata": sorted_metadata(cluster.metadata) if cluster is not None else {},
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
