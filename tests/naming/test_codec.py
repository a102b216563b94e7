"""Command codec: every command round-trips; anything else raises CommandDecodeError."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from naraft.naming.codec import OP_NAMES, decode_command, encode_command
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
    UpdateCluster,
    UpdateInstance,
    UpdateMetadata,
    UpdateNamespace,
    UpdateService,
    UpdateSwitches,
)
from naraft.naming.errors import CommandDecodeError
from naraft.naming.keys import InstanceKey, ServiceKey
from naraft.naming.model import (
    CHECKER_FIELDS,
    MAX_OWNER_CHARS,
    Cluster,
    HealthCheckerType,
    Instance,
    Selector,
    SelectorType,
)
from naraft.naming.validate import MAX_METADATA_BATCH, MAX_METADATA_ENTRIES

text = st.text(max_size=20)
stamps = st.integers(min_value=0, max_value=2**53)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)
string_maps = st.dictionaries(text, text, max_size=4)
services = st.builds(ServiceKey, namespace_id=text, group_name=text, service_name=text)
instance_keys = st.builds(
    InstanceKey,
    service=services,
    ephemeral=st.booleans(),
    cluster_name=text,
    ip=text,
    port=st.integers(min_value=0, max_value=65_535),
)
instances = st.builds(
    Instance,
    service=services,
    ip=text,
    port=st.integers(min_value=0, max_value=65_535),
    cluster_name=text,
    weight=numbers,
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=string_maps,
    owner=st.just("") | st.text(min_size=1, max_size=MAX_OWNER_CHARS),
)
owners = st.text(min_size=1, max_size=MAX_OWNER_CHARS)
selectors = st.builds(Selector, st.sampled_from(SelectorType), text)

targets = st.builds(
    MetadataTarget,
    ephemeral=st.booleans(),
    cluster_name=text,
    ip=text,
    port=st.integers(min_value=0, max_value=65_535),
)
metadata_changes = st.one_of(
    st.builds(
        UpdateMetadata,
        service=services,
        action=st.sampled_from(MetadataAction),
        scope=st.just(MetadataScope.LISTED),
        targets=st.lists(targets, max_size=3).map(tuple),
        metadata=string_maps,
        stamped_at_ms=stamps,
    ),
    st.builds(
        UpdateMetadata,
        service=services,
        action=st.sampled_from(MetadataAction),
        scope=st.sampled_from([MetadataScope.EPHEMERAL, MetadataScope.PERSISTENT]),
        metadata=string_maps,
        stamped_at_ms=stamps,
    ),
)


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    kind = draw(st.sampled_from(HealthCheckerType))
    options = {
        name: draw(st.integers(100, 599) if isinstance(unset, int) else text)
        for name, unset in CHECKER_FIELDS.get(kind, {}).items()
        if draw(st.booleans())
    }
    return Cluster(
        name=draw(st.text(min_size=1, max_size=20)),
        health_checker_type=kind,
        metadata=draw(string_maps),
        check_port=draw(st.integers(0, 65_535)),
        use_instance_port=draw(st.booleans()),
        checker_options=options,
    )


cluster_updates = st.builds(
    UpdateCluster, service=services, cluster=clusters(), stamped_at_ms=stamps
)
commands: st.SearchStrategy[Command] = st.one_of(
    cluster_updates,
    metadata_changes,
    st.builds(
        CreateNamespace, namespace_id=text, show_name=text, description=text, stamped_at_ms=stamps
    ),
    st.builds(
        UpdateNamespace, namespace_id=text, show_name=text, description=text, stamped_at_ms=stamps
    ),
    st.builds(DeleteNamespace, namespace_id=text, stamped_at_ms=stamps),
    st.builds(
        CreateService,
        service=services,
        protect_threshold=numbers,
        metadata=string_maps,
        selector=selectors,
        stamped_at_ms=stamps,
    ),
    st.builds(
        UpdateService,
        service=services,
        protect_threshold=numbers,
        metadata=string_maps,
        selector=selectors,
        stamped_at_ms=stamps,
    ),
    st.builds(DeleteService, service=services, stamped_at_ms=stamps),
    st.builds(RegisterInstance, instance=instances, stamped_at_ms=stamps),
    st.builds(UpdateInstance, instance=instances, stamped_at_ms=stamps),
    st.builds(
        PatchInstance,
        key=instance_keys,
        weight=st.none() | numbers,
        metadata=st.none() | string_maps,
        enabled=st.none() | st.booleans(),
        healthy=st.none() | st.booleans(),
        stamped_at_ms=stamps,
    ),
    st.builds(DeregisterInstance, key=instance_keys, stamped_at_ms=stamps),
    st.builds(
        SetInstanceHealth,
        changes=st.lists(st.tuples(instance_keys, st.booleans()), max_size=3).map(tuple),
        stamped_at_ms=stamps,
    ),
    st.builds(
        RemoveInstances, keys=st.lists(instance_keys, max_size=3).map(tuple), stamped_at_ms=stamps
    ),
    st.builds(
        ReleaseOwner,
        owner=owners,
        keys=st.lists(instance_keys, max_size=3).map(tuple),
        stamped_at_ms=stamps,
    ),
    st.builds(UpdateSwitches, entry=text, value=text, stamped_at_ms=stamps),
)


@given(commands)
def test_every_command_round_trips(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


@given(commands)
def test_encoding_carries_op_and_version(command: Command) -> None:
    data = orjson.loads(encode_command(command))
    assert data["op"] in OP_NAMES
    assert data["v"] == 1
    assert data["stamped_at_ms"] == command.stamped_at_ms


def test_op_names_are_stable() -> None:
    assert OP_NAMES == (
        "naming.create_namespace",
        "naming.update_namespace",
        "naming.delete_namespace",
        "naming.create_service",
        "naming.update_service",
        "naming.delete_service",
        "naming.register_instance",
        "naming.update_instance",
        "naming.patch_instance",
        "naming.deregister_instance",
        "naming.set_instance_health",
        "naming.remove_instances",
        "naming.release_owner",
        "naming.update_switches",
        "naming.update_metadata",
        "naming.update_cluster",
    )


SVC = ServiceKey(namespace_id="n", group_name="g", service_name="s")
VALID = encode_command(DeleteNamespace(namespace_id="x", stamped_at_ms=1))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'{"v": 1}', id="no-op"),
        pytest.param(b'{"op": "kv.put", "v": 1, "stamped_at_ms": 1}', id="other-domain"),
        pytest.param(b'{"op": "naming.fly", "v": 1, "stamped_at_ms": 1}', id="unknown-op"),
        pytest.param(VALID.replace(b'"v":1', b'"v":99'), id="future-version"),
        pytest.param(VALID.replace(b'"x"', b"7"), id="wrong-field-type"),
        pytest.param(VALID.replace(b',"stamped_at_ms":1', b""), id="no-stamp"),
        pytest.param(
            b'{"op":"naming.remove_instances","v":1,"keys":[5],"stamped_at_ms":1}',
            id="bad-batch-item",
        ),
        pytest.param(
            b'{"op":"naming.set_instance_health","v":1,"changes":[[{}, "yes"]],"stamped_at_ms":1}',
            id="bad-health-change",
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"keys":[],"stamped_at_ms":1}', id="no-owner"
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"owner":"","keys":[],"stamped_at_ms":1}',
            id="empty-owner",
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"owner":7,"keys":[],"stamped_at_ms":1}',
            id="owner-not-text",
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"owner":"'
            + b"c" * (MAX_OWNER_CHARS + 1)
            + b'","keys":[],"stamped_at_ms":1}',
            id="owner-too-long",
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"owner":"c","keys":[{}],"stamped_at_ms":1}',
            id="release-bad-key",
        ),
        pytest.param(
            b'{"op":"naming.release_owner","v":1,"owner":"c","keys":{},"stamped_at_ms":1}',
            id="release-keys-not-array",
        ),
        pytest.param(
            encode_command(
                RegisterInstance(
                    instance=Instance(service=SVC, ip="1", port=1, owner="c"),
                    stamped_at_ms=1,
                )
            ).replace(b'"owner":"c"', b'"owner":""'),
            id="register-empty-owner",
        ),
    ],
)
def test_garbage_raises_a_typed_error(payload: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(payload)


def test_a_v1_registration_encodes_without_owner_and_old_entries_decode_as_v1() -> None:
    instance = Instance(service=SVC, ip="10.0.0.1", port=80)
    payload = encode_command(RegisterInstance(instance=instance, stamped_at_ms=1))
    assert b"owner" not in payload  # byte-for-byte what a build without owners wrote
    decoded = decode_command(payload)
    assert isinstance(decoded, RegisterInstance)
    assert decoded.instance.owner == ""
    owned = RegisterInstance(instance=replace(instance, owner="conn-1"), stamped_at_ms=1)
    assert orjson.loads(encode_command(owned))["instance"]["owner"] == "conn-1"


@given(metadata_changes)
def test_every_metadata_change_round_trips(command: UpdateMetadata) -> None:
    """Its own property: among every command, a few dozen examples would leave out some
    action or scope."""
    assert decode_command(encode_command(command)) == command


def metadata_change(**fields: object) -> bytes:
    """An update_metadata payload as a member writes it, with `fields` replaced."""
    command = UpdateMetadata(
        service=SVC,
        action=MetadataAction.MERGE,
        scope=MetadataScope.LISTED,
        targets=(MetadataTarget(ephemeral=True, cluster_name="DEFAULT", ip="10.0.0.1", port=80),),
        metadata={"k": "v"},
        stamped_at_ms=1,
    )
    return orjson.dumps({**orjson.loads(encode_command(command)), **fields})


def test_a_metadata_change_encodes_its_targets_within_its_service() -> None:
    data = orjson.loads(metadata_change())
    assert data == {
        "op": "naming.update_metadata",
        "v": 1,
        "service": {"ns": "n", "group": "g", "name": "s"},
        "action": "merge",
        "scope": "listed",
        "targets": [{"ephemeral": True, "cluster": "DEFAULT", "ip": "10.0.0.1", "port": 80}],
        "metadata": {"k": "v"},
        "stamped_at_ms": 1,
    }
    decoded = decode_command(metadata_change())
    assert isinstance(decoded, UpdateMetadata)
    assert decoded.targets[0].key(SVC).instance_id == "10.0.0.1#80#DEFAULT#g@@s"


TARGET = {"ephemeral": True, "cluster": "DEFAULT", "ip": "10.0.0.1", "port": 80}


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"action": "replace"}, id="unknown-action"),
        pytest.param({"action": None}, id="action-not-text"),
        pytest.param({"scope": "all"}, id="unknown-scope"),
        pytest.param({"scope": "ephemeral"}, id="targets-with-scope-ephemeral"),
        pytest.param({"scope": "persist"}, id="targets-with-scope-persist"),
        pytest.param({"targets": {}}, id="targets-not-array"),
        pytest.param({"targets": [7]}, id="target-not-object"),
        pytest.param({"targets": [{**TARGET, "port": "80"}]}, id="target-port-not-integer"),
        pytest.param({"targets": [{**TARGET, "ephemeral": "true"}]}, id="target-flag-not-bool"),
        pytest.param({"targets": [{"ip": "10.0.0.1", "port": 80}]}, id="target-incomplete"),
        pytest.param({"targets": [TARGET] * (MAX_METADATA_BATCH + 1)}, id="too-many-targets"),
        pytest.param({"metadata": {"k": 1}}, id="metadata-value-not-text"),
        pytest.param({"metadata": None}, id="metadata-null"),
        pytest.param(
            {"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}},
            id="too-many-metadata-entries",
        ),
        pytest.param({"service": {"ns": "n", "group": "g"}}, id="service-incomplete"),
    ],
)
def test_a_malformed_metadata_change_raises_a_typed_error(fields: dict[str, object]) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(metadata_change(**fields))


def test_a_metadata_change_at_its_bounds_decodes() -> None:
    payload = metadata_change(
        targets=[{**TARGET, "port": port} for port in range(1, MAX_METADATA_BATCH + 1)],
        metadata={f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)},
    )
    decoded = decode_command(payload)
    assert isinstance(decoded, UpdateMetadata)
    assert len(decoded.targets) == MAX_METADATA_BATCH


@given(st.binary(max_size=64))
def test_random_bytes_never_raise_anything_else(payload: bytes) -> None:
    with contextlib.suppress(CommandDecodeError):
        decode_command(payload)


@given(cluster_updates)
def test_every_cluster_update_round_trips(command: UpdateCluster) -> None:
    assert decode_command(encode_command(command)) == command


def cluster_update(**fields: object) -> bytes:
    """An update_cluster payload as a member writes it, with cluster `fields` replaced."""
    cluster = Cluster(
        name="c1",
        health_checker_type=HealthCheckerType.HTTP,
        checker_options={"path": "/h", "expectedResponseCode": 200},
    )
    data = orjson.loads(
        encode_command(UpdateCluster(service=SVC, cluster=cluster, stamped_at_ms=1))
    )
    data["cluster"] = {**data["cluster"], **fields}
    return orjson.dumps(data)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"name": ""}, id="no-name"),
        pytest.param({"name": "c" * 65}, id="long-name"),
        pytest.param({"checker": "GRPC"}, id="unknown-checker"),
        pytest.param({"options": {"user": "u"}}, id="option-of-another-type"),
        pytest.param({"options": {"path": 1}}, id="option-not-text"),
        pytest.param({"options": {"expectedResponseCode": "200"}}, id="code-not-integer"),
        pytest.param({"options": {"path": "p" * 1025}}, id="option-too-long"),
        pytest.param({"check_port": 65_536}, id="port-out-of-range"),
        pytest.param({"use_instance_port": "true"}, id="flag-not-bool"),
        pytest.param(
            {"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)}},
            id="too-many-metadata-entries",
        ),
    ],
)
def test_a_malformed_cluster_update_raises_a_typed_error(fields: dict[str, object]) -> None:
    decode_command(cluster_update())  # the unbroken one decodes
    with pytest.raises(CommandDecodeError):
        decode_command(cluster_update(**fields))
