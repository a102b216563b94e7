"""NamingService: the Nacos operations, as validate → stamp → propose → await apply; reads.

Writes are validated (raising InvalidArgumentError before anything enters the log),
stamped with the injected clock, encoded, and proposed; the result of applying the entry
comes back from the proposer, and a `Rejected` becomes the matching error. Reads come
straight from the node's applied `NamingState` (possibly stale by one heartbeat, as in
Nacos); `read_barrier` makes the next read linearizable.

The ports it needs are Protocols defined here, by their consumer
(docs/conventions.md#ports-belong-to-their-consumer).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Final, Protocol

from naraft.errors import (
    AlreadyExistsError,
    CommandRejectedError,
    InvalidArgumentError,
    MissingTargetError,
    NotFoundError,
    QuotaExceededError,
)
from naraft.naming import validate
from naraft.naming.codec import encode_command
from naraft.naming.commands import (
    Command,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    DeregisterInstance,
    MetadataAction,
    MetadataScope,
    PatchInstance,
    RegisterInstance,
    ReleaseOwner,
    RemoveInstances,
    SetInstanceHealth,
    UpdateCluster,
    UpdateInstance,
    UpdateMetadata,
    UpdateNamespace,
    UpdateService,
    UpdateSwitches,
)
from naraft.naming.health import beat_interval_ms
from naraft.naming.keys import (
    DEFAULT_NAMESPACE_ID,
    NAMESPACE_SEPARATOR,
    InstanceKey,
    ServiceKey,
)
from naraft.naming.model import (
    MAX_OWNER_CHARS,
    ClientAgent,
    Cluster,
    HealthCheckerType,
    Instance,
    PushTarget,
    Service,
)
from naraft.naming.state import Applied, MetadataUpdated, NamingState, Rejected, RejectReason
from naraft.naming.switches import switches_view, with_entry
from naraft.naming.validate import RawCluster, RawInstance, RawMetadataBatch, RawService
from naraft.naming.views import (
    ListCache,
    catalog_detail_row,
    catalog_detail_view,
    catalog_instance_view,
    catalog_rt_view,
    catalog_service_row,
    instance_detail_view,
    instance_list_view,
    listed_hosts,
    metadata_updated_view,
    namespace_view,
    service_view,
    statuses_view,
    subscriber_view,
)
from naraft.state.rejections import EntryRejected, RejectionKind

BEAT_OK = 10200  # Nacos NamingResponseCode.OK
BEAT_NOT_FOUND = 20404  # Nacos NamingResponseCode.RESOURCE_NOT_FOUND


class Clock(Protocol):
    """Wall-clock milliseconds, used only to stamp commands and `lastRefTime`."""

    def now_ms(self) -> int: ...


class Proposer(Protocol):
    """The replica, as the naming service sees it."""

    async def propose(self, command: bytes) -> object:
        """Commit `command` and return what the state machine's apply returned for it.
        Raises UnavailableError (or a subclass) when it cannot be committed."""
        ...

    async def read_barrier(self) -> None:
        """Return once this node has applied everything committed when it was called."""
        ...

    async def local_read_point(self) -> None:
        """Return once this node has applied the commits it has heard of (bounded)."""
        ...


class BeatSink(Protocol):
    """Where client beats go: the leader's BeatTable (a follower forwards them)."""

    async def record_beat(self, key: InstanceKey, beat_at_ms: int) -> None: ...


class WriteGuard(Protocol):
    """The state quota, as the naming service sees it."""

    def quota_refusal(self) -> str | None:
        """Why writes are refused before proposing (the quota alarm is up), or None."""
        ...


class CommandGate(Protocol):
    """The cluster's record of the peer protocol every member speaks, as the naming service
    sees it: a command a newer build adds goes to the log only once every member can
    decode it (`naraft.upgrade`)."""

    async def require(self, version: int, what: str) -> None:
        """Return once every member speaks peer protocol `version`; raise
        UpgradeUnfinishedError (naraft.errors) naming the members that do not."""
        ...


UPDATE_METADATA_SINCE: Final = 3  # the peer protocol version that brought `update_metadata`
UPDATE_CLUSTER_SINCE: Final = 4  # and `update_cluster`

# Commands that never grow the state (or that keep health right): always proposed, even
# while the quota alarm is up, as etcd takes deletes under its NOSPACE alarm.
_FREEING: tuple[type[Command], ...] = (
    DeleteNamespace,
    DeleteService,
    DeregisterInstance,
    RemoveInstances,
    ReleaseOwner,
    SetInstanceHealth,
)


def _frees(command: Command) -> bool:
    """Whether `command` never grows the state: a `_FREEING` one, or a batch that only
    removes metadata keys."""
    if isinstance(command, UpdateMetadata):
        return command.action is MetadataAction.REMOVE
    return isinstance(command, _FREEING)


MAX_RELEASE_KEYS: Final = 1000
"""Instances one ReleaseOwner entry names (about 200 KiB); a connection holding more
is released in several entries."""


def _owner(owner: str) -> str:
    """A connection id as `Instance.owner` and `ReleaseOwner` take it."""
    if not 0 < len(owner) <= MAX_OWNER_CHARS:
        raise InvalidArgumentError("owner", f"must be 1..{MAX_OWNER_CHARS} characters")
    return owner


def _entry_rejected_error(rejected: EntryRejected) -> Exception:
    """Every replica rejected the committed entry on apply; nothing changed."""
    if rejected.kind is RejectionKind.QUOTA:
        return QuotaExceededError(f"state quota exceeded: {rejected.detail}")
    return CommandRejectedError(
        f"the command committed at index {rejected.index} but was rejected on apply "
        f"(nothing changed): {rejected.detail}"
    )


class PushRegistry(Protocol):
    """Clients that asked for UDP pushes."""

    def add_target(self, target: PushTarget, now_ms: int) -> bool:
        """Record (or refresh) a target; True if pushes will actually be sent to it."""
        ...

    def targets(self, service: ServiceKey, now_ms: int) -> Sequence[PushTarget]: ...


def _rejected_error(rejected: Rejected, command: Command) -> Exception:
    """The error a client sees for a refusal, with Nacos 1.4.8's messages."""
    detail = rejected.detail
    match rejected.reason:
        case RejectReason.NAMESPACE_EXISTS:
            return AlreadyExistsError("namespace_id", f"{detail} already exists")
        case RejectReason.NAMESPACE_NOT_FOUND:
            return NotFoundError("namespace", detail)
        case RejectReason.NAMESPACE_RESERVED:
            return InvalidArgumentError("namespace_id", f"{detail} cannot be changed")
        case RejectReason.SERVICE_EXISTS:
            return AlreadyExistsError(
                "service_name",
                "must not exist already",
                message=f"specified service already exists, serviceName : {detail}",
            )
        case RejectReason.SERVICE_NOT_FOUND:
            return MissingTargetError(
                "service_name",
                "must name an existing service",
                message=f"specified service not exist, serviceName : {detail}",
            )
        case RejectReason.INSTANCE_NOT_FOUND:
            return MissingTargetError(
                "ip", "must name an existing instance", message=f"instance not exist: {detail}"
            )
        case RejectReason.INVALID_SWITCH:
            return InvalidArgumentError("value", detail)
        case RejectReason.METADATA_BOUNDS:
            return InvalidArgumentError("metadata", f"{detail}; nothing changed")
        case RejectReason.UNDECODABLE:
            return RuntimeError(f"own command {type(command).__name__} undecodable: {detail}")


class NamingService:
    """Nacos naming operations over one node's state and its proposer."""

    def __init__(
        self,
        state: NamingState,
        proposer: Proposer,
        clock: Clock,
        beats: BeatSink,
        push: PushRegistry,
        *,
        new_namespace_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        guard: WriteGuard | None = None,
        gate: CommandGate | None = None,
    ) -> None:
        """`gate` None (unit tests, tools) proposes newer commands unchecked."""
        self._state = state
        self._proposer = proposer
        self._clock = clock
        self._beats = beats
        self._push = push
        self._new_namespace_id = new_namespace_id
        self._guard = guard
        self._gate = gate
        self._lists = ListCache()

    @property
    def state(self) -> NamingState:
        return self._state

    async def read_barrier(self) -> None:
        await self._proposer.read_barrier()

    async def local_read_point(self) -> None:
        await self._proposer.local_read_point()

    async def _propose(
        self, command: Command, *, tolerate: frozenset[RejectReason] = frozenset()
    ) -> Applied | Rejected:
        """Propose `command`; a refusal raises its error unless its reason is tolerated."""
        if self._guard is not None and not _frees(command):
            refusal = self._guard.quota_refusal()
            if refusal is not None:
                raise QuotaExceededError(refusal)
        result = await self._proposer.propose(encode_command(command))
        if isinstance(result, EntryRejected):
            raise _entry_rejected_error(result)
        if isinstance(result, Rejected):
            if result.reason in tolerate:
                return result
            raise _rejected_error(result, command)
        if not isinstance(result, Applied):
            raise TypeError(f"apply returned {type(result).__name__}, not Applied or Rejected")
        return result

    # ------------------------------------------------------------- instances

    def _parse_instance(self, raw: RawInstance) -> Instance:
        default_ephemeral = self._state.switches().default_instance_ephemeral
        return validate.instance(raw, default_ephemeral=default_ephemeral)

    async def register_instance(self, raw: RawInstance, owner: str = "") -> InstanceKey:
        """`POST /instance`: an upsert (keeps a present record's `healthy`); the key of the
        instance registered.

        `owner` is the registering client connection (Nacos 2.x gRPC), "" over HTTP (v1).
        It replaces the present record's owner either way (last writer wins), and binds
        only ephemeral instances: a persistent one is stored without an owner. The caller
        tracks a bound instance in its node's `OwnedInstances` and calls `release_owner`
        when the connection closes."""
        instance = self._parse_instance(raw)
        if owner:
            instance = replace(instance, owner=_owner(owner) if instance.ephemeral else "")
        if self._state.switches().disable_add_ip:
            raise InvalidArgumentError("ip", "adding instances is disabled (switch disableAddIP)")
        now_ms = self._clock.now_ms()
        await self._propose(RegisterInstance(instance=instance, stamped_at_ms=now_ms))
        if instance.ephemeral:
            await self._beats.record_beat(instance.key, now_ms)
        return instance.key

    async def release_owner(self, owner: str, keys: Iterable[InstanceKey]) -> None:
        """A client connection closed: remove those of `keys` (its ephemeral instances)
        that it still owns, cluster-wide, in one entry per MAX_RELEASE_KEYS. An instance
        re-registered meanwhile by another connection stays. Proposed also while the
        quota alarm is up (it only frees)."""
        owner = _owner(owner)
        batch = tuple(dict.fromkeys(k for k in keys if k.ephemeral))
        for start in range(0, len(batch), MAX_RELEASE_KEYS):
            chunk = batch[start : start + MAX_RELEASE_KEYS]
            command = ReleaseOwner(owner=owner, keys=chunk, stamped_at_ms=self._clock.now_ms())
            await self._propose(command)

    async def update_instance(
        self, raw: RawInstance, client: ClientAgent, *, strict: bool | None = None
    ) -> None:
        """`PUT /instance`: strict for Java clients >= 1.0, an upsert for everyone else;
        `strict` decides instead when given (the 2.x API is always strict)."""
        if not (client.is_java_v1 if strict is None else strict):
            await self.register_instance(raw)
            return
        instance = self._parse_instance(raw)
        await self._propose(UpdateInstance(instance=instance, stamped_at_ms=self._clock.now_ms()))

    async def patch_instance(self, raw: RawInstance) -> None:
        """`PATCH /instance`: change only the fields sent; 400 if there is no such instance."""
        ephemeral = validate.optional_flag("ephemeral", raw.ephemeral)
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        cluster_name = validate.cluster_name(raw.cluster_name)
        ip, port = validate.ip(raw.ip), validate.port(raw.port)
        weight = (
            None if raw.weight is None or not raw.weight.strip() else validate.weight(raw.weight)
        )
        metadata = None if raw.metadata is None else validate.metadata(raw.metadata)
        enabled = validate.optional_flag("enabled", raw.enabled)
        healthy = validate.optional_flag("healthy", raw.healthy)
        if ephemeral is None:
            found = self._state.find_instance(service, cluster_name=cluster_name, ip=ip, port=port)
            ephemeral = found.ephemeral if found is not None else True
        key = InstanceKey(
            service=service, ephemeral=ephemeral, cluster_name=cluster_name, ip=ip, port=port
        )
        await self._propose(
            PatchInstance(
                key=key,
                weight=weight,
                metadata=metadata,
                enabled=enabled,
                healthy=healthy,
                stamped_at_ms=self._clock.now_ms(),
            )
        )

    async def update_metadata(
        self, raw: RawMetadataBatch, action: MetadataAction
    ) -> dict[str, object]:
        """`PUT` (merge) and `DELETE` (remove keys) `/instance/metadata/batch`: `{"updated":
        [...]}`, each instance the entry selected when it was applied (a missing service
        selects none). With neither `consistencyType` nor `instances` there is nothing to
        select, and nothing is proposed (Nacos answers the same). A list given with a
        `consistencyType` is checked, then ignored (as Nacos ignores it)."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        scope = validate.consistency_type(raw.consistency_type)
        targets = validate.metadata_targets(raw.instances)
        metadata = validate.metadata(validate.required("metadata", raw.metadata))
        if scope is MetadataScope.LISTED and not targets:
            return metadata_updated_view(())
        command = UpdateMetadata(
            service=service,
            action=action,
            scope=scope,
            targets=targets if scope is MetadataScope.LISTED else (),
            metadata=metadata,
            stamped_at_ms=self._clock.now_ms(),
        )
        if self._gate is not None:  # an older member could not decode it
            await self._gate.require(UPDATE_METADATA_SINCE, "batch metadata")
        result = await self._propose(command)
        if not isinstance(result, MetadataUpdated):
            raise TypeError(f"apply returned {type(result).__name__}, not MetadataUpdated")
        return metadata_updated_view(result.updated)

    async def deregister_instance(self, raw: RawInstance) -> InstanceKey:
        """`DELETE /instance`: answers success also when nothing matched (as Nacos).
        Removes the instance whoever owns it; returns its key."""
        default_ephemeral = self._state.switches().default_instance_ephemeral
        key = validate.instance_key(raw, default_ephemeral=default_ephemeral)
        command = DeregisterInstance(key=key, stamped_at_ms=self._clock.now_ms())
        # Nacos answers `ok` when nothing matched: a silent no-op.
        await self._propose(command, tolerate=frozenset({RejectReason.INSTANCE_NOT_FOUND}))
        return key

    def get_instance(self, raw: RawInstance) -> dict[str, object]:
        """`GET /instance`: the detail, or NotFoundError with Nacos's messages."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        cluster_name = validate.cluster_name(raw.cluster_name)
        ip, port = validate.ip(raw.ip), validate.port(raw.port)
        grouped = service.grouped_name
        if self._state.service(service) is None:
            raise NotFoundError("service", grouped, message=f"no service {grouped} found!")
        in_cluster = [i for i in self._state.instances(service) if i.cluster_name == cluster_name]
        if not in_cluster:
            raise NotFoundError(
                "instance",
                f"{ip}:{port}",
                message=f"no ips found for cluster {cluster_name} in service {grouped}",
            )
        for instance in in_cluster:
            if instance.ip == ip and instance.port == port:
                return instance_detail_view(instance)
        raise NotFoundError("instance", f"{ip}:{port}", message="no matched ip found!")

    def list_instances(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        service_name: str | None,
        clusters: str | None,
        healthy_only: str | None,
        udp_port: str | None = None,
        client_ip: str | None = None,
        app: str | None = None,
        client: ClientAgent,
        grouped_names: bool | None = None,
        encoded_hosts: bool = False,
    ) -> dict[str, object]:
        """`GET /instance/list` (see `listed_hosts`); records a push target if asked.
        Hosts name their service grouped for Java clients >= 1.0, or as `grouped_names` says.
        The hosts come from `ListCache` while the service is unchanged; with `encoded_hosts`
        they are already JSON (for an answer encoded by orjson), else a list of host objects
        shared with other answers, not to be changed."""
        service = validate.service_key(namespace_id, group_name, service_name)
        cluster_filter = validate.clusters_filter(clusters)
        only_healthy = validate.flag("healthy_only", healthy_only, False)
        push_port = validate.udp_port(udp_port)
        now_ms = self._clock.now_ms()
        switches = self._state.switches()
        cache_ms = switches.default_cache_ms
        if push_port > 0 and client_ip is not None and client_ip.strip():
            target = PushTarget(
                service=service,
                clusters=clusters or "",
                client_ip=validate.ip(client_ip, "client_ip"),
                udp_port=push_port,
                agent=client.user_agent,
                app=(app or "").strip() or "unknown",
            )
            if self._push.add_target(target, now_ms) and switches.push_enabled:
                cache_ms = switches.default_push_cache_ms
        grouped = client.is_java_v1 if grouped_names is None else grouped_names
        listed = self._lists.get(
            (service, cluster_filter, only_healthy, grouped),
            self._state.service_stamp(service),
            lambda: listed_hosts(
                service,
                self._state.service(service),
                self._state.instances(service),
                cluster_filter=cluster_filter,
                healthy_only=only_healthy,
                grouped_names=grouped,
            ),
        )
        return instance_list_view(
            service,
            listed,
            clusters=clusters or "",
            cache_ms=cache_ms,
            now_ms=now_ms,
            encoded_hosts=encoded_hosts,
        )

    async def beat(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        service_name: str | None,
        beat: str | None,
        cluster_name: str | None = None,
        ip: str | None = None,
        port: str | None = None,
    ) -> dict[str, object]:
        """`PUT /instance/beat`: refresh the instance, or re-create it from the beat JSON.

        Answers `{"clientBeatInterval", "code": 10200, "lightBeatEnabled"}`, or
        `{"clientBeatInterval", "code": 20404}` for an unknown instance and no `beat`."""
        switches = self._state.switches()
        service = validate.service_key(namespace_id, group_name, service_name)
        payload = None if beat is None or not beat.strip() else validate.beat(beat)
        not_found: dict[str, object] = {
            "clientBeatInterval": switches.client_beat_interval_ms,
            "code": BEAT_NOT_FOUND,
        }
        if payload is not None:
            cluster = payload.cluster_name or validate.cluster_name(cluster_name)
            beat_ip, beat_port = payload.ip, payload.port
        elif ip is None or not ip.strip() or port is None or not port.strip():
            return not_found  # a light beat that names no instance, as Nacos's ip="" port=0
        else:
            cluster = validate.cluster_name(cluster_name)
            beat_ip, beat_port = validate.ip(ip), validate.port(port)
        now_ms = self._clock.now_ms()
        instance = self._state.find_instance(
            service, cluster_name=cluster, ip=beat_ip, port=beat_port
        )
        if instance is None and payload is None:
            # Unknown here, perhaps only not yet applied here: a client that registered
            # through this follower beats it next. 20404 makes the client register again,
            # so it answers as of everything committed: a read-index round (on a follower,
            # NotLeaderError, and the beat goes to the leader, as a write would).
            await self._proposer.read_barrier()
            instance = self._state.find_instance(
                service, cluster_name=cluster, ip=beat_ip, port=beat_port
            )
        if instance is None:
            if payload is None:
                return not_found
            instance = Instance(
                service=service,
                ip=beat_ip,
                port=beat_port,
                cluster_name=cluster,
                weight=payload.weight,
                metadata=payload.metadata,
                ephemeral=payload.ephemeral,
            )
            await self._propose(RegisterInstance(instance=instance, stamped_at_ms=now_ms))
            if instance.ephemeral:
                await self._beats.record_beat(instance.key, now_ms)
        elif instance.ephemeral:
            await self._beats.record_beat(instance.key, now_ms)
            if not instance.healthy:
                changes = ((instance.key, True),)
                await self._propose(SetInstanceHealth(changes=changes, stamped_at_ms=now_ms))
        return {
            "clientBeatInterval": beat_interval_ms(
                instance.metadata, switches.client_beat_interval_ms
            ),
            "code": BEAT_OK,
            "lightBeatEnabled": switches.light_beat_enabled,
        }

    def instance_statuses(self, key: str | None) -> dict[str, object]:
        """`GET /instance/statuses?key=ns##group@@service` (or just `group@@service`)."""
        text = validate.required("key", key)
        namespace_id, sep, grouped = text.partition(NAMESPACE_SEPARATOR)
        if not sep:
            namespace_id, grouped = DEFAULT_NAMESPACE_ID, text
        if "@@" not in grouped:
            raise InvalidArgumentError("key", "must be namespaceId##groupName@@serviceName")
        try:
            service = validate.service_key(namespace_id, None, grouped)
        except InvalidArgumentError as error:  # a part of the key: the client sent `key`
            raise InvalidArgumentError(
                "key", f"must be namespaceId##groupName@@serviceName ({error.field}: {error.rule})"
            ) from None
        if self._state.service(service) is None:
            raise NotFoundError(
                "service", grouped, message=f"service: {service.grouped_name} not found."
            )
        return statuses_view(self._state.instances(service))

    async def set_instance_health(self, raw: RawInstance, healthy: str | None) -> None:
        """`PUT /health/instance`: only where no beat or checker decides health: persistent
        instances (naraft runs no server-side checker) or clusters with checker NONE."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        cluster_name = validate.cluster_name(raw.cluster_name)
        ip, port = validate.ip(raw.ip), validate.port(raw.port)
        validate.required("healthy", healthy)
        is_healthy = validate.flag("healthy", healthy, True)
        found = self._state.find_instance(service, cluster_name=cluster_name, ip=ip, port=port)
        meta = self._state.service(service)
        if found is None or meta is None:
            raise NotFoundError("instance", f"{ip}:{port}", message="no matched ip found!")
        cluster = meta.clusters.get(cluster_name)
        checker_off = cluster is not None and cluster.health_checker_type is HealthCheckerType.NONE
        if found.ephemeral and not checker_off:
            raise InvalidArgumentError(
                "service_name",
                "health is decided by client beats",
                message=f"health check is still working, service: {service.grouped_name}",
            )
        changes = ((found.key, is_healthy),)
        await self._propose(SetInstanceHealth(changes=changes, stamped_at_ms=self._clock.now_ms()))

    # -------------------------------------------------------------- services

    async def create_service(self, raw: RawService) -> None:
        """`POST /service`: 400 if it exists already."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        command = CreateService(
            service=service,
            protect_threshold=validate.protect_threshold(raw.protect_threshold),
            metadata=validate.metadata(raw.metadata),
            selector=validate.selector(raw.selector),
            stamped_at_ms=self._clock.now_ms(),
        )
        await self._propose(command)

    async def update_service(self, raw: RawService) -> None:
        """`PUT /service`: protectThreshold required; metadata and selector are replaced."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        command = UpdateService(
            service=service,
            protect_threshold=validate.protect_threshold(raw.protect_threshold, is_required=True),
            metadata=validate.metadata(raw.metadata),
            selector=validate.selector(raw.selector),
            stamped_at_ms=self._clock.now_ms(),
        )
        await self._propose(command)

    async def update_cluster(self, raw: RawCluster) -> None:
        """`PUT /cluster`: replace a cluster's health checker, check port, port flag and
        metadata (the cluster is created when missing); the service must exist. Every
        parameter but `metadata` is required, as in Nacos."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        name = validate.cluster_name(validate.required("clusterName", raw.cluster_name))
        port = validate.check_port(raw.check_port)
        use_instance_port = validate.flag(
            "useInstancePort4Check",
            validate.required("useInstancePort4Check", raw.use_instance_port),
            True,
        )
        kind, options = validate.health_checker(raw.health_checker)
        cluster = Cluster(
            name=name,
            health_checker_type=kind,
            metadata=validate.metadata(raw.metadata),
            check_port=port,
            use_instance_port=use_instance_port,
            checker_options=options,
        )
        command = UpdateCluster(
            service=service, cluster=cluster, stamped_at_ms=self._clock.now_ms()
        )
        if self._gate is not None:  # an older member could not decode it
            await self._gate.require(UPDATE_CLUSTER_SINCE, "cluster updates")
        await self._propose(command)

    async def delete_service(self, raw: RawService) -> None:
        """`DELETE /service`: removes it with both instance lists; 400 if it does not exist."""
        service = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        await self._propose(DeleteService(service=service, stamped_at_ms=self._clock.now_ms()))

    def _require_service(self, key: ServiceKey) -> Service:
        """The stored service; NotFoundError (Nacos's read message) if there is none."""
        service = self._state.service(key)
        if service is None:
            grouped = key.grouped_name
            raise NotFoundError("service", grouped, message=f"service {grouped} is not found!")
        return service

    def _existing_service(self, raw: RawService) -> tuple[ServiceKey, Service]:
        key = validate.service_key(raw.namespace_id, raw.group_name, raw.service_name)
        return key, self._require_service(key)

    def get_service(self, raw: RawService) -> dict[str, object]:
        """`GET /service`; NotFoundError if missing."""
        key, service = self._existing_service(raw)
        return service_view(service)

    def list_services(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        page_no: str | None,
        page_size: str | None,
    ) -> dict[str, object]:
        """`GET /service/list`: `{"count", "doms"}`, names without group; `groupName=*` is all."""
        namespace = validate.namespace_id(namespace_id)
        group = None if (group_name or "").strip() == "*" else validate.group_name(group_name)
        number, size = validate.page(page_no, page_size)
        keys = self._state.services(namespace, group)
        start = (number - 1) * size
        return {"count": len(keys), "doms": [k.service_name for k in keys[start : start + size]]}

    def catalog_services(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        service_name: str | None,
        page_no: str | None,
        page_size: str | None,
        with_instances: str | None = None,
    ) -> dict[str, object] | list[dict[str, object]]:
        """`GET /catalog/services`: `{"count", "serviceList"}` of one namespace, the group and
        service name matched as substrings (blank: all), counts only for the page shown; with
        `withInstances=true`, the page's services with their instances by cluster (a list,
        as Nacos answers it)."""
        namespace = validate.namespace_id(namespace_id)
        number, size = validate.optional_page(page_no, page_size, default_size=10)
        group_part = validate.search_text("group_name_param", group_name, 128)
        name_part = validate.search_text("service_name_param", service_name, 512)
        keys = [
            key
            for key in self._state.services(namespace)
            if group_part in key.group_name and name_part in key.service_name
        ]
        start = (number - 1) * size
        page = keys[start : start + size]
        if validate.flag("with_instances", with_instances, False):
            return [
                catalog_detail_row(self._state.service(key), key, self._state.instances(key))
                for key in page
            ]
        rows = [
            catalog_service_row(self._state.service(key), key, self._state.instances(key))
            for key in page
        ]
        return {"count": len(keys), "serviceList": rows}

    def catalog_service(self, raw: RawService) -> dict[str, object]:
        """`GET /catalog/service`: the service with its clusters; NotFoundError if missing."""
        key, service = self._existing_service(raw)
        return catalog_detail_view(service, self._state.instances(key))

    def catalog_rt(self, raw: RawService) -> dict[str, object]:
        """`GET /catalog/rt/service`: its clusters' check times; NotFoundError if missing."""
        key, service = self._existing_service(raw)
        return catalog_rt_view(service, self._state.instances(key))

    def catalog_instances(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        service_name: str | None,
        cluster_name: str | None,
        page_no: str | None,
        page_size: str | None,
    ) -> dict[str, object]:
        """`GET /catalog/instances`: `{"count", "list"}`, one cluster's instances (blank: all)."""
        key = validate.service_key(namespace_id, group_name, service_name)
        number, size = validate.optional_page(page_no, page_size, default_size=10)
        cluster = validate.optional_cluster(cluster_name)
        self._require_service(key)
        chosen = [
            i for i in self._state.instances(key) if cluster is None or i.cluster_name == cluster
        ]
        start = (number - 1) * size
        page = [catalog_instance_view(i) for i in chosen[start : start + size]]
        return {"count": len(chosen), "list": page}

    def service_names(self, *, namespace_id: str | None, expr: str | None) -> dict[str, object]:
        """`GET /service/names`: grouped names per namespace (all if blank), `expr` substring."""
        by_namespace: dict[str, list[str]] = {}
        if namespace_id is not None and namespace_id.strip():
            namespace = validate.namespace_id(namespace_id)
            by_namespace[namespace] = [k.grouped_name for k in self._state.services(namespace)]
        else:
            for key in self._state.all_services():
                by_namespace.setdefault(key.namespace_id, []).append(key.grouped_name)
        needle = (expr or "").strip()
        if needle:
            by_namespace = {
                ns: [n for n in names if needle in n] for ns, names in by_namespace.items()
            }
        return {
            "services": by_namespace,
            "count": sum(len(names) for names in by_namespace.values()),
        }

    def subscribers(
        self,
        *,
        namespace_id: str | None,
        group_name: str | None,
        service_name: str | None,
        page_no: str | None,
        page_size: str | None,
    ) -> dict[str, object]:
        """`GET /service/subscribers`: this node's push targets for the service, paged."""
        service = validate.service_key(namespace_id, group_name, service_name)
        number, size = validate.optional_page(page_no, page_size, default_size=1000)
        targets = self._push.targets(service, self._clock.now_ms())
        start = (number - 1) * size
        return {
            "subscribers": [subscriber_view(t) for t in targets[start : start + size]],
            "count": len(targets),
        }

    # ------------------------------------------------------------- operator

    def switches(self) -> dict[str, object]:
        return switches_view(self._state.switches())

    async def update_switch(
        self, *, entry: str | None, value: str | None, debug: str | None
    ) -> None:
        """`PUT /operator/switches`; `debug=true` (node-local) is refused: switches replicate."""
        name = validate.required("entry", entry)
        text = validate.required("value", value)
        if validate.flag("debug", debug, False):
            raise InvalidArgumentError("debug", "must be false: naraft switches are replicated")
        with_entry(self._state.switches(), name, text)  # raises before proposing
        await self._propose(
            UpdateSwitches(entry=name, value=text, stamped_at_ms=self._clock.now_ms())
        )

    def metrics(self) -> dict[str, object]:
        """The naming part of `GET /operator/metrics` (the API adds cpu, load and mem)."""
        services = self._state.all_services()
        instances = self._state.instance_count()
        status = self._state.switches().overridden_server_status
        return {
            "status": "UP" if status is None else status.value,
            "serviceCount": len(services),
            "instanceCount": instances,
            "raftNotifyTaskCount": 0,
            "responsibleServiceCount": len(services),
            "responsibleInstanceCount": instances,
        }

    def health_message(self, local_port: int) -> dict[str, object]:
        """`GET /health/server`."""
        count = len(self._state.all_services())
        return {
            "msg": "Hello! I am Nacos-Naming and healthy! "
            f"total services: raft {count}, local port:{local_port}"
        }

    # ----------------------------------------------------------- namespaces

    def namespaces(self) -> dict[str, object]:
        """`GET /console/namespaces`: `{"code": 200, "message": null, "data": [...]}`."""
        data = [namespace_view(n) for n in self._state.namespaces()]
        return {"code": 200, "message": None, "data": data}

    def namespace(self, namespace_id: str | None) -> dict[str, object]:
        """`GET /console/namespaces?show=all&namespaceId=`: one namespace."""
        found = self._state.namespace(validate.namespace_id(namespace_id))
        if found is None:
            raise NotFoundError("namespace", (namespace_id or "").strip())
        return namespace_view(found)

    def namespace_exists(self, custom_id: str | None) -> bool:
        """`GET /console/namespaces?checkNamespaceIdExist=true`: whether a namespace has the
        id (blank: false, as Nacos answers; an id that breaks the rule cannot exist; `public`
        does, so the console does not offer to create it)."""
        if custom_id is None or not custom_id.strip():
            return False
        try:
            namespace_id = validate.namespace_id(custom_id)
        except InvalidArgumentError:
            return False
        return self._state.namespace(namespace_id) is not None

    async def create_namespace(
        self,
        *,
        custom_id: str | None,
        show_name: str | None,
        description: str | None,
        id_field: str = "custom_namespace_id",
    ) -> str:
        """`POST /console/namespaces`; returns the id (generated when none was given).
        `id_field` names the custom id's parameter in errors (v2 calls it `namespaceId`)."""
        namespace_id = validate.new_namespace_id(custom_id, id_field) or self._new_namespace_id()
        command = CreateNamespace(
            namespace_id=namespace_id,
            show_name=validate.namespace_show_name(show_name),
            description=validate.description(description),
            stamped_at_ms=self._clock.now_ms(),
        )
        await self._propose(command)
        return namespace_id

    async def update_namespace(
        self,
        *,
        namespace_id: str | None,
        show_name: str | None,
        description: str | None,
        name_field: str = "namespace_show_name",
    ) -> None:
        """`PUT /console/namespaces`; `name_field` names the name's parameter in errors (v2
        calls it `namespaceName`)."""
        command = UpdateNamespace(
            namespace_id=validate.namespace_id(validate.required("namespace_id", namespace_id)),
            show_name=validate.namespace_show_name(show_name, name_field),
            description=validate.description(description),
            stamped_at_ms=self._clock.now_ms(),
        )
        await self._propose(command)

    async def delete_namespace(self, namespace_id: str | None) -> None:
        """`DELETE /console/namespaces`: its services stay (as in Nacos, which keeps them)."""
        namespace = validate.namespace_id(validate.required("namespace_id", namespace_id))
        await self._propose(
            DeleteNamespace(namespace_id=namespace, stamped_at_ms=self._clock.now_ms())
        )
