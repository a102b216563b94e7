"""`/nacos/v2/ns/client…`: Nacos 2.x's client views (its `ClientInfoControllerV2`) over the
2.x connections this node holds.

In Nacos 2.x a *client* is what registers and subscribes: a 2.x gRPC connection (its id is
the connection id) or, for 1.x HTTP clients, an `ip:port#ephemeral` address. naraft keeps
the same ids, and answers from what it has:

- `GET /client/list`: the ids of the 2.x connections held by the node asked. Nacos also
  lists the clients that other members hold (its Distro copies them); a naraft node knows
  another member's connections only through the instances they own, so ask each node.
- `GET /client?clientId=`: one connection's detail (`clientType` `connection`, `GRPC`, its
  app, client version, address), as Nacos shows one; 404 (`20004`) for an id this node
  does not hold.
- `GET /client/publish/list?clientId=`: the instances that connection registered;
  `/client/subscribe/list?clientId=`: the services it follows, with its app, client
  version and address.
- `GET /client/service/publisher/list?serviceName=…`: who registered each instance of one
  service, from the replicated registry, so the same on every node: the connection id of
  a 2.x connection (held by any node), or Nacos's `ip:port#ephemeral` for an instance
  registered over HTTP. `/client/service/subscriber/list`: this node's connections
  following the service. Both take `namespaceId`, `groupName`, `ephemeral` (default true)
  and narrow to `ip` and `port` when given; Nacos narrows by them even when they are
  absent, which leaves its lists empty unless both are sent.

Every route is read-only, and an operator's (`nacos/admin` in Nacos: admin in naraft).
Answers are Nacos's `Result`; errors come from the v2 table in `naraft.api.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from aiohttp import web

from naraft.api.errors import v2_result
from naraft.api.params import Params, read_params
from naraft.errors import InvalidArgumentError, NotFoundError
from naraft.grpc.connections import Connection, ConnectionTable
from naraft.naming import validate
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import Instance

CLIENT_PATH: Final = "/nacos/v2/ns/client"
MAX_CLIENT_ID_CHARS: Final = 256  # a connection id is `<boot ms>_<ip>_<port>`


class Subscriptions(Protocol):
    """What this node's 2.x connections follow (`naraft.grpc.naming.NamingRoutes`)."""

    def followed_by(self, connection_id: str) -> frozenset[tuple[ServiceKey, str]]: ...
    def followers_of(self, service: ServiceKey) -> tuple[str, ...]: ...


class Registry(Protocol):
    """The replicated instances (`naraft.naming.state.NamingState`)."""

    def instances(
        self, service: ServiceKey, *, ephemeral: bool | None = None
    ) -> tuple[Instance, ...]: ...


class Owned(Protocol):
    def keys_of(self, owner: str) -> frozenset[InstanceKey]: ...


def ip_port_client_id(ip: str, port: int, ephemeral: bool) -> str:
    """Nacos's id of a 1.x (HTTP) client: its address and the kind it registered."""
    return f"{ip}:{port}#{str(ephemeral).lower()}"


def connection_id_of(owner: str) -> str:
    """The connection id inside an instance's owner (`<node id>/<connection id>`)."""
    return owner.rpartition("/")[2]


class ClientViews:
    """The answers of the client routes, from this node's connections and the registry."""

    def __init__(
        self,
        connections: ConnectionTable,
        subscriptions: Subscriptions,
        owned: Owned,
        registry: Registry,
        *,
        now_ms: Callable[[], int],
    ) -> None:
        self._connections = connections
        self._subscriptions = subscriptions
        self._owned = owned
        self._registry = registry
        self._now_ms = now_ms

    def client_ids(self) -> list[str]:
        return sorted(connection.id for connection in self._connections)

    def _connection(self, client_id: str) -> Connection:
        connection = self._connections.get(client_id)
        if connection is None:
            raise NotFoundError("client", client_id, message=f"clientId [ {client_id} ] not exist")
        return connection

    def detail(self, client_id: str) -> dict[str, object]:
        connection = self._connection(client_id)
        idle_ms = int((time.monotonic() - connection.last_active) * 1000)
        return {
            "clientId": connection.id,
            "ephemeral": True,
            "lastUpdatedTime": self._now_ms() - max(0, idle_ms),
            "clientType": "connection",
            "connectType": "GRPC",
            "appName": connection.app,
            "version": connection.client_version,
            "clientIp": connection.client_ip,
            "clientPort": str(_transport_port(connection)),
        }

    def published(self, client_id: str) -> list[dict[str, object]]:
        connection = self._connection(client_id)
        keys = sorted(self._owned.keys_of(connection.owner), key=_key_order)
        return [
            {
                **_service_fields(key.service),
                "registeredInstance": {"ip": key.ip, "port": key.port, "cluster": key.cluster_name},
            }
            for key in keys
        ]

    def subscribed(self, client_id: str) -> list[dict[str, object]]:
        connection = self._connection(client_id)
        followed = {service for service, _ in self._subscriptions.followed_by(connection.id)}
        services = sorted(followed, key=_service_order)
        subscriber = {
            "app": connection.app,
            "agent": connection.client_version,
            "addr": f"{connection.client_ip}:{_transport_port(connection)}",
        }
        return [
            {**_service_fields(service), "subscriberInfo": dict(subscriber)} for service in services
        ]

    def publishers(
        self, service: ServiceKey, ephemeral: bool, ip: str | None, port: int | None
    ) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        for instance in self._registry.instances(service, ephemeral=ephemeral):
            if not _at(instance.ip, instance.port, ip, port):
                continue
            client_id = (
                connection_id_of(instance.owner)
                if instance.owner
                else ip_port_client_id(instance.ip, instance.port, instance.ephemeral)
            )
            found.append({"clientId": client_id, "ip": instance.ip, "port": instance.port})
        return found

    def subscribers(
        self, service: ServiceKey, ip: str | None, port: int | None
    ) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        for connection_id in self._subscriptions.followers_of(service):
            connection = self._connections.get(connection_id)
            if connection is None:
                continue
            client_port = _transport_port(connection)
            if not _at(connection.client_ip, client_port, ip, port):
                continue
            found.append(
                {"clientId": connection.id, "ip": connection.client_ip, "port": client_port}
            )
        return found


def _transport_port(connection: Connection) -> int:
    """The client's port, the last part of its connection id (`<boot ms>_<ip>_<port>`)."""
    tail = connection.id.rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


def _at(ip: str, port: int, wanted_ip: str | None, wanted_port: int | None) -> bool:
    """Whether an address is the one asked for (None: any)."""
    return wanted_ip in (None, ip) and wanted_port in (None, port)


def _service_fields(service: ServiceKey) -> dict[str, object]:
    return {
        "namespace": service.namespace_id,
        "group": service.group_name,
        "serviceName": service.service_name,
    }


def _service_order(service: ServiceKey) -> tuple[str, str, str]:
    return (service.namespace_id, service.group_name, service.service_name)


def _key_order(key: InstanceKey) -> tuple[str, str, str, str, str, int]:
    return (*_service_order(key.service), key.cluster_name, key.ip, key.port)


def client_id_param(params: Params) -> str:
    """`clientId`: required, at most `MAX_CLIENT_ID_CHARS` (whether it is held is the
    views' question)."""
    client_id = validate.required("client_id", params.get("clientId"))
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        raise InvalidArgumentError("client_id", f"is at most {MAX_CLIENT_ID_CHARS} characters")
    return client_id


def service_query_params(params: Params) -> tuple[ServiceKey, str | None, int | None]:
    """The service of the two service routes, and the `ip` and `port` to narrow to."""
    service = validate.service_key(
        params.get("namespaceId"), params.get("groupName"), params.get("serviceName")
    )
    raw_ip, raw_port = params.get("ip"), params.get("port")
    ip = None if raw_ip is None or not raw_ip.strip() else validate.ip(raw_ip)
    port = None if raw_port is None or not raw_port.strip() else validate.port(raw_port)
    return service, ip, port


def client_routes(views: ClientViews) -> Sequence[web.RouteDef]:
    """The six GET routes (see the module docstring)."""

    async def client_list(_request: web.Request) -> web.Response:
        return v2_result(views.client_ids())

    async def client_detail(request: web.Request) -> web.Response:
        return v2_result(views.detail(client_id_param(await read_params(request))))

    async def publish_list(request: web.Request) -> web.Response:
        return v2_result(views.published(client_id_param(await read_params(request))))

    async def subscribe_list(request: web.Request) -> web.Response:
        return v2_result(views.subscribed(client_id_param(await read_params(request))))

    async def publisher_list(request: web.Request) -> web.Response:
        params = await read_params(request)
        service, ip, port = service_query_params(params)
        ephemeral = validate.flag("ephemeral", params.get("ephemeral"), True)
        return v2_result(views.publishers(service, ephemeral, ip, port))

    async def subscriber_list(request: web.Request) -> web.Response:
        params = await read_params(request)
        service, ip, port = service_query_params(params)
        validate.flag("ephemeral", params.get("ephemeral"), True)  # Nacos's; all follow one
        return v2_result(views.subscribers(service, ip, port))

    return [
        web.get(CLIENT_PATH, client_detail),
        web.get(f"{CLIENT_PATH}/list", client_list),
        web.get(f"{CLIENT_PATH}/publish/list", publish_list),
        web.get(f"{CLIENT_PATH}/subscribe/list", subscribe_list),
        web.get(f"{CLIENT_PATH}/service/publisher/list", publisher_list),
        web.get(f"{CLIENT_PATH}/service/subscriber/list", subscriber_list),
    ]
