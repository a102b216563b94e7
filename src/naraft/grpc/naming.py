"""Naming over gRPC: the 2.x request types on `NamingService`, connection-bound
ephemeral instances, and `NotifySubscriberRequest` pushes.

- `InstanceRequest` registers or deregisters an ephemeral instance owned by the calling
  connection (`Instance.owner`): the node holding the connection beats it to the leader
  for as long as the connection lives (`naraft.naming.owned`), and releases it when the
  connection closes. `PersistentInstanceRequest` is the persistent kind: no owner, no
  beats. `BatchInstanceRequest` makes the given list the connection's instances of that
  service: the ones it owned before and left out are released.
- `ServiceQueryRequest`, `ServiceListRequest` and `SubscribeServiceRequest` read this
  node's applied state, as the v1 reads do.
- A subscription lives on the connection: after every applied change of a followed
  service, the connection gets the service's whole instance list for the clusters it
  asked for. A push in flight for the same (connection, service, clusters) is not
  doubled: one more is sent after it, with the state of then.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol

import orjson

from naraft.errors import InvalidArgumentError, UnavailableError
from naraft.grpc.connections import Connection, ConnectionTable, PushSlots
from naraft.grpc.errors import ok
from naraft.grpc.server import Access, Call, GrpcServer, Route
from naraft.naming import validate
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import ClientAgent
from naraft.naming.service import NamingService
from naraft.naming.validate import RawInstance

logger = logging.getLogger(__name__)

REGISTER: Final = "registerInstance"
DEREGISTER: Final = "deregisterInstance"
BATCH_REGISTER: Final = "batchRegisterInstance"
MAX_BATCH: Final = 1000  # instances in one BatchInstanceRequest
MAX_SUBSCRIPTIONS: Final = 10_000  # per connection
# 2.x clients read grouped service names in hosts, as Java 1.x+ clients do
_AGENT: Final = ClientAgent("Nacos-Java-Client:v2.0.0")

READ: Final = Access("naming", "r")
WRITE: Final = Access("naming", "w")


class Owned(Protocol):
    """This node's connection-owned instances (naraft.naming.owned.OwnedInstances)."""

    def add(self, owner: str, key: InstanceKey) -> None: ...
    def discard(self, owner: str, key: InstanceKey) -> None: ...
    def keys_of(self, owner: str) -> frozenset[InstanceKey]: ...
    def close(self, owner: str) -> frozenset[InstanceKey]: ...


class Feed(Protocol):
    def subscribe_all(self, listener: Any) -> Any: ...


def _text(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise InvalidArgumentError(name, "must be a string or a number")


def raw_instance(body: Mapping[str, Any], instance: object, *, ephemeral: bool) -> RawInstance:
    """The v1 form of a 2.x instance object, for the one validator."""
    if not isinstance(instance, dict):
        raise InvalidArgumentError("instance", "is required (an object)")
    metadata = instance.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidArgumentError("metadata", "must be an object")
    return RawInstance(
        namespace_id=_text(body.get("namespace"), "namespace"),
        group_name=_text(body.get("groupName"), "groupName"),
        service_name=_text(body.get("serviceName"), "serviceName"),
        cluster_name=_text(instance.get("clusterName"), "clusterName"),
        ip=_text(instance.get("ip"), "ip"),
        port=_text(instance.get("port"), "port"),
        weight=_text(instance.get("weight"), "weight"),
        enabled=_text(instance.get("enabled"), "enabled"),
        healthy=_text(instance.get("healthy"), "healthy"),
        ephemeral="true" if ephemeral else "false",
        metadata=None if metadata is None else orjson.dumps(metadata).decode(),
    )


class NamingRoutes:
    """The naming request types of one node; see the module docstring."""

    def __init__(
        self,
        naming: NamingService,
        owned: Owned,
        server: GrpcServer,
        *,
        push_timeout_seconds: float = 3.0,
    ) -> None:
        self._naming = naming
        self._owned = owned
        self._server = server
        self._push_timeout = push_timeout_seconds
        # service -> connection id -> the clusters strings it follows
        self._subscribers: dict[ServiceKey, dict[str, set[str]]] = {}
        self._followed: dict[str, set[tuple[ServiceKey, str]]] = {}  # by connection id
        self._pushes = PushSlots[tuple[str, ServiceKey, str]](self._push, what="naming")
        # the pushed view of a service by clusters string, shared by all its subscribers
        # until the service changes again
        self._views: dict[ServiceKey, dict[str, bytes]] = {}  # encoded push bodies

    def routes(self) -> list[Route]:
        return [
            Route(
                kind="InstanceRequest",
                response="InstanceResponse",
                access=WRITE,
                write=self._instance,
                after=self._own,
            ),
            Route(
                kind="PersistentInstanceRequest",
                response="InstanceResponse",
                access=WRITE,
                write=self._persistent,
            ),
            Route(
                kind="BatchInstanceRequest",
                response="BatchInstanceResponse",
                access=WRITE,
                write=self._batch,
                after=self._own_batch,
            ),
            Route(
                kind="ServiceQueryRequest",
                response="QueryServiceResponse",
                access=READ,
                handle=self._query,
            ),
            Route(
                kind="ServiceListRequest",
                response="ServiceListResponse",
                access=READ,
                handle=self._list,
            ),
            Route(
                kind="SubscribeServiceRequest",
                response="SubscribeServiceResponse",
                access=READ,
                handle=self._subscribe,
            ),
            Route(
                kind="ReleaseConnectionRequest",
                response="ReleaseConnectionResponse",
                write=self._release,
                internal=True,
            ),
        ]

    def attach(self, connections: ConnectionTable, feed: Feed) -> None:
        """Hear connection closes (release what they owned) and applied changes (push)."""
        connections.on_close(self._closed)
        feed.subscribe_all(self._changed)
        self._server.add_counts(lambda: {"subscriptions": self.subscriptions})

    @property
    def subscriptions(self) -> int:
        return sum(len(v) for v in self._followed.values())

    def followed_by(self, connection_id: str) -> frozenset[tuple[ServiceKey, str]]:
        """The (service, clusters) a connection of this node follows."""
        return frozenset(self._followed.get(connection_id, ()))

    def followers_of(self, service: ServiceKey) -> tuple[str, ...]:
        """This node's connections following `service` (any clusters), by id."""
        return tuple(
            sorted(c for c, clusters in self._subscribers.get(service, {}).items() if clusters)
        )

    # ---------------------------------------------------------------- writes

    async def _instance(self, call: Call) -> dict[str, Any]:
        kind = call.text("type", limit=64)
        instance = call.body.get("instance")
        flag = instance.get("ephemeral") if isinstance(instance, dict) else None
        if flag is not None and flag is not True and flag != "true":  # as Jackson reads it
            raise InvalidArgumentError(
                "instance.ephemeral",
                "must be true: InstanceRequest is for ephemeral instances "
                "(persistent ones use PersistentInstanceRequest)",
            )
        raw = raw_instance(call.body, instance, ephemeral=True)
        if kind == REGISTER:
            await self._naming.register_instance(raw, owner=call.client.owner)
        elif kind == DEREGISTER:
            await self._naming.deregister_instance(raw)
        else:
            raise InvalidArgumentError("type", f"must be {REGISTER} or {DEREGISTER}")
        return ok(type=kind)

    async def _persistent(self, call: Call) -> dict[str, Any]:
        kind = call.text("type", limit=64)
        raw = raw_instance(call.body, call.body.get("instance"), ephemeral=False)
        if kind == REGISTER:
            await self._naming.register_instance(raw)
        elif kind == DEREGISTER:
            await self._naming.deregister_instance(raw)
        else:
            raise InvalidArgumentError("type", f"must be {REGISTER} or {DEREGISTER}")
        return ok(type=kind)

    async def _batch(self, call: Call) -> dict[str, Any]:
        kind = call.text("type", limit=64)
        if kind != BATCH_REGISTER:
            raise InvalidArgumentError("type", f"must be {BATCH_REGISTER}")
        items = call.body.get("instances")
        if not isinstance(items, list):
            raise InvalidArgumentError("instances", "must be a list")
        if len(items) > MAX_BATCH:
            raise InvalidArgumentError("instances", f"must hold at most {MAX_BATCH}")
        raws = [raw_instance(call.body, item, ephemeral=True) for item in items]
        keys = [validate.instance_key(raw) for raw in raws]  # all valid before any write
        service = validate.service_key(
            _text(call.body.get("namespace"), "namespace"),
            _text(call.body.get("groupName"), "groupName"),
            _text(call.body.get("serviceName"), "serviceName"),
        )
        for raw in raws:
            await self._naming.register_instance(raw, owner=call.client.owner)
        kept = set(keys)
        stale = [
            instance.key
            for instance in self._naming.state.instances(service)
            if instance.ephemeral
            and instance.owner == call.client.owner
            and instance.key not in kept
        ]
        if stale:
            await self._naming.release_owner(call.client.owner, tuple(stale))
        return ok(type=kind)

    async def _release(self, call: Call) -> dict[str, Any]:
        """Internal: a member's connection closed; remove what it still owns."""
        keys = call.body.get("keys")
        if not isinstance(keys, list):
            raise InvalidArgumentError("keys", "must be a list")
        decoded = tuple(_decode_key(row) for row in keys[:100_000])
        if decoded:
            await self._naming.release_owner(call.client.owner, decoded)
        return ok()

    # ---------------------------------------------------- this node's effects

    async def _own(self, call: Call, answer: dict[str, Any]) -> None:
        del answer
        raw = raw_instance(call.body, call.body.get("instance"), ephemeral=True)
        key = validate.instance_key(raw)
        if call.text("type", limit=64) == REGISTER:
            self._owned.add(call.client.owner, key)
            await self._release_if_closed(call)
        else:
            self._owned.discard(call.client.owner, key)

    async def _release_if_closed(self, call: Call) -> None:
        """A connection that closed while its registration was being committed has been
        released already: release what it now owns too, or it would be beaten forever."""
        client = call.client
        if isinstance(client, Connection) and client.closed.is_set():
            await self._closed(client)

    async def _own_batch(self, call: Call, answer: dict[str, Any]) -> None:
        del answer
        items = call.body.get("instances")
        keys = {
            validate.instance_key(raw_instance(call.body, item, ephemeral=True))
            for item in (items if isinstance(items, list) else ())
        }
        services = {key.service for key in keys}
        service = validate.service_key(
            _text(call.body.get("namespace"), "namespace"),
            _text(call.body.get("groupName"), "groupName"),
            _text(call.body.get("serviceName"), "serviceName"),
        )
        services.add(service)
        for key in self._owned.keys_of(call.client.owner):
            if key.service in services and key not in keys:
                self._owned.discard(call.client.owner, key)
        for key in keys:
            self._owned.add(call.client.owner, key)
        await self._release_if_closed(call)

    async def _closed(self, connection: Connection) -> None:
        """A connection went away: forget its subscriptions, release its instances."""
        for service, clusters in self._followed.pop(connection.id, set()):
            by_connection = self._subscribers.get(service)
            if by_connection is not None:
                by_connection.pop(connection.id, None)
                if not by_connection:
                    del self._subscribers[service]
                    self._views.pop(service, None)
            del clusters
        keys = self._owned.close(connection.owner)
        if not keys:
            return
        route = self._server.route("ReleaseConnectionRequest")
        assert route is not None
        body = {"keys": [_encode_key(k) for k in sorted(keys, key=_sort_key)]}
        answer = await self._server.serve(route, body, {}, connection, "")
        del answer  # a release that failed leaves them to the leader's beat timeout
        logger.info("connection %s closed; released %d instances", connection.id, len(keys))

    # ----------------------------------------------------------------- reads

    def service_info(self, body: Mapping[str, Any], clusters_field: str) -> dict[str, Any]:
        clusters = _text(body.get(clusters_field), clusters_field) or ""
        healthy_only = body.get("healthOnly")
        view = self._naming.list_instances(
            namespace_id=_text(body.get("namespace"), "namespace"),
            group_name=_text(body.get("groupName"), "groupName"),
            service_name=_text(body.get("serviceName"), "serviceName"),
            clusters=clusters,
            healthy_only="true" if healthy_only is True else "false",
            client=_AGENT,
            encoded_hosts=True,  # every answer and push is encoded by orjson
        )
        return _service_info(view, body)

    async def _query(self, call: Call) -> dict[str, Any]:
        return ok(serviceInfo=self.service_info(call.body, "cluster"))

    async def _list(self, call: Call) -> dict[str, Any]:
        page = self._naming.list_services(
            namespace_id=_text(call.body.get("namespace"), "namespace"),
            group_name=_text(call.body.get("groupName"), "groupName"),
            page_no=_text(call.body.get("pageNo"), "pageNo"),
            page_size=_text(call.body.get("pageSize"), "pageSize"),
        )
        return ok(count=page["count"], serviceNames=page["doms"])

    async def _subscribe(self, call: Call) -> dict[str, Any]:
        info = self.service_info(call.body, "clusters")
        service = validate.service_key(
            _text(call.body.get("namespace"), "namespace"),
            _text(call.body.get("groupName"), "groupName"),
            _text(call.body.get("serviceName"), "serviceName"),
        )
        clusters = _text(call.body.get("clusters"), "clusters") or ""
        connection_id = call.client.id
        followed = self._followed.setdefault(connection_id, set())
        if call.body.get("subscribe") is False:
            followed.discard((service, clusters))
            by_connection = self._subscribers.get(service, {})
            by_connection.get(connection_id, set()).discard(clusters)
        else:
            if (service, clusters) not in followed and len(followed) >= MAX_SUBSCRIPTIONS:
                raise InvalidArgumentError(
                    "serviceName", f"a connection may follow at most {MAX_SUBSCRIPTIONS}"
                )
            followed.add((service, clusters))
            self._subscribers.setdefault(service, {}).setdefault(connection_id, set()).add(clusters)
        return ok(serviceInfo=info)

    # ----------------------------------------------------------------- pushes

    def _changed(self, service: ServiceKey) -> None:
        """The feed's listener (runs inside apply: only schedules)."""
        self._views.pop(service, None)
        for connection_id, clusters_set in self._subscribers.get(service, {}).items():
            for clusters in clusters_set:
                self._pushes.request((connection_id, service, clusters))

    async def _push(self, slot: tuple[str, ServiceKey, str]) -> bool:
        """Push the service's view for the clusters; False once the connection is gone."""
        connection_id, service, clusters = slot
        connection = self._server.connections.get(connection_id)
        if connection is None:
            return False
        views = self._views.setdefault(service, {})
        encoded = views.get(clusters)
        if encoded is None:
            body = {
                "namespace": service.namespace_id,
                "groupName": service.group_name,
                "serviceName": service.service_name,
                "clusters": clusters,
            }
            info = self.service_info(body, "clusters")
            encoded = views[clusters] = orjson.dumps(
                {**body, "module": "naming", "serviceInfo": info}
            )
        try:
            await connection.push(
                "NotifySubscriberRequest", encoded, timeout_seconds=self._push_timeout
            )
        except UnavailableError:
            return False  # the connection closed: its client subscribes again
        return True


def _service_info(view: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 list answer in the 2.x `ServiceInfo` shape: the bare name beside the group."""
    service_name = view["dom"] if isinstance(view.get("dom"), str) else ""
    if "@@" in service_name:
        service_name = service_name.split("@@", 1)[1]
    return {
        "name": service_name or str(body.get("serviceName") or ""),
        "groupName": view["groupName"],
        "clusters": view["clusters"],
        "cacheMillis": view["cacheMillis"],
        "hosts": view["hosts"],
        "lastRefTime": view["lastRefTime"],
        "checksum": view["checksum"],
        "allIPs": False,
        "reachProtectionThreshold": view["reachProtectThreshold"],
        "valid": True,
    }


def _encode_key(key: InstanceKey) -> list[object]:
    s = key.service
    return [s.namespace_id, s.group_name, s.service_name, key.cluster_name, key.ip, key.port]


def _decode_key(row: object) -> InstanceKey:
    match row:
        case [str(ns), str(group), str(name), str(cluster), str(ip), int(port)] if (
            not isinstance(port, bool) and 0 <= port <= 65_535
        ):
            service = ServiceKey(namespace_id=ns, group_name=group, service_name=name)
            return InstanceKey(
                service=service, ephemeral=True, cluster_name=cluster, ip=ip, port=port
            )
    raise InvalidArgumentError("keys", "each key is [ns, group, service, cluster, ip, port]")


def _sort_key(key: InstanceKey) -> tuple[str, str, str, str, str, int]:
    s = key.service
    return (s.namespace_id, s.group_name, s.service_name, key.cluster_name, key.ip, key.port)
