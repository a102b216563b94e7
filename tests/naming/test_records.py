"""Instance list records: `stored_instances` is what a decode of the encoded list gives.

The state machine caches `stored_instances(...)` as the decoded view of the list it just
wrote; a node that restarts decodes the datum instead. Any difference (a field, the order
of the instances, the order of metadata keys) would make a restarted node answer
differently from one that never restarted, so it is checked over arbitrary inputs.
"""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from naraft.naming.keys import ServiceKey, instance_list_key
from naraft.naming.model import Instance
from naraft.naming.records import (
    decode_instances,
    encode_instances,
    encode_instances_reusing,
    instance_record,
    instance_sort_key,
    stored_instances,
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


@given(st.lists(instances, max_size=8))
def test_stored_instances_is_the_decoded_encoding(given_instances: list[Instance]) -> None:
    decoded = decode_instances(KEY, encode_instances(given_instances), SERVICE)
    stored = stored_instances(given_instances, SERVICE)
    assert stored == decoded
    for mine, theirs in zip(stored, decoded, strict=True):
        assert list(mine.metadata) == list(theirs.metadata)
        assert type(mine.weight) is type(theirs.weight)
    # and it is a fixed point: storing the decoded view again changes nothing
    assert stored_instances(decoded, SERVICE) == decoded


def test_an_already_stored_instance_is_reused_as_it_is() -> None:
    (stored,) = stored_instances([Instance(service=SERVICE, ip="10.0.0.1", port=80)], SERVICE)
    (again,) = stored_instances([stored], SERVICE)
    assert again is stored


def test_owner_round_trips_and_a_v1_record_is_unchanged() -> None:
    v1 = Instance(service=SERVICE, ip="10.0.0.1", port=80)
    owned = Instance(service=SERVICE, ip="10.0.0.2", port=80, owner="conn-1")
    encoded = encode_instances([v1, owned])
    records = orjson.loads(encoded)["instanceList"]
    assert "owner" not in records[0]  # a v1 record has exactly the fields it had before
    assert records[1]["owner"] == "conn-1"
    assert [i.owner for i in decode_instances(KEY, encoded, SERVICE)] == ["", "conn-1"]


def test_a_record_written_before_owners_existed_decodes_as_v1() -> None:
    old = (
        b'{"instanceList":[{"instanceId":"10.0.0.1#80#DEFAULT#G@@svc","ip":"10.0.0.1",'
        b'"port":80,"weight":1.0,"healthy":true,"enabled":true,"ephemeral":true,'
        b'"clusterName":"DEFAULT","serviceName":"G@@svc","metadata":{},"marked":false}]}'
    )
    (instance,) = decode_instances(KEY, old, SERVICE)
    assert instance.owner == ""
    assert encode_instances([instance]) == old
    (odd,) = decode_instances(KEY, old.replace(b'"marked":false', b'"owner":7'), SERVICE)
    assert odd.owner == ""  # a corrupt owner reads as none, as other lenient fields do


def as_encoded_before_reuse(given: list[Instance]) -> bytes:
    """The instance list encoding as it was written before records were reused: the stored
    bytes every replica must keep producing (they feed the state checksum)."""
    records = [instance_record(i) for i in sorted(given, key=instance_sort_key)]
    return orjson.dumps({"instanceList": records})


@given(st.lists(instances, max_size=8), st.lists(instances, max_size=4), st.data())
def test_reusing_records_gives_the_bytes_of_a_fresh_encoding(
    first: list[Instance], added: list[Instance], data: st.DataObject
) -> None:
    encoded, records = encode_instances_reusing(first, {})
    assert encoded == encode_instances(first) == as_encoded_before_reuse(first)
    kept = data.draw(st.lists(st.sampled_from(first), unique_by=id) if first else st.just([]))
    second = [*kept, *added]  # the same objects as before, and new ones
    again, _ = encode_instances_reusing(second, records)
    assert again == as_encoded_before_reuse(second)


def test_only_the_very_object_encoded_before_reuses_its_record() -> None:
    first = Instance(service=SERVICE, ip="10.0.0.1", port=80)
    twin = Instance(service=SERVICE, ip="10.0.0.1", port=80)  # equal, another object
    marked = {id(first): (first, b'{"reused":true}')}
    assert encode_instances_reusing([first], marked)[0] == b'{"instanceList":[{"reused":true}]}'
    forged = {id(twin): (first, b'{"reused":true}')}
    assert encode_instances_reusing([twin], forged)[0] == encode_instances([twin])
