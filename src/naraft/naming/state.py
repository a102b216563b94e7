"""NamingState: the naming data as datums, changed only by `apply`, read by queries.

Rules:
1. `apply` is deterministic: it reads no clock, no randomness and does no IO. Times come
   from the commands' `stamped_at_ms`; a datum's version is the entry's log index.
2. Domain refusals are `Rejected(reason)`, never exceptions. An exception from `apply`
   is a bug; the node's state machine (`naraft.machine`) rolls the entry back and records
   it as rejected, the same on every replica, so the node never stops on one.
3. Everything lives in the `DatumTable` under Nacos KeyBuilder keys: one service-metadata
   datum per service, one datum per instance under its service's instance-list key (per
   kind, ephemeral or persistent, like Nacos), one switch datum, one datum per custom
   namespace. So a digest of (key, version) sees all of it, a snapshot is just the table,
   and a registration writes one instance's record whatever the size of its service.
   A list written whole (as naraft did before) still reads; the first command that
   changes it splits it into its instances' datums, the same on every replica.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
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
from naraft.naming.errors import CommandDecodeError
from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import (
    DEFAULT_NAMESPACE_ID,
    EPHEMERAL_INSTANCE_LIST_PREFIX,
    INSTANCE_LIST_PREFIX,
    INSTANCE_SEPARATOR,
    NAMESPACE_PREFIX,
    NAMESPACE_SEPARATOR,
    SERVICE_META_PREFIX,
    SWITCH_KEY,
    InstanceKey,
    ServiceKey,
    instance_datum_key,
    instance_list_key,
    namespace_key,
    service_key_from_meta_key,
    service_meta_key,
    service_meta_prefix,
    service_of_key,
)
from naraft.naming.model import (
    Cluster,
    Instance,
    Namespace,
    NamespaceType,
    Service,
    instance_sort_key,
)
from naraft.naming.records import (
    decode_instance,
    decode_instances,
    decode_namespace,
    decode_service,
    encode_instance,
    encode_namespace,
    encode_service,
    service_key_of,
    stored_instance,
)
from naraft.naming.switches import (
    DEFAULT_SWITCHES,
    Switches,
    switches_from_record,
    switches_record,
    with_entry,
)
from naraft.naming.validate import metadata_breach
from naraft.state.datums import Datum, DatumChanges, DatumTable

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Address = tuple[str, str, int]
"""An instance's place in its service: cluster, ip, port."""


@dataclass(slots=True)
class _Listed:
    """One instance list as decoded while its group's stamp was `stamp`: each instance
    datum's decoded record (kept by datum identity, so a changed list decodes only what
    changed), a whole list written before instances had datums of their own, and the
    instances in their stable order (made when first asked for)."""

    stamp: object | None
    records: dict[str, tuple[Datum, Instance]] = field(default_factory=dict)
    legacy: dict[Address, Instance] = field(default_factory=dict)
    ordered: tuple[Instance, ...] | None = None

    counted: int = 0  # its size when `_DecodedLists` last counted it

    def instances(self) -> tuple[Instance, ...]:
        if self.ordered is None:
            listed = [instance for _, instance in self.records.values()]
            listed.extend(self.legacy.values())
            self.ordered = tuple(sorted(listed, key=instance_sort_key))
        return self.ordered

    @property
    def size(self) -> int:
        return len(self.records) + len(self.legacy)


DECODED_INSTANCES_KEPT: Final = 20_000
"""How many decoded instances the lists kept decoded hold together. A decoded instance
costs about 400 bytes beside its stored record; without a bound, a node that had read every
list once (metrics, the console, a client's first poll) kept the whole registry twice."""


class _DecodedLists:
    """The instance lists kept decoded, by list key, least recently read first. Past
    `limit` instances in all, the least recently read lists are dropped (to be decoded
    again when next read); the most recently read one stays whatever its size, so one huge
    service read again and again is decoded once, not on every read."""

    def __init__(self, limit: int) -> None:
        self._lists: dict[str, _Listed] = {}
        self._limit = limit
        self._held = 0  # the sum of every kept list's `counted`

    def __len__(self) -> int:
        return len(self._lists)

    @property
    def held(self) -> int:
        """Decoded instances kept, in all."""
        return self._held

    def get(self, list_key: str) -> _Listed | None:
        """The list kept for `list_key`, leaving its place in the reading order as it is."""
        return self._lists.get(list_key)

    def read(self, list_key: str, listed: _Listed) -> None:
        """`listed` was just read: keep it (or keep it again) as the most recently read."""
        kept = self._lists.pop(list_key, None)
        if kept is not listed:
            if kept is not None:
                self._held -= kept.counted
            listed.counted = 0
        self._lists[list_key] = listed
        self.recount(listed)

    def recount(self, listed: _Listed) -> None:
        """`listed` (kept) gained or lost records in place; drop others past the limit."""
        self._held += listed.size - listed.counted
        listed.counted = listed.size
        lists = self._lists
        while self._held > self._limit and len(lists) > 1:
            oldest = next(iter(lists))
            self._held -= lists.pop(oldest).counted

    def drop(self, list_key: str) -> None:
        kept = self._lists.pop(list_key, None)
        if kept is not None:
            self._held -= kept.counted


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
    METADATA_BOUNDS = "metadata-bounds"
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


@dataclass(frozen=True, slots=True)
class MetadataUpdated(Applied):
    """An applied `UpdateMetadata`: `updated` names each instance it selected, changed or
    already as asked (Nacos answers them all); `changed_services` holds the service only
    if one of them changed."""

    updated: tuple[InstanceKey, ...] = ()


ApplyResult = Applied | Rejected


def _changed_metadata(current: Mapping[str, str], command: UpdateMetadata) -> dict[str, str]:
    """`current` with the batch's metadata merged in, or its keys removed."""
    if command.action is MetadataAction.MERGE:
        return {**current, **command.metadata}
    return {key: value for key, value in current.items() if key not in command.metadata}


class NamingState:
    """The naming state machine over a DatumTable. One owner: the replica's apply loop."""

    def __init__(
        self,
        datums: DatumTable,
        feed: ChangeFeed | None = None,
        *,
        decoded_instances_kept: int = DECODED_INSTANCES_KEPT,
    ) -> None:
        self._datums = datums
        # listed often (every service list and namespace page): kept apart from everything
        # else the table holds, so that listing them never scans it all
        for prefix in (SERVICE_META_PREFIX, NAMESPACE_PREFIX):
            datums.index_prefix(prefix)
        # each instance list is a group: its instances' datums (and a whole old-style list)
        datums.index_groups(INSTANCE_LIST_PREFIX, INSTANCE_SEPARATOR)
        self._feed = feed
        # key → (the datum object decoded, its decoded value); identity-checked on read.
        self._decoded: dict[str, tuple[Datum, object]] = {}
        # list key → that list decoded, valid while its group's stamp is the same object
        self._lists = _DecodedLists(decoded_instances_kept)

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
        for service in services:
            self._forget_gone_lists(service)
        if services and self._feed is not None:
            self._feed.publish(services)
        return services

    def _forget_gone_lists(self, service: ServiceKey) -> None:
        """Drop the decoded lists of `service` that no longer exist, with their records."""
        for ephemeral in (True, False):
            list_key = instance_list_key(service, ephemeral=ephemeral)
            if self._datums.group_stamp(list_key) is None:
                self._lists.drop(list_key)

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
            case UpdateMetadata():
                return self._update_metadata(command, index)
            case UpdateCluster():
                return self._update_cluster(command, index)

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

    def _update_cluster(self, command: UpdateCluster, index: int) -> ApplyResult:
        current = self.service(command.service)
        if current is None:
            return Rejected(RejectReason.SERVICE_NOT_FOUND, command.service.grouped_name)
        cluster = command.cluster
        updated = replace(
            current,
            clusters={**current.clusters, cluster.name: cluster},
            last_modified_ms=command.stamped_at_ms,
        )
        self._put(service_meta_key(updated.key), encode_service(updated), index)
        return Applied(index, frozenset({updated.key}))

    def _delete_service(self, command: DeleteService, index: int) -> ApplyResult:
        key = command.service
        if not self._datums.delete(service_meta_key(key)):
            return Rejected(RejectReason.SERVICE_NOT_FOUND, key.grouped_name)
        for ephemeral in (True, False):
            for datum_key, _ in self._datums.group_items(
                instance_list_key(key, ephemeral=ephemeral)
            ):
                self._datums.delete(datum_key)
        self._forget_gone_lists(key)
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
        key = instance.key
        existing = self._instance_at(key, index)
        if strict and existing is None:
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, instance.instance_id)
        if existing is not None:
            # Nacos replaces the whole record and carries over only `healthy`.
            instance = replace(instance, healthy=existing.healthy)
        changed = self._ensure_service(instance, stamped_at_ms, index)
        changed |= self._write_instance(key, instance, index)
        return Applied(index, frozenset({instance.service}) if changed else frozenset())

    def _instance_at(self, key: InstanceKey, index: int) -> Instance | None:
        """The instance stored under `key`, for a command about to change its list (which
        splits a whole old-style list into its instances' datums first)."""
        list_key = instance_list_key(key.service, ephemeral=key.ephemeral)
        self._split_legacy(key.service, list_key, index)
        return self._stored(key, list_key)

    def _stored(self, key: InstanceKey, list_key: str) -> Instance | None:
        """The instance datum under `key` (in list `list_key`), decoded, or as its list
        last decoded it."""
        datum_key = instance_datum_key(key, list_key)
        datum = self._datums.get(datum_key)
        if datum is None:
            return None
        listed = self._lists.get(list_key)
        hit = None if listed is None else listed.records.get(datum_key)
        if hit is not None and hit[0] is datum:
            return hit[1]
        return decode_instance(datum_key, datum.value, key.service)

    def _split_legacy(self, service: ServiceKey, list_key: str, index: int) -> None:
        """Replace the list `list_key` of `service`, if written whole (before instances had
        datums of their own), by one datum per instance, written at `index` like the
        command's own writes."""
        datum = self._datums.get(list_key)
        if datum is None:
            return
        self._datums.delete(list_key)
        for instance in decode_instances(list_key, datum.value, service):
            self._write_instance(instance.key, instance, index)

    def _write_instance(self, key: InstanceKey, instance: Instance | None, index: int) -> bool:
        """Put `instance` under `key` (None deletes it); True if the stored state changed.
        A list decoded before the write is brought along, not decoded again."""
        list_key = instance_list_key(key.service, ephemeral=key.ephemeral)
        datum_key = instance_datum_key(key, list_key)
        listed = self._lists.get(list_key)
        current = listed is not None and listed.stamp is self._datums.group_stamp(list_key)
        if instance is None:
            written = self._datums.delete(datum_key)
        else:
            written = self._put(datum_key, encode_instance(instance), index)
        if not written or listed is None or not current:
            return written
        listed.stamp = self._datums.group_stamp(list_key)
        listed.ordered = None
        datum = self._datums.get(datum_key)
        if datum is None or instance is None:
            listed.records.pop(datum_key, None)
        else:
            listed.records[datum_key] = (datum, stored_instance(instance, key.service))
        self._lists.recount(listed)
        return written

    def _patch_instance(self, command: PatchInstance, index: int) -> ApplyResult:
        key = command.key
        existing = self._instance_at(key, index)
        if existing is None:
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, key.instance_id)
        patched = replace(
            existing,
            weight=existing.weight if command.weight is None else command.weight,
            metadata=existing.metadata if command.metadata is None else command.metadata,
            enabled=existing.enabled if command.enabled is None else command.enabled,
            healthy=existing.healthy if command.healthy is None else command.healthy,
        )
        written = self._write_instance(key, patched, index)
        return Applied(index, frozenset({key.service}) if written else frozenset())

    def _deregister(self, command: DeregisterInstance, index: int) -> ApplyResult:
        key = command.key
        if self._instance_at(key, index) is None:
            return Rejected(RejectReason.INSTANCE_NOT_FOUND, key.instance_id)
        self._write_instance(key, None, index)
        return Applied(index, frozenset({key.service}))

    def _batch(
        self,
        changes: Iterable[tuple[InstanceKey, Callable[[Instance], Instance | None]]],
        index: int,
    ) -> Applied:
        """Each change applied to the instance under its key, in order; keys of a service
        or an instance that is gone are passed over."""
        changed: set[ServiceKey] = set()
        for key, change in changes:
            if self.service(key.service) is None:
                continue
            existing = self._instance_at(key, index)
            if existing is not None and self._write_instance(key, change(existing), index):
                changed.add(key.service)
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

    def _update_metadata(self, command: UpdateMetadata, index: int) -> ApplyResult:
        """All or nothing: every selected instance's new metadata is checked before the
        first is written (a whole old-style list is split only then, too)."""
        if self.service(command.service) is None:
            return MetadataUpdated(index)  # Nacos answers a missing service with nothing
        changes: list[tuple[InstanceKey, dict[str, str]]] = []
        for key, instance in self._metadata_selection(command):
            metadata = _changed_metadata(instance.metadata, command)
            breach = metadata_breach(metadata)
            if breach is not None:
                detail = f"{breach}; instance {key.instance_id} would break it"
                return Rejected(RejectReason.METADATA_BOUNDS, detail)
            changes.append((key, metadata))
        written = False
        for key, metadata in changes:
            current = self._instance_at(key, index)
            if current is not None:
                written |= self._write_instance(key, replace(current, metadata=metadata), index)
        changed = frozenset({command.service}) if written else frozenset()
        return MetadataUpdated(index, changed, tuple(key for key, _ in changes))

    def _metadata_selection(self, command: UpdateMetadata) -> list[tuple[InstanceKey, Instance]]:
        """The instances `command` selects now, each under the key it was found at, read
        without writing anything: all of one kind in their stable order, or those listed
        that exist, each once, in the order listed."""
        service = command.service
        if command.scope is not MetadataScope.LISTED:
            ephemeral = command.scope is MetadataScope.EPHEMERAL
            return [
                (replace(instance.key, ephemeral=ephemeral), instance)
                for instance in self.instances(service, ephemeral=ephemeral)
            ]
        keys = dict.fromkeys(target.key(service) for target in command.targets)
        return [(key, found) for key in keys if (found := self._peek(key)) is not None]

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

        return self._decode(SWITCH_KEY, decode) or DEFAULT_SWITCHES

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
        """What stands behind everything a read of `service` shows: its metadata datum and
        the stamps of both its instance lists. Datums are immutable and replaced on every
        write, rollback and install, and a list's stamp with them, so equal stamps,
        compared by identity, mean an unchanged service."""
        return (
            self._datums.get(service_meta_key(service)),
            self._datums.group_stamp(instance_list_key(service, ephemeral=True)),
            self._datums.group_stamp(instance_list_key(service, ephemeral=False)),
        )

    def instances(
        self, service: ServiceKey, *, ephemeral: bool | None = None
    ) -> tuple[Instance, ...]:
        """The service's instances of one kind, or both kinds (ephemeral first) if None."""
        if ephemeral is None:
            return self.instances(service, ephemeral=True) + self.instances(
                service, ephemeral=False
            )
        return self._listed(service, ephemeral).instances()

    def _listed(self, service: ServiceKey, ephemeral: bool) -> _Listed:
        """One instance list, decoded again only when its group's stamp moved, and then
        only the datums that changed."""
        list_key = instance_list_key(service, ephemeral=ephemeral)
        stamp = self._datums.group_stamp(list_key)
        kept = self._lists.get(list_key)
        if kept is not None and kept.stamp is stamp:
            self._lists.read(list_key, kept)
            return kept
        if stamp is None:
            self._lists.drop(list_key)
            return _Listed(stamp=None, ordered=())
        before = {} if kept is None else kept.records
        listed = _Listed(stamp=stamp)
        for key, datum in self._datums.group_items(list_key):
            if key == list_key:
                listed.legacy = {
                    (i.cluster_name, i.ip, i.port): i
                    for i in decode_instances(key, datum.value, service)
                }
                continue
            hit = before.get(key)
            if hit is None or hit[0] is not datum:
                hit = (datum, decode_instance(key, datum.value, service))
            listed.records[key] = hit
        self._lists.read(list_key, listed)
        return listed

    def find_instance(
        self, service: ServiceKey, *, cluster_name: str, ip: str, port: int
    ) -> Instance | None:
        """The instance at ip:port in that cluster, looking at ephemeral ones first. A
        look-up, not a scan: every beat asks, and a service may hold 10,000 instances."""
        for ephemeral in (True, False):
            key = InstanceKey(
                service=service, ephemeral=ephemeral, cluster_name=cluster_name, ip=ip, port=port
            )
            found = self._peek(key)
            if found is not None:
                return found
        return None

    def _peek(self, key: InstanceKey) -> Instance | None:
        """The instance under `key`, also from a list written whole, without writing."""
        list_key = instance_list_key(key.service, ephemeral=key.ephemeral)
        found = self._stored(key, list_key)
        if found is None and self._datums.get(list_key):
            legacy = self._listed(key.service, key.ephemeral).legacy
            found = legacy.get((key.cluster_name, key.ip, key.port))
        return found

    def ephemeral_lists(self) -> Iterator[tuple[ServiceKey, object]]:
        """Every service with ephemeral instances, and the stamp of their list (for the
        leader's beat sweep, which prepares a list once per stamp)."""
        for list_key, stamp in self._datums.groups(EPHEMERAL_INSTANCE_LIST_PREFIX):
            rest = list_key[len(EPHEMERAL_INSTANCE_LIST_PREFIX) :]
            namespace_id, sep, grouped = rest.partition(NAMESPACE_SEPARATOR)
            if sep:
                yield service_key_of(namespace_id, grouped), stamp

    def instance_count(self) -> int:
        """Instances of every service, counted without decoding them (metrics and the
        state view ask for it often, and decoding the registry to count it kept it all
        decoded)."""
        return sum(self.service_instance_count(s) for s in self.all_services())

    def service_instance_count(self, service: ServiceKey) -> int:
        """The service's instances of both kinds, counted from its datums."""
        count = 0
        for ephemeral in (True, False):
            list_key = instance_list_key(service, ephemeral=ephemeral)
            size = self._datums.group_size(list_key)
            if size and self._datums.get(list_key) is not None:
                # a list written whole is one of the group's keys: count what it holds
                size += len(self._listed(service, ephemeral).legacy) - 1
            count += size
        return count
