"""The naming domain's values: Namespace, Selector, Cluster, Service, Instance (all frozen).

Times are never stored from a clock read on a replica: the only time a value carries
is `stamped_at_ms` from a command, which the leader stamped. An instance's last beat is
leader-side memory (`naraft.naming.health`), never part of the replicated value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from naraft.naming.keys import DEFAULT_CLUSTER, InstanceKey, ServiceKey, instance_id


class NamespaceType(enum.IntEnum):
    """Nacos console `type`: 0 is the global `public` namespace, 2 a custom one."""

    GLOBAL = 0
    CUSTOM = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    namespace_id: str
    show_name: str
    description: str = ""
    quota: int = 200  # Nacos's DEFAULT_QUOTA
    type: NamespaceType = NamespaceType.CUSTOM


class SelectorType(enum.StrEnum):
    NONE = "none"
    LABEL = "label"


@dataclass(frozen=True, slots=True)
class Selector:
    """A service's instance selector. Stored and shown; label selection is not applied yet."""

    type: SelectorType = SelectorType.NONE
    expression: str = ""


class HealthCheckerType(enum.StrEnum):
    TCP = "TCP"
    HTTP = "HTTP"
    MYSQL = "MYSQL"
    NONE = "NONE"


DEFAULT_CHECK_PORT: Final = 80  # Nacos's `Cluster.defCkport`
CHECKER_FIELDS: Final[Mapping[HealthCheckerType, Mapping[str, str | int | None]]] = {
    HealthCheckerType.HTTP: {"path": "", "headers": "", "expectedResponseCode": 200},
    HealthCheckerType.MYSQL: {"user": None, "pwd": None, "cmd": None},
}
"""The fields of each checker type beyond `type`, with what Nacos shows when one is unset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """A service's cluster. The health checker and ports are stored and shown (Nacos's
    `PUT /cluster`); naraft runs no server-side checks, but a checker of type NONE lets an
    operator set ephemeral instances' health by hand, as in Nacos. `checker_options` holds
    the checker's own fields: HTTP `path`, `headers`, `expectedResponseCode`; MYSQL `user`,
    `pwd`, `cmd`."""

    name: str
    health_checker_type: HealthCheckerType = HealthCheckerType.TCP
    metadata: Mapping[str, str] = field(default_factory=dict)
    check_port: int = DEFAULT_CHECK_PORT
    use_instance_port: bool = True
    checker_options: Mapping[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    key: ServiceKey
    protect_threshold: float = 0.0  # 0..1: below this healthy ratio, reads return everyone
    metadata: Mapping[str, str] = field(default_factory=dict)
    selector: Selector = field(default_factory=Selector)
    clusters: Mapping[str, Cluster] = field(default_factory=dict)  # by cluster name
    last_modified_ms: int = 0  # the stamp of the command that last changed it


MAX_OWNER_CHARS: Final = 256
"""Longest `Instance.owner` (a client connection's id) taken, anywhere it is parsed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """An instance as replicated. `owner` is the client connection (Nacos 2.x gRPC) that
    registered it, "" for one registered over HTTP (v1) or by a beat: a connection-bound
    ephemeral instance is released when its connection closes (`ReleaseOwner`). It is
    never shown in a v1 answer. Re-registering sets it to the registrant's (last writer
    wins)."""

    service: ServiceKey
    ip: str
    port: int
    cluster_name: str = DEFAULT_CLUSTER
    weight: float = 1.0  # 0..10000
    healthy: bool = True
    enabled: bool = True
    ephemeral: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    @property
    def key(self) -> InstanceKey:
        return InstanceKey(
            service=self.service,
            ephemeral=self.ephemeral,
            cluster_name=self.cluster_name,
            ip=self.ip,
            port=self.port,
        )

    @property
    def instance_id(self) -> str:
        """Nacos's default generator: `ip#port#cluster#group@@service`."""
        return instance_id(self.ip, self.port, self.cluster_name, self.service.grouped_name)


def instance_sort_key(instance: Instance) -> tuple[str, str, int, bool]:
    """The stable order of instances in a stored list and in every response."""
    return (instance.cluster_name, instance.ip, instance.port, instance.ephemeral)


@dataclass(frozen=True, slots=True, kw_only=True)
class PushTarget:
    """A client that asked for UDP pushes (`udpPort` > 0 on `/instance/list`)."""

    service: ServiceKey
    clusters: str
    client_ip: str
    udp_port: int
    agent: str
    app: str = "unknown"


@dataclass(frozen=True, slots=True)
class ClientAgent:
    """Who is calling, from `User-Agent` / `Client-Version` (Nacos `ClientInfo`).

    Java clients >= 1.0.0 (and the npm client, which claims to be one) get grouped
    service names in list answers and strict `PUT /instance` updates.
    """

    user_agent: str = ""

    @property
    def is_java_v1(self) -> bool:
        prefix = "Nacos-Java-Client:v"
        if not self.user_agent.startswith(prefix):
            return False
        major = self.user_agent[len(prefix) :].split(".", 1)[0]
        return major.isascii() and major.isdigit() and int(major) >= 1
