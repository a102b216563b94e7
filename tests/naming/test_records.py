"""Instance records: `stored_instance` is what a decode of the encoded record gives, and a
list written whole (before instances had datums of their own) reads back the same records.

The state machine keeps `stored_instance(...)` as the decoded view of the instance datum it
just wrote; a node that restarts decodes the datum instead. Any difference (a field, the
order of metadata keys, the type of the weight) would make a restarted node answer
differently from one that never restarted, so it is checked over arbitrary inputs.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.naming.test_codec import clusters

from naraft.naming.errors import CorruptDatumError
from naraft.naming.keys import ServiceKey, instance_datum_key, instance_list_key
from naraft.naming.model import Cluster, Instance, Service
from naraft.naming.records import (
    cluster_record,
    decode_instance,
    decode_instances,
    decode_service,
    encode_instance,
    encode_service,
    instance_record,
    instance_sort_key,
    stored_instance,
)

SERVICE = ServiceKey(namespace_id="public", group_name="G", service_name="svc")
OTHER = ServiceKey(namespace_id="dev", group_name="G", service_name="svc")
KEY = instance_list_key(SERVICE, ephemeral=False)

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
instances = st.builds(
    Instance,
    service=st.sampled_from([SERVICE, OTHER]),
    ip=st.sampled_from(["10.0.0.1", "10.0.0.2", "::1", "host"]),
    port=st.integers(min_value=1, max_value=65535),
    cluster_name=st.sampled_from(["", "DEFAULT", "c1", "Zz"]),
    weight=st.one_of(st.integers(0, 10_000), st.floats(0, 10_000, allow_nan=False)),
    healthy=st.booleans(),
    enabled=st.booleans(),
    ephemeral=st.booleans(),
    metadata=st.dictionaries(texts, texts, max_size=5),
    owner=st.sampled_from(["", "conn-1", "1700000000000_10.0.0.9_52001"]),
)


@given(instances)
def test_stored_instance_is_the_decoded_encoding(given_instance: Instance) -> None:
    key = instance_datum_key(given_instance.key)
    decoded = decode_instance(key, encode_instance(given_instance), SERVICE)
    stored = stored_instance(given_instance, SERVICE)
    assert stored == decoded
    assert list(stored.metadata) == list(decoded.metadata)
    assert type(stored.weight) is type(decoded.weight)
    # and it is a fixed point: storing the decoded view again changes nothing
    assert stored_instance(decoded, SERVICE) == decoded


def test_an_already_stored_instance_is_reused_as_it_is() -> None:
    stored = stored_instance(Instance(service=SERVICE, ip="10.0.0.1", port=80), SERVICE)
    assert stored_instance(stored, SERVICE) is stored


def old_list(given: list[Instance]) -> bytes:
    """An instance list as naraft wrote it whole before each instance had its own datum."""
    records = [instance_record(i) for i in sorted(given, key=instance_sort_key)]
    return orjson.dumps({"instanceList": records})


def stored_identity(instance: Instance) -> tuple[str, str, int, bool]:
    """An instance's identity as a stored list holds it: a blank cluster reads as DEFAULT,
    so a list never held both."""
    return instance_sort_key(stored_instance(instance, SERVICE))


@given(st.lists(instances, max_size=8, unique_by=stored_identity))
def test_a_list_written_whole_reads_as_its_records_one_by_one(given: list[Instance]) -> None:
    """A whole list held each identity once (register replaced a record in place)."""
    listed = decode_instances(KEY, old_list(given), SERVICE)
    one_by_one = [decode_instance(KEY, encode_instance(i), SERVICE) for i in given]
    assert listed == tuple(sorted(one_by_one, key=instance_sort_key))


def test_owner_round_trips_and_a_v1_record_is_unchanged() -> None:
    v1 = Instance(service=SERVICE, ip="10.0.0.1", port=80)
    owned = Instance(service=SERVICE, ip="10.0.0.2", port=80, owner="conn-1")
    assert "owner" not in orjson.loads(encode_instance(v1))  # the fields it had before owners
    assert orjson.loads(encode_instance(owned))["owner"] == "conn-1"
    assert decode_instance(KEY, encode_instance(owned), SERVICE).owner == "conn-1"
    assert decode_instance(KEY, encode_instance(v1), SERVICE).owner == ""


def test_a_record_written_before_owners_existed_decodes_as_v1() -> None:
    old = (
        b'{"instanceId":"10.0.0.1#80#DEFAULT#G@@svc","ip":"10.0.0.1",'
        b'"port":80,"weight":1.0,"healthy":true,"enabled":true,"ephemeral":true,'
        b'"clusterName":"DEFAULT","serviceName":"G@@svc","metadata":{},"marked":false}'
    )
    instance = decode_instance(KEY, old, SERVICE)
    assert instance.owner == ""
    assert encode_instance(instance) == old
    (listed,) = decode_instances(KEY, b'{"instanceList":[%s]}' % old, SERVICE)
    assert listed == instance
    odd = decode_instance(KEY, old.replace(b'"marked":false', b'"owner":7'), SERVICE)
    assert odd.owner == ""  # a corrupt owner reads as none, as other lenient fields do


@given(st.lists(clusters(), max_size=3))
def test_a_service_with_updated_clusters_round_trips(cluster_list: list[Cluster]) -> None:
    key = ServiceKey(namespace_id="public", group_name="G", service_name="s")
    service = Service(key=key, clusters={c.name: c for c in cluster_list})
    assert decode_service("k", encode_service(service), key) == service


def test_a_cluster_no_update_touched_is_stored_as_builds_before_stored_it() -> None:
    """Replicas of two builds compare equal in a rolling upgrade until `PUT /cluster` is
    used: the new fields are written only when they differ from Nacos's defaults."""
    key = ServiceKey(namespace_id="public", group_name="G", service_name="s")
    assert cluster_record(Cluster(name="c", metadata={"a": "1"}), key) == {
        "name": "c",
        "serviceName": "G@@s",
        "healthChecker": {"type": "TCP"},
        "metadata": {"a": "1"},
    }
    changed = cluster_record(Cluster(name="c", check_port=81), key)
    assert (changed["defaultCheckPort"], changed["useIPPort4Check"]) == (81, True)


@pytest.mark.parametrize(
    "cluster",
    [
        {"healthChecker": {"type": "HTTP", "path": 7}},
        {"healthChecker": {"type": "HTTP", "expectedResponseCode": True}},
        {"healthChecker": {"type": "TCP"}, "defaultCheckPort": "80"},
        {"healthChecker": {"type": "TCP"}, "useIPPort4Check": 1},
    ],
)
def test_a_cluster_field_of_the_wrong_kind_is_a_corrupt_datum(cluster: dict[str, object]) -> None:
    key = ServiceKey(namespace_id="public", group_name="G", service_name="s")
    record = {"name": "G@@s", "clusterMap": {"c": {"name": "c", "metadata": {}, **cluster}}}
    with pytest.raises(CorruptDatumError):
        decode_service("k", orjson.dumps(record), key)
