"""Instance list records: `stored_instances` is what a decode of the encoded list gives.

The state machine caches `stored_instances(...)` as the decoded view of the list it just
wrote; a node that restarts decodes the datum instead. Any difference (a field, the order
of the instances, the order of metadata keys) would make a restarted node answer
differently from one that never restarted, so it is checked over arbitrary inputs.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from naraft.naming.keys import ServiceKey, instance_list_key
from naraft.naming.model import Instance
from naraft.naming.records import decode_instances, encode_instances, stored_instances

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
