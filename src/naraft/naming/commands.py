"""Naming commands: frozen values proposed to the log and applied by `NamingState`.

Every command carries `stamped_at_ms`, the leader's clock when it was proposed, so that
every replica applies the same time. Commands are imperative (`RegisterInstance`); what
applying them did is an `Applied` or a `Rejected` (`naraft.naming.state`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import Cluster, Instance, Selector


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateNamespace:
    namespace_id: str
    show_name: str
    description: str = ""
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateNamespace:
    namespace_id: str
    show_name: str
    description: str = ""
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteNamespace:
    namespace_id: str
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateService:
    service: ServiceKey
    protect_threshold: float = 0.0
    metadata: Mapping[str, str] = field(default_factory=dict)
    selector: Selector = field(default_factory=Selector)
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateService:
    """Replace threshold, metadata and selector (Nacos `PUT /service`); clusters stay."""

    service: ServiceKey
    protect_threshold: float
    metadata: Mapping[str, str] = field(default_factory=dict)
    selector: Selector = field(default_factory=Selector)
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteService:
    """Remove the service and both its instance lists (Nacos 1.4.8 does not check emptiness)."""

    service: ServiceKey
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterInstance:
    """Upsert: replace the record with this identity, keeping a present record's `healthy`.
    Creates the service and the instance's cluster when missing."""

    instance: Instance
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateInstance:
    """Like RegisterInstance, but rejected when no record has this identity."""

    instance: Instance
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchInstance:
    """Change only the given fields of an existing instance (Nacos `PATCH /instance`)."""

    key: InstanceKey
    weight: float | None = None
    metadata: Mapping[str, str] | None = None
    enabled: bool | None = None
    healthy: bool | None = None
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeregisterInstance:
    key: InstanceKey
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetInstanceHealth:
    """Set `healthy` on each instance in the batch; instances gone meanwhile are skipped."""

    changes: tuple[tuple[InstanceKey, bool], ...]
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveInstances:
    """Remove each instance in the batch (beat expiry); instances gone already are skipped."""

    keys: tuple[InstanceKey, ...]
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseOwner:
    """A client connection closed: remove each listed ephemeral instance whose owner is
    still `owner`. One re-registered meanwhile under another owner (the client moved to
    another node before its old connection closed) stays; persistent instances and
    instances gone already are skipped."""

    owner: str
    keys: tuple[InstanceKey, ...]
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSwitches:
    """Set one switch entry (Nacos `PUT /operator/switches?entry=&value=`)."""

    entry: str
    value: str
    stamped_at_ms: int


class MetadataAction(enum.StrEnum):
    """What a batch metadata change does to each instance it selects."""

    MERGE = "merge"  # Nacos's `PUT`: a key given replaces the present one or is added
    REMOVE = "remove"  # Nacos's `DELETE`: the keys given go; their values are ignored


class MetadataScope(enum.StrEnum):
    """Which instances of its service a batch metadata change selects (when applied)."""

    EPHEMERAL = "ephemeral"  # every ephemeral instance
    PERSISTENT = "persist"  # every persistent instance
    LISTED = "listed"  # those of `targets` that exist


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataTarget:
    """One instance a batch lists, named within the batch's service."""

    ephemeral: bool
    cluster_name: str
    ip: str
    port: int

    def key(self, service: ServiceKey) -> InstanceKey:
        return InstanceKey(
            service=service,
            ephemeral=self.ephemeral,
            cluster_name=self.cluster_name,
            ip=self.ip,
            port=self.port,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateMetadata:
    """Nacos's batch metadata change (`PUT`/`DELETE /instance/metadata/batch`): `action`
    with `metadata` on each instance of `service` that `scope` selects. The selection is
    made when the entry is applied, from the replicated state, so every replica changes
    the same instances. All or nothing: rejected when the metadata of any selected
    instance would break the bounds a registration keeps."""

    service: ServiceKey
    action: MetadataAction
    scope: MetadataScope
    targets: tuple[MetadataTarget, ...] = ()  # only with scope LISTED
    metadata: Mapping[str, str]
    stamped_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateCluster:
    """Nacos's `PUT /cluster`: replace cluster `cluster.name` of `service` (created when
    missing) with `cluster`. Rejected when the service does not exist."""

    service: ServiceKey
    cluster: Cluster
    stamped_at_ms: int


Command = (
    CreateNamespace
    | UpdateNamespace
    | DeleteNamespace
    | CreateService
    | UpdateService
    | DeleteService
    | RegisterInstance
    | UpdateInstance
    | PatchInstance
    | DeregisterInstance
    | SetInstanceHealth
    | RemoveInstances
    | ReleaseOwner
    | UpdateSwitches
    | UpdateMetadata
    | UpdateCluster
)
