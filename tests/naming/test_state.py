"""NamingState.apply: what each command writes, what it refuses, and that it is deterministic."""

from __future__ import annotations

import orjson
import pytest

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
    MetadataTarget,
    PatchInstance,
    RegisterInstance,
    ReleaseOwner,
    RemoveInstances,
    SetInstanceHealth,
    UpdateInstance,
    UpdateMetadata,
    UpdateNamespace,
    UpdateService,
    UpdateSwitches,
)
from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import (
    SWITCH_KEY,
    ServiceKey,
    instance_datum_key,
    instance_list_key,
    namespace_key,
    service_meta_key,
)
from naraft.naming.model import Cluster, Instance, Selector, SelectorType, Service
from naraft.naming.records import encode_service, instance_record
from naraft.naming.state import (
    DECODED_INSTANCES_KEPT,
    Applied,
    MetadataUpdated,
    NamingState,
    Rejected,
    RejectReason,
)
from naraft.naming.validate import MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_CHARS
from naraft.state.datums import Datum, DatumTable

ORDERS = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="orders")
T0 = 1_700_000_000_000


def make_instance(
    ip: str = "10.0.0.1", port: int = 8080, *, service: ServiceKey = ORDERS, **fields: object
) -> Instance:
    return Instance(service=service, ip=ip, port=port, **fields)  # type: ignore[arg-type]


def register(instance: Instance, stamp: int = T0) -> RegisterInstance:
    return RegisterInstance(instance=instance, stamped_at_ms=stamp)


class Harness:
    def __init__(self, *, decoded_instances_kept: int = DECODED_INSTANCES_KEPT) -> None:
        self.datums = DatumTable()
        self.feed = ChangeFeed()
        self.state = NamingState(
            self.datums, self.feed, decoded_instances_kept=decoded_instances_kept
        )
        self.index = 0
        self.changed: list[ServiceKey] = []
        self.feed.subscribe_all(self.changed.append)

    def apply(self, *commands: Command) -> Applied | Rejected:
        result: Applied | Rejected = Rejected(RejectReason.UNDECODABLE)
        for command in commands:
            self.index += 1
            result = self.state.apply(command, self.index)
        return result

    def snapshot(self) -> dict[str, Datum]:
        return dict(self.datums.items())


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_register_writes_service_meta_and_the_instance_under_nacos_keys(h: Harness) -> None:
    result = h.apply(register(make_instance(cluster_name="c1", metadata={"k": "v"})))

    assert result == Applied(1, frozenset({ORDERS}))
    meta = h.datums.get("com.alibaba.nacos.naming.domains.meta.public##DEFAULT_GROUP@@orders")
    one = h.datums.get(
        "com.alibaba.nacos.naming.iplist.ephemeral.public##DEFAULT_GROUP@@orders/10.0.0.1#8080#c1"
    )
    assert meta is not None
    assert meta.version == 1
    assert one is not None
    assert one.version == 1
    assert len(h.datums) == 2
    assert orjson.loads(meta.value)["clusterMap"]["c1"]["healthChecker"] == {"type": "TCP"}
    record = orjson.loads(one.value)
    assert record["instanceId"] == "10.0.0.1#8080#c1#DEFAULT_GROUP@@orders"
    assert record["metadata"] == {"k": "v"}
    assert "lastBeat" not in record
    assert h.changed == [ORDERS]


def test_persistent_instances_live_in_their_own_list(h: Harness) -> None:
    h.apply(register(make_instance(ephemeral=False)), register(make_instance(ephemeral=True)))

    for ephemeral in (False, True):
        ((key, _),) = h.datums.group_items(instance_list_key(ORDERS, ephemeral=ephemeral))
        assert key == instance_datum_key(make_instance(ephemeral=ephemeral).key)
    assert [i.ephemeral for i in h.state.instances(ORDERS)] == [True, False]


def test_reregister_replaces_the_record_but_keeps_healthy(h: Harness) -> None:
    first = make_instance(weight=2.0, metadata={"a": "1"})
    h.apply(register(first))
    h.apply(SetInstanceHealth(changes=((first.key, False),), stamped_at_ms=T0))

    h.apply(register(make_instance(weight=5.0, healthy=True)))

    (stored,) = h.state.instances(ORDERS)
    assert (stored.weight, stored.metadata, stored.healthy) == (5.0, {}, False)


def test_identical_reregister_writes_nothing(h: Harness) -> None:
    h.apply(register(make_instance()))
    before = h.snapshot()

    result = h.apply(register(make_instance(), stamp=T0 + 5))

    assert result == Applied(2, frozenset())
    assert h.snapshot() == before


def test_update_instance_is_rejected_for_an_unknown_instance(h: Harness) -> None:
    result = h.apply(UpdateInstance(instance=make_instance(), stamped_at_ms=T0))

    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.INSTANCE_NOT_FOUND
    assert len(h.datums) == 0


def test_patch_changes_only_the_given_fields(h: Harness) -> None:
    instance = make_instance(weight=3.0, metadata={"a": "1"})
    h.apply(register(instance))

    h.apply(PatchInstance(key=instance.key, enabled=False, stamped_at_ms=T0))

    (stored,) = h.state.instances(ORDERS)
    assert (stored.weight, stored.metadata, stored.enabled) == (3.0, {"a": "1"}, False)


def test_patch_of_an_unknown_instance_is_rejected(h: Harness) -> None:
    result = h.apply(PatchInstance(key=make_instance().key, weight=1.0, stamped_at_ms=T0))
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.INSTANCE_NOT_FOUND


def test_deregister_deletes_the_instance_and_keeps_the_service(h: Harness) -> None:
    instance = make_instance()
    h.apply(register(instance))

    result = h.apply(DeregisterInstance(key=instance.key, stamped_at_ms=T0))

    assert result == Applied(2, frozenset({ORDERS}))
    assert list(h.datums.keys()) == [service_meta_key(ORDERS)]
    assert h.state.instances(ORDERS) == ()


def test_deregister_of_an_unknown_instance_is_rejected_and_writes_nothing(h: Harness) -> None:
    h.apply(register(make_instance()))
    before = h.snapshot()

    result = h.apply(DeregisterInstance(key=make_instance(port=9999).key, stamped_at_ms=T0))

    assert isinstance(result, Rejected)
    assert h.snapshot() == before


def test_set_health_and_remove_are_batched_and_skip_missing_instances(h: Harness) -> None:
    a, b = make_instance("10.0.0.1"), make_instance("10.0.0.2")
    gone = make_instance("10.0.0.3")
    h.apply(register(a), register(b))

    h.apply(SetInstanceHealth(changes=((a.key, False), (gone.key, False)), stamped_at_ms=T0))
    assert [i.healthy for i in h.state.instances(ORDERS)] == [False, True]

    h.apply(RemoveInstances(keys=(a.key, gone.key), stamped_at_ms=T0))
    assert [i.ip for i in h.state.instances(ORDERS)] == ["10.0.0.2"]


def owned(ip: str, owner: str, **fields: object) -> Instance:
    return make_instance(ip, owner=owner, **fields)


def test_release_owner_removes_only_what_the_owner_still_holds(h: Harness) -> None:
    mine, other, v1 = owned("10.0.0.1", "conn-a"), owned("10.0.0.2", "conn-b"), make_instance()
    gone = owned("10.0.0.9", "conn-a")
    persistent = owned("10.0.0.3", "conn-a", ephemeral=False)  # as a hand-built command
    h.apply(register(mine), register(other), register(make_instance("10.0.0.4")))
    h.apply(register(persistent))
    h.changed.clear()

    result = h.apply(
        ReleaseOwner(
            owner="conn-a",
            keys=(mine.key, other.key, v1.key, gone.key, persistent.key),
            stamped_at_ms=T0,
        )
    )

    assert result == Applied(h.index, frozenset({ORDERS}))
    assert h.changed == [ORDERS]
    left = [(i.ip, i.owner, i.ephemeral) for i in h.state.instances(ORDERS)]
    assert left == [
        ("10.0.0.2", "conn-b", True),
        ("10.0.0.4", "", True),
        ("10.0.0.3", "conn-a", False),
    ]


def test_release_owner_keeps_an_instance_re_registered_by_another_connection(
    h: Harness,
) -> None:
    # The client moved: it registers at node B (conn-b) before its old connection at
    # node A (conn-a) is closed; A's release must not take the new registration away.
    h.apply(register(owned("10.0.0.1", "conn-a")), register(owned("10.0.0.1", "conn-b")))
    before = h.snapshot()
    h.changed.clear()

    result = h.apply(
        ReleaseOwner(owner="conn-a", keys=(owned("10.0.0.1", "").key,), stamped_at_ms=T0)
    )

    assert result == Applied(h.index, frozenset())
    assert h.changed == []
    assert h.snapshot() == before  # nothing written: no version moved
    assert [i.owner for i in h.state.instances(ORDERS)] == ["conn-b"]


def test_re_registering_sets_the_owner_last_writer_wins(h: Harness) -> None:
    h.apply(register(owned("10.0.0.1", "conn-a")))
    h.apply(SetInstanceHealth(changes=((make_instance().key, False),), stamped_at_ms=T0))
    assert [(i.owner, i.healthy) for i in h.state.instances(ORDERS)] == [("conn-a", False)]

    h.apply(register(make_instance()))  # over v1: the instance is no longer bound
    assert [(i.owner, i.healthy) for i in h.state.instances(ORDERS)] == [("", False)]
    h.apply(ReleaseOwner(owner="conn-a", keys=(make_instance().key,), stamped_at_ms=T0))
    assert len(h.state.instances(ORDERS)) == 1

    h.apply(register(owned("10.0.0.1", "conn-c")))
    h.apply(PatchInstance(key=make_instance().key, weight=2.0, stamped_at_ms=T0))
    assert [i.owner for i in h.state.instances(ORDERS)] == ["conn-c"]  # a patch keeps it
    h.apply(UpdateInstance(instance=make_instance(), stamped_at_ms=T0))
    assert [i.owner for i in h.state.instances(ORDERS)] == [""]


def test_release_owner_skips_missing_services_and_an_empty_owner(h: Harness) -> None:
    nowhere = ServiceKey(namespace_id="public", group_name="G", service_name="none")
    elsewhere = owned("10.0.0.1", "", service=nowhere)
    h.apply(register(make_instance()))
    before = h.snapshot()

    assert h.apply(
        ReleaseOwner(owner="", keys=(make_instance().key,), stamped_at_ms=T0)
    ) == Applied(h.index)
    assert h.apply(
        ReleaseOwner(owner="conn-a", keys=(elsewhere.key,), stamped_at_ms=T0)
    ) == Applied(h.index)
    assert h.snapshot() == before


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"naming.release_owner","v":1,"owner":"","keys":[],"stamped_at_ms":1}',
        b'{"op":"naming.release_owner","v":1,"owner":"c","keys":[5],"stamped_at_ms":1}',
        b'{"op":"naming.release_owner","v":1,"keys":[],"stamped_at_ms":1}',
    ],
)
def test_an_undecodable_release_is_rejected_and_changes_nothing(h: Harness, payload: bytes) -> None:
    h.apply(register(owned("10.0.0.1", "c")))
    before = h.snapshot()
    result = h.state.apply_entry(payload, 99)
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.UNDECODABLE
    assert h.snapshot() == before


def test_service_lifecycle(h: Harness) -> None:
    create = CreateService(
        service=ORDERS, protect_threshold=0.5, metadata={"m": "1"}, stamped_at_ms=T0
    )
    assert isinstance(h.apply(create), Applied)
    assert h.apply(create) == Rejected(RejectReason.SERVICE_EXISTS, "DEFAULT_GROUP@@orders")

    selector = Selector(SelectorType.LABEL, "CONSUMER.label.a = PROVIDER.label.a")
    h.apply(
        UpdateService(service=ORDERS, protect_threshold=0.1, selector=selector, stamped_at_ms=T0)
    )
    service = h.state.service(ORDERS)
    assert service is not None
    assert (service.protect_threshold, service.metadata, service.selector) == (0.1, {}, selector)

    h.apply(register(make_instance(ephemeral=False)), register(make_instance()))
    assert isinstance(h.apply(DeleteService(service=ORDERS, stamped_at_ms=T0)), Applied)
    assert len(h.datums) == 0
    result = h.apply(DeleteService(service=ORDERS, stamped_at_ms=T0))
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.SERVICE_NOT_FOUND


def test_update_of_a_missing_service_is_rejected(h: Harness) -> None:
    result = h.apply(UpdateService(service=ORDERS, protect_threshold=0.1, stamped_at_ms=T0))
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.SERVICE_NOT_FOUND


def test_namespace_lifecycle(h: Harness) -> None:
    create = CreateNamespace(namespace_id="dev", show_name="Dev", stamped_at_ms=T0)
    h.apply(create)
    assert namespace_key("dev") in h.datums
    assert h.apply(create) == Rejected(RejectReason.NAMESPACE_EXISTS, "dev")
    h.apply(UpdateNamespace(namespace_id="dev", show_name="Develop", stamped_at_ms=T0))
    assert [n.show_name for n in h.state.namespaces()] == ["public", "Develop"]
    h.apply(DeleteNamespace(namespace_id="dev", stamped_at_ms=T0))
    assert [n.namespace_id for n in h.state.namespaces()] == ["public"]


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        pytest.param(
            CreateNamespace(namespace_id="public", show_name="x", stamped_at_ms=T0),
            RejectReason.NAMESPACE_EXISTS,
            id="create-public",
        ),
        pytest.param(
            DeleteNamespace(namespace_id="public", stamped_at_ms=T0),
            RejectReason.NAMESPACE_RESERVED,
            id="delete-public",
        ),
        pytest.param(
            DeleteNamespace(namespace_id="nope", stamped_at_ms=T0),
            RejectReason.NAMESPACE_NOT_FOUND,
            id="delete-unknown",
        ),
        pytest.param(
            UpdateNamespace(namespace_id="nope", show_name="x", stamped_at_ms=T0),
            RejectReason.NAMESPACE_NOT_FOUND,
            id="update-unknown",
        ),
        pytest.param(
            UpdateSwitches(entry="nope", value="1", stamped_at_ms=T0),
            RejectReason.INVALID_SWITCH,
            id="unknown-switch",
        ),
        pytest.param(
            UpdateSwitches(entry="distroThreshold", value="2", stamped_at_ms=T0),
            RejectReason.INVALID_SWITCH,
            id="switch-out-of-range",
        ),
    ],
)
def test_refusals_are_rejected_and_write_nothing(
    h: Harness, command: Command, reason: RejectReason
) -> None:
    result = h.apply(command)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert len(h.datums) == 0


def test_switch_update_is_stored_under_the_switch_key(h: Harness) -> None:
    h.apply(UpdateSwitches(entry="clientBeatInterval", value="7000", stamped_at_ms=T0))

    assert h.state.switches().client_beat_interval_ms == 7000
    datum = h.datums.get(SWITCH_KEY)
    assert datum is not None
    assert orjson.loads(datum.value)["clientBeatInterval"] == 7000


def test_apply_entry_rejects_garbage_on_every_replica(h: Harness) -> None:
    result = h.state.apply_entry(b"\x00garbage", 1)
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.UNDECODABLE
    assert len(h.datums) == 0


def test_apply_entry_decodes_and_applies(h: Harness) -> None:
    result = h.state.apply_entry(encode_command(register(make_instance())), 7)
    assert result == Applied(7, frozenset({ORDERS}))
    assert h.datums.get(service_meta_key(ORDERS)) == h.datums.get(service_meta_key(ORDERS))


HISTORY: list[Command] = [
    CreateNamespace(namespace_id="dev", show_name="Dev", stamped_at_ms=T0),
    register(make_instance("10.0.0.1", cluster_name="a", metadata={"x": "1"})),
    register(make_instance("10.0.0.2", ephemeral=False), stamp=T0 + 1),
    register(
        make_instance(
            "10.0.0.3",
            service=ORDERS.__class__(namespace_id="dev", group_name="G", service_name="pay"),
        )
    ),
    SetInstanceHealth(
        changes=((make_instance("10.0.0.1", cluster_name="a").key, False),), stamped_at_ms=T0 + 2
    ),
    CreateService(
        service=ServiceKey(namespace_id="public", group_name="G", service_name="s"),
        protect_threshold=0.3,
        stamped_at_ms=T0 + 3,
    ),
    UpdateSwitches(entry="defaultCacheMillis", value="4000", stamped_at_ms=T0 + 4),
    DeregisterInstance(key=make_instance("10.0.0.2", ephemeral=False).key, stamped_at_ms=T0 + 5),
    register(make_instance("10.0.0.4", owner="conn-a"), stamp=T0 + 6),
    register(make_instance("10.0.0.5", owner="conn-b"), stamp=T0 + 7),
    ReleaseOwner(owner="conn-b", keys=(make_instance("10.0.0.5").key,), stamped_at_ms=T0 + 8),
]


def test_same_commands_give_the_same_datums() -> None:
    first, second = Harness(), Harness()
    first.apply(*HISTORY)
    second.apply(*HISTORY)

    assert first.snapshot() == second.snapshot()
    assert len(first.snapshot()) == 8


def test_state_rebuilt_from_the_datums_answers_the_same_reads() -> None:
    original = Harness()
    original.apply(*HISTORY)

    restored = NamingState(DatumTable(original.snapshot()))

    assert restored.instances(ORDERS) == original.state.instances(ORDERS)
    assert {i.owner for i in restored.instances(ORDERS)} == {"", "conn-a"}
    assert restored.all_services() == original.state.all_services()
    assert restored.switches() == original.state.switches()
    assert restored.namespaces() == original.state.namespaces()


def test_feed_tells_only_the_changed_services_listeners(h: Harness) -> None:
    other = ServiceKey(namespace_id="public", group_name="G", service_name="other")
    heard: list[ServiceKey] = []
    subscription = h.feed.subscribe(ORDERS, heard.append)
    h.apply(register(make_instance(service=other)), register(make_instance()))
    subscription.cancel()
    h.apply(register(make_instance("10.9.9.9")))

    assert heard == [ORDERS]
    assert h.feed.listener_count(ORDERS) == 0


def test_a_failing_listener_does_not_stop_apply(h: Harness) -> None:
    def broken(service: ServiceKey) -> None:
        raise RuntimeError("boom")

    h.feed.subscribe(ORDERS, broken)

    assert isinstance(h.apply(register(make_instance())), Applied)
    assert len(h.state.instances(ORDERS)) == 1


def test_services_are_listed_per_namespace_and_group(h: Harness) -> None:
    g = ServiceKey(namespace_id="public", group_name="G", service_name="b")
    dev = ServiceKey(namespace_id="dev", group_name="DEFAULT_GROUP", service_name="c")
    h.apply(register(make_instance()), register(make_instance(service=g)))
    h.apply(register(make_instance(service=dev)))
    h.apply(UpdateSwitches(entry="pushEnabled", value="false", stamped_at_ms=T0))

    assert h.state.services("public") == (ORDERS, g)
    assert h.state.services("public", "G") == (g,)
    assert h.state.services("dev") == (dev,)
    assert h.state.all_services() == (dev, ORDERS, g)


def test_datums_replaced_wholesale_tell_the_feed_about_their_services(h: Harness) -> None:
    """A digest catch-up installs datums without applying entries: the services whose
    metadata or instance lists came in are published once each, nothing else is."""
    source = Harness()
    payments = ServiceKey(namespace_id="dev", group_name="G", service_name="payments")
    source.apply(
        CreateNamespace(namespace_id="dev", show_name="dev", stamped_at_ms=T0),
        register(make_instance(ephemeral=False)),
        register(make_instance(ephemeral=True)),
        register(make_instance(service=payments)),
        UpdateSwitches(entry="distroThreshold", value="0.5", stamped_at_ms=T0),
    )
    installed = source.snapshot()
    assert SWITCH_KEY in installed
    assert namespace_key("dev") in installed
    h.datums.replace_all(installed)

    published = h.state.publish_replaced(installed)

    assert published == {ORDERS, payments}
    assert sorted(h.changed, key=str) == sorted([ORDERS, payments], key=str)
    assert h.state.publish_replaced([SWITCH_KEY, namespace_key("dev"), "kv.some-key"]) == set()
    assert len(h.changed) == 2


@pytest.mark.parametrize("size", [10, 2_000])
def test_a_registration_writes_one_instance_whatever_the_size_of_its_service(
    h: Harness, size: int
) -> None:
    for n in range(size):
        h.apply(register(make_instance(f"10.0.{n // 250}.{n % 250}", ephemeral=False)))
    h.datums.drain_changes()

    h.apply(register(make_instance("11.0.0.1", ephemeral=False)))
    h.apply(PatchInstance(key=make_instance("10.0.0.1", ephemeral=False).key, weight=3.0,
                          stamped_at_ms=T0))  # fmt: skip

    changes = h.datums.drain_changes()
    assert set(changes.puts) == {
        instance_datum_key(make_instance(ip, ephemeral=False).key)
        for ip in ("11.0.0.1", "10.0.0.1")
    }
    assert len(h.state.instances(ORDERS)) == size + 1


def test_a_deleted_or_replaced_away_service_leaves_no_decoded_list_behind(h: Harness) -> None:
    """The decoded records of a list are memory: a service deleted, or whose instances a
    digest install removed, must not keep them."""
    orders, other = make_instance(), make_instance(service=ServiceKey(
        namespace_id="public", group_name="G", service_name="other"))  # fmt: skip
    h.apply(register(orders), register(other))
    assert len(h.state.instances(ORDERS)) == len(h.state.instances(other.service)) == 1
    assert len(h.state._lists) == 2

    h.apply(DeleteService(service=ORDERS, stamped_at_ms=T0))
    h.datums.delete(instance_datum_key(other.key))  # as a digest install removes a key
    h.state.publish_replaced([instance_datum_key(other.key)])

    assert len(h.state._lists) == 0
    assert h.state._lists.held == 0


def service_named(name: str) -> ServiceKey:
    return ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name=name)


def fill(h: Harness, sizes: dict[str, int]) -> None:
    """Register `size` instances into each service named."""
    for name, size in sizes.items():
        for n in range(size):
            h.apply(register(make_instance(f"10.1.0.{n}", service=service_named(name))))


def test_counting_the_instances_decodes_none_of_them(h: Harness) -> None:
    """Metrics and the state view count the registry every few seconds: counting it must
    not leave every instance decoded in memory."""
    fill(h, {"a": 3, "b": 5})
    h.apply(register(make_instance("10.2.0.1", service=service_named("b"), ephemeral=False)))

    assert h.state.instance_count() == 9
    assert h.state.service_instance_count(service_named("b")) == 6
    assert h.state.service_instance_count(service_named("absent")) == 0
    assert len(h.state._lists) == 0


def test_decoded_lists_past_the_bound_go_least_recently_read_first() -> None:
    h = Harness(decoded_instances_kept=6)
    fill(h, {"a": 3, "b": 3, "c": 3})
    a, b, c = (service_named(n) for n in "abc")

    assert len(h.state.instances(a)) == len(h.state.instances(b)) == 3
    assert h.state._lists.held == 6
    h.state.instances(a)  # a is now read more recently than b
    assert len(h.state.instances(c)) == 3  # 9 > 6: b goes

    assert h.state._lists.held == 6
    assert h.state._lists.get(instance_list_key(b, ephemeral=True)) is None
    assert h.state._lists.get(instance_list_key(a, ephemeral=True)) is not None
    # a dropped list reads the same when decoded again
    assert [i.ip for i in h.state.instances(b)] == ["10.1.0.0", "10.1.0.1", "10.1.0.2"]


def test_a_list_larger_than_the_bound_stays_while_it_is_the_latest_read() -> None:
    h = Harness(decoded_instances_kept=4)
    fill(h, {"small": 2, "big": 7})
    small, big = service_named("small"), service_named("big")

    h.state.instances(small)
    listed = h.state._listed(big, ephemeral=True)
    assert h.state._listed(big, ephemeral=True) is listed  # kept: not decoded again
    assert h.state._lists.held == 7
    assert len(h.state._lists) == 1


def test_writes_into_a_kept_list_are_counted_against_the_bound() -> None:
    h = Harness(decoded_instances_kept=5)
    fill(h, {"a": 2, "b": 2})
    a, b = service_named("a"), service_named("b")
    h.state.instances(a)
    h.state.instances(b)
    assert h.state._lists.held == 4

    h.apply(register(make_instance("10.9.0.1", service=b)))  # b brought along: 5
    assert h.state._lists.held == 5
    assert len(h.state._lists) == 2
    h.apply(register(make_instance("10.9.0.2", service=b)))  # 6 > 5: a goes
    assert h.state._lists.held == 4
    assert h.state._lists.get(instance_list_key(a, ephemeral=True)) is None
    h.apply(DeregisterInstance(key=make_instance("10.9.0.1", service=b).key, stamped_at_ms=T0))
    assert h.state._lists.held == 3
    assert len(h.state.instances(b)) == 3


def whole_list(service: ServiceKey, *instances: Instance) -> bytes:
    """An instance list as naraft wrote it before each instance had a datum of its own."""
    return orjson.dumps({"instanceList": [instance_record(i) for i in instances]})


def test_a_list_written_whole_reads_and_is_split_by_the_next_change(h: Harness) -> None:
    a, b = make_instance("10.0.0.1", weight=2.0), make_instance("10.0.0.2")
    list_key = instance_list_key(ORDERS, ephemeral=True)
    meta = encode_service(Service(key=ORDERS, clusters={"DEFAULT": Cluster(name="DEFAULT")}))
    h.datums.replace_all(
        {service_meta_key(ORDERS): Datum(meta, 6), list_key: Datum(whole_list(ORDERS, a, b), 7)}
    )
    h.index = 7

    assert h.state.instance_count() == 2
    assert h.state.instances(ORDERS) == (a, b)
    assert h.state.find_instance(ORDERS, cluster_name="DEFAULT", ip="10.0.0.1", port=8080) == a
    assert [s for s, _ in h.state.ephemeral_lists()] == [ORDERS]

    h.apply(SetInstanceHealth(changes=((b.key, False),), stamped_at_ms=T0))

    assert list_key not in h.datums
    assert {k: d.version for k, d in h.datums.group_items(list_key)} == {
        instance_datum_key(a.key): 8,
        instance_datum_key(b.key): 8,
    }
    assert [(i.ip, i.weight, i.healthy) for i in h.state.instances(ORDERS)] == [
        ("10.0.0.1", 2.0, True),
        ("10.0.0.2", 1.0, False),
    ]


def test_find_instance_follows_every_change_of_the_lists(h: Harness) -> None:
    """`find_instance` answers from an index kept per stored list: each change, a datum
    installed wholesale included, must show in the next look-up."""

    def find(ip: str = "10.0.0.1", cluster: str = "DEFAULT") -> tuple[bool, float] | None:
        found = h.state.find_instance(ORDERS, cluster_name=cluster, ip=ip, port=8080)
        return None if found is None else (found.ephemeral, found.weight)

    assert find() is None
    h.apply(register(make_instance(ephemeral=False, weight=2.0)))
    assert find() == (False, 2.0)
    h.apply(register(make_instance(weight=3.0)))  # ephemeral ones are looked at first
    assert find() == (True, 3.0)
    h.apply(UpdateInstance(instance=make_instance(weight=4.0), stamped_at_ms=T0))
    assert find() == (True, 4.0)
    assert find(cluster="other") is None
    assert find(ip="10.0.0.2") is None
    h.apply(DeregisterInstance(key=make_instance().key, stamped_at_ms=T0))
    assert find() == (False, 2.0)
    other = Harness()
    other.apply(register(make_instance(ip="10.0.0.2", ephemeral=False)))
    h.datums.replace_all(other.snapshot())
    assert find() is None
    assert find(ip="10.0.0.2") == (False, 1.0)


# ------------------------------------------------------------ batch metadata


def target(instance: Instance) -> MetadataTarget:
    return MetadataTarget(
        ephemeral=instance.ephemeral,
        cluster_name=instance.cluster_name,
        ip=instance.ip,
        port=instance.port,
    )


def merge(
    *listed: Instance,
    scope: MetadataScope = MetadataScope.LISTED,
    action: MetadataAction = MetadataAction.MERGE,
    service: ServiceKey = ORDERS,
    **metadata: str,
) -> UpdateMetadata:
    return UpdateMetadata(
        service=service,
        action=action,
        scope=scope,
        targets=tuple(target(i) for i in listed),
        metadata=metadata,
        stamped_at_ms=T0,
    )


def metadata_of(h: Harness) -> dict[tuple[str, bool], dict[str, str]]:
    return {(i.ip, i.ephemeral): dict(i.metadata) for i in h.state.instances(ORDERS)}


def test_a_merge_replaces_present_keys_and_adds_absent_ones(h: Harness) -> None:
    a = make_instance(metadata={"zone": "a", "keep": "1"})
    h.apply(register(a), register(make_instance("10.0.0.2", metadata={"zone": "a"})))

    result = h.apply(merge(a, zone="b", added="2"))

    assert result == MetadataUpdated(3, frozenset({ORDERS}), (a.key,))
    assert metadata_of(h) == {
        ("10.0.0.1", True): {"zone": "b", "keep": "1", "added": "2"},
        ("10.0.0.2", True): {"zone": "a"},
    }
    assert h.datums.get(instance_datum_key(a.key)).version == 3  # type: ignore[union-attr]
    assert h.changed == [ORDERS, ORDERS, ORDERS]


def test_a_removal_drops_the_keys_named_whatever_their_values(h: Harness) -> None:
    a = make_instance(metadata={"zone": "a", "keep": "1", "gone": "x"})
    h.apply(register(a))

    result = h.apply(merge(a, action=MetadataAction.REMOVE, zone="ignored", gone="", absent="1"))

    assert result == MetadataUpdated(2, frozenset({ORDERS}), (a.key,))
    assert metadata_of(h) == {("10.0.0.1", True): {"keep": "1"}}


@pytest.mark.parametrize(
    ("scope", "chosen"),
    [
        pytest.param(MetadataScope.EPHEMERAL, [("10.0.0.1", True), ("10.0.0.3", True)], id="eph"),
        pytest.param(MetadataScope.PERSISTENT, [("10.0.0.2", False)], id="persist"),
    ],
)
def test_a_scope_selects_every_instance_of_its_kind_and_ignores_the_targets(
    h: Harness, scope: MetadataScope, chosen: list[tuple[str, bool]]
) -> None:
    h.apply(
        register(make_instance("10.0.0.1")),
        register(make_instance("10.0.0.2", ephemeral=False)),
        register(make_instance("10.0.0.3", cluster_name="c1")),
        register(make_instance("10.0.0.4", service=ServiceKey(
            namespace_id="public", group_name="DEFAULT_GROUP", service_name="other")))
    )  # fmt: skip

    result = h.apply(merge(scope=scope, zone="b"))

    assert isinstance(result, MetadataUpdated)
    assert [(k.ip, k.ephemeral) for k in result.updated] == chosen
    assert {ip_kind for ip_kind, meta in metadata_of(h).items() if meta} == set(chosen)


def test_listed_targets_that_do_not_exist_are_passed_over(h: Harness) -> None:
    a, b = make_instance("10.0.0.1"), make_instance("10.0.0.2", ephemeral=False)
    h.apply(register(a), register(b))
    wrong_kind = make_instance("10.0.0.1", ephemeral=False)
    wrong_cluster = make_instance("10.0.0.2", ephemeral=False, cluster_name="c1")

    result = h.apply(merge(b, make_instance("10.0.0.9"), wrong_kind, wrong_cluster, a, b, k="v"))

    assert isinstance(result, MetadataUpdated)
    assert result.updated == (b.key, a.key)  # in the order listed, each once
    assert metadata_of(h) == {("10.0.0.1", True): {"k": "v"}, ("10.0.0.2", False): {"k": "v"}}


def test_a_missing_service_selects_nothing_and_writes_nothing(h: Harness) -> None:
    h.apply(register(make_instance()))
    before = h.snapshot()
    other = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="other")

    for scope in MetadataScope:
        result = h.apply(merge(make_instance(service=other), scope=scope, service=other, k="v"))
        assert result == MetadataUpdated(h.index)

    assert h.snapshot() == before
    assert h.changed == [ORDERS]


def test_metadata_already_as_asked_is_selected_but_changes_no_service(h: Harness) -> None:
    a = make_instance(metadata={"zone": "b"})
    h.apply(register(a))
    before = h.snapshot()

    merged = h.apply(merge(a, zone="b"))
    removed = h.apply(merge(a, action=MetadataAction.REMOVE, absent=""))

    assert merged == MetadataUpdated(2, frozenset(), (a.key,))
    assert removed == MetadataUpdated(3, frozenset(), (a.key,))
    assert h.snapshot() == before
    assert h.changed == [ORDERS]


def full_metadata(count: int = MAX_METADATA_ENTRIES) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(count)}


@pytest.mark.parametrize(
    ("change", "breaker", "rule"),
    [
        # the first instance would take it: the one after it decides, and nothing is written
        pytest.param({"new": "1"}, "10.0.0.2", "at most 128 entries", id="too-many-entries"),
        pytest.param(
            {"k0": "v" * (MAX_METADATA_VALUE_CHARS + 1)},
            "10.0.0.1",
            "at most 16384 chars",
            id="value-too-long",
        ),
        pytest.param({"": "v"}, "10.0.0.1", "keys must be 1..256 chars", id="empty-key"),
    ],
)
def test_a_change_past_the_metadata_bounds_on_any_instance_changes_nothing(
    h: Harness, change: dict[str, str], breaker: str, rule: str
) -> None:
    roomy = make_instance("10.0.0.1")
    full = make_instance("10.0.0.2", metadata=full_metadata())
    h.apply(register(roomy), register(full))
    before = h.snapshot()

    result = h.apply(merge(scope=MetadataScope.EPHEMERAL, **change))

    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.METADATA_BOUNDS
    assert rule in result.detail
    assert f"{breaker}#8080#DEFAULT#DEFAULT_GROUP@@orders" in result.detail
    assert h.snapshot() == before
    assert h.changed == [ORDERS, ORDERS]


def test_a_removal_may_bring_metadata_back_within_its_bounds(h: Harness) -> None:
    full = make_instance(metadata=full_metadata())
    h.apply(register(full))

    result = h.apply(merge(full, action=MetadataAction.REMOVE, k0=""))

    assert isinstance(result, MetadataUpdated)
    assert len(metadata_of(h)[("10.0.0.1", True)]) == MAX_METADATA_ENTRIES - 1


def test_a_rejected_change_leaves_a_list_written_whole_as_it_was(h: Harness) -> None:
    a = make_instance("10.0.0.1", metadata=full_metadata())
    b = make_instance("10.0.0.2")
    list_key = instance_list_key(ORDERS, ephemeral=True)
    meta = encode_service(Service(key=ORDERS, clusters={"DEFAULT": Cluster(name="DEFAULT")}))
    h.datums.replace_all(
        {service_meta_key(ORDERS): Datum(meta, 6), list_key: Datum(whole_list(ORDERS, a, b), 7)}
    )
    h.index = 7
    before = h.snapshot()

    rejected = h.apply(merge(b, a, extra="1"))
    assert isinstance(rejected, Rejected)
    assert h.snapshot() == before

    applied = h.apply(merge(b, zone="z"))
    assert applied == MetadataUpdated(9, frozenset({ORDERS}), (b.key,))
    assert list_key not in h.datums  # split by the change, as any change splits it
    assert metadata_of(h)[("10.0.0.2", True)] == {"zone": "z"}


def test_a_metadata_change_gives_every_replica_the_same_datums() -> None:
    def replay() -> dict[str, Datum]:
        replica = Harness()
        for index, payload in enumerate(payloads, start=1):
            replica.state.apply_entry(payload, index)
        return replica.snapshot()

    payloads = [
        encode_command(register(make_instance("10.0.0.1", metadata={"a": "1"}))),
        encode_command(register(make_instance("10.0.0.2", ephemeral=False))),
        encode_command(merge(scope=MetadataScope.EPHEMERAL, b="2")),
        encode_command(merge(make_instance("10.0.0.2", ephemeral=False), c="3")),
        encode_command(merge(scope=MetadataScope.PERSISTENT, action=MetadataAction.REMOVE, c="")),
    ]
    first = replay()
    assert first == replay()
    h = Harness()
    h.datums.replace_all(first)
    assert metadata_of(h) == {("10.0.0.1", True): {"a": "1", "b": "2"}, ("10.0.0.2", False): {}}
