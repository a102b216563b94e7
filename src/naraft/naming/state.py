"""NamingState: the naming data as datums, changed only by `apply`, read by queries.

Rules:
1. `apply` is deterministic: it reads no clock, no randomness and does no IO. Times come
   from the commands' `stamped_at_ms`; a datum's version is the entry's log index.
2. Domain refusals are `Rejected(reason)`, never exceptions. An exception from `apply`
   is a bug; the node's state machine (`naraft.machine`) rolls the entry back and records
   it as rejected, the same on every replica, so the node never stops on one.
3. Everything lives in the `DatumTable` under Nacos KeyBuilder keys: one service-metadata
   datum per service, one instance-list datum per service and kind (ephemeral or
   persistent, like Nacos), one switch datum, one datum per custom namespace. So a digest
   of (key, version) sees all of it, and a snapshot is just the table.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final, TypeVar

import orjson

from naraft.errors import InvalidArgumentError
from naraft.naming.codec import decode_command
from naraft.naming.commands import (
    Command,
    CreateNamespace,
    CreateService,
    DeleteNamespace,
    DeleteService,
    DeregisterInstance,
    PatchInstance,
    RegisterInstance,
    ReleaseOwner,
    RemoveInstances,
    SetInstanceHealth,
    UpdateInstance,
    UpdateNamespace,
    UpdateService,
    UpdateSwitches,
)
from naraft.naming.errors import CommandDecodeError
from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import (
    DEFAULT_NAMESPACE_ID,
    EPHEMERAL_INSTANCE_LIST_PREFIX,
    NAMESPACE_PREFIX,
    NAMESPACE_SEPARATOR,
    SERVICE_META_PREFIX,
    SWITCH_KEY,
    InstanceKey,
    ServiceKey,
    instance_list_key,
    namespace_key,
    service_key_from_meta_key,
    service_meta_key,
    service_meta_prefix,
    service_of_key,
)
from naraft.naming.model import Cluster, Instance, Namespace, NamespaceType, Service
from naraft.naming.records import (
    EncodedRecords,
    decode_instances,
    decode_namespace,
    decode_service,
    encode_instances_reusing,
    encode_namespace,
    encode_service,
    service_key_of,
    stored_instances,
)
from naraft.naming.switches import Switches, switches_from_record, switches_record, with_entry
from naraft.state.datums import Datum, DatumChanges, DatumTable

logger = logging.getLogger(__name__)
MAX_KEPT_RECORDS: Final = 100_000  # encoded instance records kept for re-encoding lists (~30 MB)


def _ident(instance: Instance) -> tuple[str, str, int, bool]:
    """What `instance.key` compares within one service's list (the service is the list's)."""
    return (instance.cluster_name, instance.ip, instance.port, instance.ephemeral)


_T = TypeVar("_T")
Address = tuple[str, str, int]
"""An instance's place in its service: cluster, ip, port."""

PUBLIC_NAMESPACE = Namespace(
    namespace_id=DEFAULT_NAMESPACE_ID, show_name="public", type=NamespaceType.GLOBAL
)


class RejectReason(enum.StrEnum):
    NAMESPACE_EXISTS = "namespace-exists"
    NAMESPACE_NOT_FOUND = "namespace-not-found"
    NAMESPACE_RESERVED = "namespace-reserved"
    SERVICE_EXISTS = "service-exists"
    SERVICE_NOT_FOUND = "service-not-found"
    INSTANCE_NOT_FOUND = "instance-not-found"
    INVALID_SWITCH = "invalid-switch"
    UNDECODABLE = "undecodable"


@dataclass(frozen=True, slots=True)
class Applied:
    """The command took effect at `index`; `changed_services` lists services whose data
    (metadata or instances) changed, for the change feed."""

    index: int
    changed_services: frozenset[ServiceKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Rejected:
    """The command was refused by the domain; nothing was written."""

    reason: RejectReason
    detail: str = ""


ApplyResult = Applied | Rejected


class NamingState:
    """The naming state machine over a DatumTable. One owner: the replica's apply loop."""

    def __init__(self, datums: DatumTable, feed: ChangeFeed | None = None) -> None:
        self._datums = datums
        # listed often (each beat sweep; every service list and namespace page): kept apart
        # from everything else the table holds, so that listing them never scans it all
        for prefix in (EPHEMERAL_INSTANCE_LIST_PREFIX, SERVICE_META_PREFIX, NAMESPACE_PREFIX):
            datums.index_prefix(prefix)
        self._feed = feed
        # key → (the datum object decoded, its decoded value); identity-checked on read.
        self._decoded: dict[str, tuple[Datum, object]] = {}
        # list key → (the datum indexed, its instances by (cluster, ip, port)), the same way
        self._addresses: dict[str, tuple[Datum, object]] = {}
        # list key → the encoded records of the instances it was last written with, for
        # the lists written most recently, at most MAX_KEPT_RECORDS records in all
        self._records: OrderedDict[str, EncodedRecords] = OrderedDict()
        self._kept_records = 0

    @property
    def datums(self) -> DatumTable:
        return self._datums

    # ----------------------------------------------------------------- apply

    def apply_entry(self, payload: bytes, index: int) -> ApplyResult:
        """Decode a log payload and apply it; an undecodable one is Rejected on every replica."""
        try:
            command = decode_command(payload)
        except CommandDecodeError as error:
            return Rejected(RejectReason.UNDECODABLE, error.reason)
        return self.apply(command, index)

    def apply(self, command: Command, index: int, *, publish: bool = True) -> ApplyResult:
        """Apply `command` as the log entry at `index` (the version of every datum it writes).
        With `publish=False` the caller tells the change feed (`publish_applied`) once the
        entry is sure to stay applied."""
        result = self._dispatch(command, index)
        if publish:
            self.publish_applied(result)
        return result

    def publish_applied(self, result: object) -> None:
        """Tell the change feed which services an `Applied` result changed."""
        if isinstance(result, Applied) and result.changed_services and self._feed is not None:
            self._feed.publish(result.changed_services)

    def publish_replaced(self, keys: Iterable[str]) -> frozenset[ServiceKey]:
        """Tell the change feed about the services whose datums were replaced wholesale (a
        digest catch-up or a repair installs datums without applying entries); return them."""
        services = frozenset(s for key in keys if (s := service_of_key(key)) is not None)
        if services and self._feed is not None:
            self._feed.publish(services)
        return services

    def publish_replaced_changes(self, changes: DatumChanges) -> None:
        """`publish_replaced` for the keys a `DatumChanges` put or deleted."""
        self.publish_replaced((*changes.puts, *changes.deletes))

    def _dispatch(self, command: Command, index: int) -> ApplyResult:
        match command:
            case CreateNamespace():
                return self._create_namespace(command, index)
            case UpdateNamespace():
                return self._update_namespace(command, index)
            case DeleteNamespace():
                return self._delete_namespace(command, index)
            case CreateService():
                return self._create_service(command, index)
            case UpdateService():
                return self._update_service(command, index)
            case DeleteService():
                return self._delete_service(command, index)
            case RegisterInstance():
                return self._register(command.instance, command.stamped_at_ms, index, strict=False)
            case UpdateInstance():
                return self._register(command.instance, command.stamped_at_ms, index, strict=True)
            case PatchInstance():
                return self._patch_instance(command, index)
            case DeregisterInstance():
                return self._deregister(command, index)
            case SetInstanceHealth():
                return self._set_health(command, index)
            case RemoveInstances():
                return self._remove(command, index)
            case ReleaseOwner():
                return self._release_owner(command, index)
            case UpdateSwitches():
                return self._update_switches(command, index)

    def _put(self, key: str, value: bytes, index: int) -> bool:
        """Write `value` unless the key already holds exactly it; True if written."""
        current = self._datums.get(key)
        if current is not None and current.value == value:
            return False
        self._datums.put(key, value, index)
        return True

    def _create_namespace(self, command: CreateNamespace, index: int) -> ApplyResult:
        if self.namespace(command.namespace_id) is not None:
            return Rejected(RejectReason.NAMESPACE_EXISTS, command.namespace_id)
        namespace = Namespace(
            namespace_id=command.namespace_id,
            show_name=command.show_name,
            description=command.description,
        )
        self._put(namespace_key(namespace.namespace_id), encode_namespace(namespace), index)
        return Applied(index)

    def _update_namespace(self, command: UpdateNamespace, index: int) -> ApplyResult:
        if command.namespace_id == DEFAULT_NAMESPACE_ID:
            return Rejected(RejectReason.NAMESPACE_RESERVED, command.namespace_id)
        current = self.namespace(command.namespace_id)
        if current is None:
            return Rejected(RejectReason.NAMESPACE_NOT_FOUND, command.namespace_id)
        updated = replace(current, show_name=command.show_name, description=command.description)
        self._put(namespace_key(updated.namespace_id), encode_namespace(updated), index)
        return Applied(index)

    def _delete_namespace(self, command: DeleteNamespace, index: int) -> ApplyResult:
        if command.namespace_id == DEFAULT_NAMESPACE_ID:
            return Rejected(RejectReason.NAMESPACE_RESERVED, command.namespace_id)
        if not self._datums.delete(namespace_key(command.namespace_id)):
            return Rejected(RejectReason.NAMESPACE_NOT_FOUND, command.namespace_id)
        return Applied(index)

    def _create_service(self, command: CreateService, index: int) -> ApplyResult:
        if self.service(command.service) is not None:
            return Rejected(RejectReason.SERVICE_EXISTS, command.service.grouped_name)
        service = Service(
            key=command.service,
            protect_threshold=command.protect_threshold,
            metadata=command.metadata,
            selector=command.selector,
            last_modified_ms=command.stamped_at_ms,
        )
        self._put(service_meta_key(service.key), encode_service(service), index)
        return Applied(index, frozenset({service.key}))

    def _update_service(self, command: UpdateService, index: int) -> ApplyResult:
        current = self.service(command.service)
        if current is None:
            return Rejected(RejectReason.SERVICE_NOT_FOUND, command.service.grouped_name)
        updated = replace(
            current,
            protect_threshold=command.protect_threshold,
            metadata=command.metadata,
            selector=command.selector,
            last_modified_ms=command.stamped_at_ms,
        )
        self._put(service_meta_key(updated.key), encode_service(updated), index)
        return Applied(index, frozenset({updated.key}))

    def _delete_service(self, command: DeleteService, index: int) -> ApplyResult:
        key = command.service
        if not self._datums.delete(service_meta_key(key)):
            return Rejected(RejectReason.SERVICE_NOT_FOUND, key.grouped_name)
        self._datums.delete(instance_list_key(key, ephemeral=True))
        self._datums.delete(instance_list_key(key, ephemeral=False))
        return Applied(index, frozenset({key}))

    def _ensure_service(self, instance: Instance, stamped_at_ms: int, index: int) -> bool:
        """Create the instance's service and cluster if missing (Nacos createEmptyService)."""
        service = self.service(instance.service)
        if service is None:
            service = Service(key=instance.service, last_modified_ms=stamped_at_ms)
        elif instance.cluster_name in service.clusters:
            return False
        clusters = {**service.clusters, instance.cluster_name: Cluster(name=instance.cluster_name)}
        service = replace(service, clusters=clusters, last_modified_ms=stamped_at_ms)
        return self._put(service_meta_key(service.key), encode_service(service), index)

    def _register(
        self, instance: Instance, stamped_at_ms: int, index: int, *, strict: bool
    ) -> ApplyResult:
        service = instance.service
        current = self.instances(service, ephemeral=instance.ephemeral)
        ident = _ident(instance)  # `.key` without building an InstanceKey per instance
        existing = next((i for i in current if _ident(i) == ident), None)
        if strict and existing is None:
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, instance.instance_id)
        if existing is not None:
            # Nacos replaces the whole record and carries over only `healthy`.
            instance = replace(instance, healthy=existing.healthy)
        changed = self._ensure_service(instance, stamped_at_ms, index)
        remaining = [i for i in current if _ident(i) != ident]
        changed |= self._put_instances(service, instance.ephemeral, [*remaining, instance], index)
        return Applied(index, frozenset({service}) if changed else frozenset())

    def _put_instances(
        self, service: ServiceKey, ephemeral: bool, instances: list[Instance], index: int
    ) -> bool:
        """Write an instance list; keep its decoded view, so the next command on the same
        service does not parse back what this one just encoded."""
        key = instance_list_key(service, ephemeral=ephemeral)
        encoded, records = encode_instances_reusing(instances, self._records.get(key, {}))
        written = self._put(key, encoded, index)
        self._keep_records(key, records)
        datum = self._datums.get(key)
        if written and datum is not None:
            self._decoded[key] = (datum, stored_instances(instances, service))
        return written

    def _keep_records(self, key: str, records: EncodedRecords) -> None:
        """Keep `key`'s encoded records (the newest list), dropping the records of the
        lists written longest ago past `MAX_KEPT_RECORDS` (a cache: a miss only costs
        encoding again)."""
        self._kept_records -= len(self._records.pop(key, {}))
        if len(records) > MAX_KEPT_RECORDS:
            return
        self._records[key] = records
        self._kept_records += len(records)
        while self._kept_records > MAX_KEPT_RECORDS:
            _oldest, dropped = self._records.popitem(last=False)
            self._kept_records -= len(dropped)

    def _patch_instance(self, command: PatchInstance, index: int) -> ApplyResult:
        key = command.key
        current = self.instances(key.service, ephemeral=key.ephemeral)
        existing = next((i for i in current if i.key == key), None)
        if existing is None:
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, key.instance_id)
        patched = replace(
            existing,
            weight=existing.weight if command.weight is None else command.weight,
            metadata=existing.metadata if command.metadata is None else command.metadata,
            enabled=existing.enabled if command.enabled is None else command.enabled,
            healthy=existing.healthy if command.healthy is None else command.healthy,
        )
        return self._write_list(key.service, key.ephemeral, current, {key: patched}, index)

    def _deregister(self, command: DeregisterInstance, index: int) -> ApplyResult:
        key = command.key
        current = self.instances(key.service, ephemeral=key.ephemeral)
        if not any(i.key == key for i in current):
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, key.instance_id)
        # Nacos keeps the (possibly empty) list datum until the service is deleted.
        return self._write_list(key.service, key.ephemeral, current, {key: None}, index)

    def _write_list(
        self,
        service: ServiceKey,
        ephemeral: bool,
        current: Iterable[Instance],
        changes: dict[InstanceKey, Instance | None],
        index: int,
    ) -> Applied:
        """Write the list with `changes` (None removes) applied; only keys present count."""
        updated: list[Instance] = []
        for instance in current:
            if instance.key not in changes:
                updated.append(instance)
            elif (new := changes[instance.key]) is not None:
                updated.append(new)
        written = self._put_instances(service, ephemeral, updated, index)
        return Applied(index, frozenset({service}) if written else frozenset())

    def _batch(
        self,
        changes: Iterable[tuple[InstanceKey, Callable[[Instance], Instance | None]]],
        index: int,
    ) -> Applied:
        by_list: dict[tuple[ServiceKey, bool], dict[InstanceKey, Callable[..., Instance | None]]]
        by_list = {}
        for key, change in changes:
            by_list.setdefault((key.service, key.ephemeral), {})[key] = change
        changed: set[ServiceKey] = set()
        for (service, ephemeral), list_changes in by_list.items():
            if self.service(service) is None:
                continue
            current = self.instances(service, ephemeral=ephemeral)
            resolved = {i.key: list_changes[i.key](i) for i in current if i.key in list_changes}
            if resolved:
                changed |= self._write_list(
                    service, ephemeral, current, resolved, index
                ).changed_services
        return Applied(index, frozenset(changed))

    def _set_health(self, command: SetInstanceHealth, index: int) -> ApplyResult:
        def set_to(healthy: bool) -> Callable[[Instance], Instance | None]:
            return lambda instance: replace(instance, healthy=healthy)

        return self._batch(((key, set_to(healthy)) for key, healthy in command.changes), index)

    def _remove(self, command: RemoveInstances, index: int) -> ApplyResult:
        return self._batch(((key, lambda _: None) for key in command.keys), index)

    def _release_owner(self, command: ReleaseOwner, index: int) -> ApplyResult:
        owner = command.owner
        if not owner:  # "" is every v1 instance's: never a connection to release
            return Applied(index)

        def release(instance: Instance) -> Instance | None:
            return None if instance.owner == owner else instance

        return self._batch(((key, release) for key in command.keys if key.ephemeral), index)

    def _update_switches(self, command: UpdateSwitches, index: int) -> ApplyResult:
        try:
            updated = with_entry(self.switches(), command.entry, command.value)
        except InvalidArgumentError as error:
            return Rejected(RejectReason.INVALID_SWITCH, str(error))
        self._put(SWITCH_KEY, orjson.dumps(switches_record(updated)), index)
        return Applied(index)

    # ----------------------------------------------------------------- reads

    def _decode(
        self,
        key: str,
        decoder: Callable[[Datum], _T],
        kept: dict[str, tuple[Datum, object]] | None = None,
    ) -> _T | None:
        """`decoder` of the datum at `key`, kept in `kept` (default: the decoded values)
        while that datum is the same object: datums are replaced, never changed."""
        cache = self._decoded if kept is None else kept
        datum = self._datums.get(key)
        if datum is None:
            cache.pop(key, None)
            return None
        cached = cache.get(key)
        if cached is not None and cached[0] is datum:
            return cached[1]  # type: ignore[return-value]
        value = decoder(datum)
        cache[key] = (datum, value)
        return value

    def switches(self) -> Switches:
        def decode(datum: Datum) -> Switches:
            loaded = orjson.loads(datum.value)
            return switches_from_record(loaded if isinstance(loaded, dict) else {})

        return self._decode(SWITCH_KEY, decode) or Switches()

    def namespace(self, namespace_id: str) -> Namespace | None:
        if namespace_id == DEFAULT_NAMESPACE_ID:
            return PUBLIC_NAMESPACE
        key = namespace_key(namespace_id)
        return self._decode(key, lambda d: decode_namespace(key, d.value))

    def namespaces(self) -> tuple[Namespace, ...]:
        """`public` first, then the custom namespaces by id."""
        custom = sorted(
            (decode_namespace(k, d.value) for k, d in self._datums.with_prefix(NAMESPACE_PREFIX)),
            key=lambda n: n.namespace_id,
        )
        return (PUBLIC_NAMESPACE, *custom)

    def service(self, key: ServiceKey) -> Service | None:
        datum_key = service_meta_key(key)
        return self._decode(datum_key, lambda d: decode_service(datum_key, d.value, key))

    def services(self, namespace_id: str, group_name: str | None = None) -> tuple[ServiceKey, ...]:
        """Services of a namespace (of one group, unless None), ordered by grouped name."""
        keys = (
            service_key_from_meta_key(k)
            for k, _ in self._datums.with_prefix(service_meta_prefix(namespace_id))
        )
        return tuple(
            sorted(
                (k for k in keys if k is not None and group_name in (None, k.group_name)),
                key=lambda k: k.grouped_name,
            )
        )

    def all_services(self) -> tuple[ServiceKey, ...]:
        """Every service in every namespace, ordered by (namespace, grouped name)."""
        keys = (
            service_key_from_meta_key(k) for k, _ in self._datums.with_prefix(SERVICE_META_PREFIX)
        )
        return tuple(
            sorted(
                (k for k in keys if k is not None), key=lambda k: (k.namespace_id, k.grouped_name)
            )
        )

    def service_stamp(self, service: ServiceKey) -> tuple[object, ...]:
        """The stored datums behind everything a read of `service` shows (its metadata and
        both instance lists). Datums are immutable and replaced on every write, rollback
        and install, so equal stamps, compared by identity, mean an unchanged service."""
        return (
            self._datums.get(service_meta_key(service)),
            self._datums.get(instance_list_key(service, ephemeral=True)),
            self._datums.get(instance_list_key(service, ephemeral=False)),
        )

    def instances(
        self, service: ServiceKey, *, ephemeral: bool | None = None
    ) -> tuple[Instance, ...]:
        """The service's instances of one kind, or both kinds (ephemeral first) if None."""
        if ephemeral is None:
            return self.instances(service, ephemeral=True) + self.instances(
                service, ephemeral=False
            )
        key = instance_list_key(service, ephemeral=ephemeral)
        return self._decode(key, lambda d: decode_instances(key, d.value, service)) or ()

    def find_instance(
        self, service: ServiceKey, *, cluster_name: str, ip: str, port: int
    ) -> Instance | None:
        """The instance at ip:port in that cluster, looking at ephemeral ones first. A
        look-up, not a scan: every beat asks, and a service may hold 10,000 instances."""
        address = (cluster_name, ip, port)
        for ephemeral in (True, False):

            def index(_: Datum, ephemeral: bool = ephemeral) -> dict[Address, Instance]:
                listed = self.instances(service, ephemeral=ephemeral)
                return {(i.cluster_name, i.ip, i.port): i for i in listed}

            key = instance_list_key(service, ephemeral=ephemeral)
            found = (self._decode(key, index, self._addresses) or {}).get(address)
            if found is not None:
                return found
        return None

    def ephemeral_lists(self) -> Iterator[tuple[ServiceKey, Datum]]:
        """Every service with ephemeral instances, and the stored datum of their list (for
        the leader's beat sweep, which prepares a list once per datum)."""
        for key, datum in list(self._datums.with_prefix(EPHEMERAL_INSTANCE_LIST_PREFIX)):
            rest = key[len(EPHEMERAL_INSTANCE_LIST_PREFIX) :]
            namespace_id, sep, grouped = rest.partition(NAMESPACE_SEPARATOR)
            if sep:
                yield service_key_of(namespace_id, grouped), datum

    def instance_count(self) -> int:
        return sum(len(self.instances(s)) for s in self.all_services())
