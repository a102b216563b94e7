"""validate: raw request strings → domain values, or InvalidArgumentError naming the field."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from naraft.errors import InvalidArgumentError
from naraft.naming import validate
from naraft.naming.commands import MetadataScope, MetadataTarget
from naraft.naming.keys import ServiceKey
from naraft.naming.model import Selector, SelectorType
from naraft.naming.validate import RawInstance

GOOD = RawInstance(service_name="svc", ip="10.0.0.1", port="8080")


def with_(**fields: str | None) -> RawInstance:
    values = {name: getattr(GOOD, name) for name in ("service_name", "ip", "port")}
    return RawInstance(**{**values, **fields})


def test_defaults_follow_nacos() -> None:
    instance = validate.instance(GOOD)

    assert instance.service == ServiceKey(
        namespace_id="public", group_name="DEFAULT_GROUP", service_name="svc"
    )
    assert (instance.cluster_name, instance.weight, instance.healthy) == ("DEFAULT", 1.0, True)
    assert (instance.enabled, instance.ephemeral, instance.metadata) == (True, True, {})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(with_(ip=None), "ip", id="ip-missing"),
        pytest.param(with_(ip=" "), "ip", id="ip-blank"),
        pytest.param(with_(ip="10.0.0.1 evil"), "ip", id="ip-with-space"),
        pytest.param(with_(ip="a#b"), "ip", id="ip-with-hash"),
        pytest.param(with_(port=None), "port", id="port-missing"),
        pytest.param(with_(port="0"), "port", id="port-zero"),
        pytest.param(with_(port="65536"), "port", id="port-too-big"),
        pytest.param(with_(port="80.5"), "port", id="port-not-integer"),
        pytest.param(with_(weight="-1"), "weight", id="weight-negative"),
        pytest.param(with_(weight="10000.5"), "weight", id="weight-too-big"),
        pytest.param(with_(weight="nan"), "weight", id="weight-nan"),
        pytest.param(with_(weight="heavy"), "weight", id="weight-text"),
        pytest.param(with_(healthy="yes"), "healthy", id="healthy-not-boolean"),
        pytest.param(with_(enabled="1"), "enabled", id="enabled-not-boolean"),
        pytest.param(with_(ephemeral="maybe"), "ephemeral", id="ephemeral-not-boolean"),
        pytest.param(with_(metadata="[1]"), "metadata", id="metadata-array"),
        pytest.param(with_(metadata='{"a": {"b": 1}}'), "metadata", id="metadata-nested"),
        pytest.param(with_(metadata='{"a": null}'), "metadata", id="metadata-null-value"),
        pytest.param(with_(metadata="{oops"), "metadata", id="metadata-bad-json"),
        pytest.param(with_(metadata="novalue"), "metadata", id="metadata-legacy-no-equals"),
        pytest.param(with_(service_name=None), "service_name", id="service-missing"),
        pytest.param(with_(service_name="a b"), "service_name", id="service-bad-char"),
        pytest.param(with_(service_name="@@svc"), "service_name", id="service-empty-group"),
        pytest.param(with_(service_name="G@@"), "service_name", id="service-empty-name"),
        pytest.param(with_(service_name="a@@b@@c"), "service_name", id="service-two-groups"),
        pytest.param(with_(service_name="s" * 513), "service_name", id="service-too-long"),
        pytest.param(with_(cluster_name="c_1"), "cluster_name", id="cluster-underscore"),
        pytest.param(with_(group_name="g@x"), "group_name", id="group-with-at"),
        pytest.param(with_(namespace_id="ns.1"), "namespace_id", id="namespace-dot"),
    ],
)
def test_bad_instance_params_name_the_field(raw: RawInstance, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.instance(raw)
    assert caught.value.field == field
    assert caught.value.rule


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(with_(healthy="False"), ("healthy", False), id="python-capitalised-false"),
        pytest.param(with_(enabled="TRUE"), ("enabled", True), id="upper-true"),
        pytest.param(with_(weight="5"), ("weight", 5.0), id="integer-weight"),
        pytest.param(with_(weight="0"), ("weight", 0.0), id="zero-weight"),
        pytest.param(with_(cluster_name="None"), ("cluster_name", "None"), id="python-none"),
        pytest.param(with_(cluster_name=""), ("cluster_name", "DEFAULT"), id="blank-cluster"),
        pytest.param(
            with_(metadata='{"k": "v", "n": 1, "b": true, "f": 1.5}'),
            ("metadata", {"k": "v", "n": "1", "b": "true", "f": "1.5"}),
            id="metadata-values-become-strings",
        ),
        pytest.param(
            with_(metadata="a=1, b = 2"), ("metadata", {"a": "1", "b": "2"}), id="legacy-pairs"
        ),
        pytest.param(with_(ip="::1"), ("ip", "::1"), id="ipv6"),
        pytest.param(with_(ip="host-1.svc"), ("ip", "host-1.svc"), id="host-name"),
        pytest.param(with_(ephemeral="false"), ("ephemeral", False), id="persistent"),
    ],
)
def test_accepted_values(raw: RawInstance, expected: tuple[str, object]) -> None:
    field, value = expected
    assert getattr(validate.instance(raw), field) == value


@pytest.mark.parametrize(
    ("namespace", "group", "name", "expected"),
    [
        pytest.param(None, None, "svc", ("public", "DEFAULT_GROUP", "svc"), id="defaults"),
        pytest.param("", "", "svc", ("public", "DEFAULT_GROUP", "svc"), id="blank-defaults"),
        pytest.param("ns1", "G1", "svc", ("ns1", "G1", "svc"), id="group-param"),
        pytest.param(None, "G1", "G2@@svc", ("public", "G2", "svc"), id="grouped-name-wins"),
        pytest.param(
            None,
            None,
            "providers:com.foo.Bar::",
            ("public", "DEFAULT_GROUP", "providers:com.foo.Bar::"),
            id="dubbo-name",
        ),
    ],
)
def test_service_key_grouping(
    namespace: str | None, group: str | None, name: str, expected: tuple[str, str, str]
) -> None:
    key = validate.service_key(namespace, group, name)
    assert (key.namespace_id, key.group_name, key.service_name) == expected


def test_a_spelling_seen_again_gives_the_same_key_and_a_refusal_is_never_kept() -> None:
    """Kept keys: the same spelling answers the very key object (look-ups keyed by it then
    match on identity); an equal service spelled otherwise is an equal key; a refused
    spelling is refused every time, and a kept one does not outlive the bound."""
    first = validate.service_key("ns-kept", None, "svc-kept")
    assert validate.service_key("ns-kept", None, "svc-kept") is first
    assert validate.service_key("ns-kept", "DEFAULT_GROUP", "svc-kept") == first
    for _ in range(2):
        with pytest.raises(InvalidArgumentError):
            validate.service_key("ns-kept", None, "svc kept")
    for i in range(validate.SERVICE_KEYS_KEPT):
        validate.service_key("ns-kept", None, f"svc-{i}")
    again = validate.service_key("ns-kept", None, "svc-kept")
    assert again == first
    assert again is not first


def test_a_group_inside_service_name_is_reported_as_service_name() -> None:
    """The client sent the group inside `serviceName`: the error names that field."""
    long_group = "g" * (validate.MAX_GROUP_NAME_CHARS + 1)
    with pytest.raises(InvalidArgumentError) as raised:
        validate.service_key(None, "G1", f"{long_group}@@svc")
    assert raised.value.field == "service_name"
    assert "group" in raised.value.rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, Selector(), id="absent"),
        pytest.param('{"type":"none"}', Selector(), id="none"),
        pytest.param(
            '{"type":"label","expression":"a=b"}',
            Selector(SelectorType.LABEL, "a=b"),
            id="label",
        ),
    ],
)
def test_selector(value: str | None, expected: Selector) -> None:
    assert validate.selector(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('{"type":"mystery"}', id="unknown-type"),
        pytest.param("[]", id="array"),
        pytest.param("{", id="bad-json"),
    ],
)
def test_bad_selector(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.selector(value)
    assert caught.value.field == "selector"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param("1.5", "protect_threshold", id="above-one"),
        pytest.param("-0.1", "protect_threshold", id="negative"),
        pytest.param("x", "protect_threshold", id="text"),
    ],
)
def test_bad_protect_threshold(value: str, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.protect_threshold(value)
    assert caught.value.field == field


def test_protect_threshold_may_be_required() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.protect_threshold(None, is_required=True)
    assert caught.value.field == "protect_threshold"


@pytest.mark.parametrize(
    ("page_no", "page_size", "field"),
    [
        pytest.param(None, "10", "page_no", id="page-no-missing"),
        pytest.param("1", None, "page_size", id="page-size-missing"),
        pytest.param("0", "10", "page_no", id="page-no-zero"),
        pytest.param("1", "100000", "page_size", id="page-size-too-big"),
    ],
)
def test_bad_paging(page_no: str | None, page_size: str | None, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.page(page_no, page_size)
    assert caught.value.field == field


def test_beat_payload_from_the_python_client() -> None:
    beat = validate.beat(
        '{"serviceName": "G1@@svcE", "ip": "127.0.0.1", "port": 9003, "weight": 1.0,'
        ' "ephemeral": true, "cluster": "c2", "metadata": {"a": "b"}, "scheduled": true}'
    )
    assert (beat.ip, beat.port, beat.cluster_name, beat.metadata) == (
        "127.0.0.1",
        9003,
        "c2",
        {"a": "b"},
    )
    assert beat.ephemeral is True


def test_beat_payload_from_the_node_client_defaults_to_ephemeral() -> None:
    beat = validate.beat(
        '{"serviceName":"G@@s","ip":"1.2.3.4","port":1,"cluster":"DEFAULT",'
        '"weight":1,"metadata":{},"scheduled":true}'
    )
    assert (beat.ephemeral, beat.weight) == (True, 1.0)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not json", id="not-json"),
        pytest.param('{"ip": "1.2.3.4"}', id="no-port"),
        pytest.param('{"ip": "1.2.3.4", "port": "80"}', id="port-string"),
        pytest.param('{"port": 80}', id="no-ip"),
        pytest.param('{"ip": "1.2.3.4", "port": 80, "metadata": [1]}', id="metadata-array"),
    ],
)
def test_bad_beat_payload(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.beat(value)
    assert caught.value.field == "beat"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param(None, "namespace_name", id="missing"),
        pytest.param("a@b", "namespace_name", id="forbidden-char"),
        pytest.param("n" * 129, "namespace_name", id="too-long"),
    ],
)
def test_bad_namespace_names(value: str | None, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        validate.namespace_show_name(value)
    assert caught.value.field == field


def _ip_without_the_fast_path(text: str) -> str | None:
    """`validate.ip` before its dotted-quad fast path, on a non-blank value (None: refused)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    host = re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?", text)
    return text if host is not None and len(text) <= validate.MAX_HOST_CHARS else None


_OCTETS = st.one_of(
    st.integers(0, 300).map(str),
    st.integers(0, 300).map(lambda n: f"0{n}"),  # a leading zero: a host name, not an address
    st.sampled_from(["", "-1", "+1", "\uff11", "\u0663", " 1", "0x1", "1e2"]),
)


@example("10.0.0.1")
@example("\u0661.\u0662.\u0663.\u0664")  # Unicode digits: no address, no host name
@example("\uff11.1.1.1")
@example("010.1.1.1")  # a leading zero: taken as a host name, as it is
@example("256.1.1.1")
@given(st.lists(_OCTETS, min_size=4, max_size=4).map(".".join) | st.text(min_size=1, max_size=24))
def test_the_dotted_quad_fast_path_answers_as_before(text: str) -> None:
    if not text.strip():
        return
    try:
        answer: str | None = validate.ip(text)
    except InvalidArgumentError:
        answer = None
    assert answer == _ip_without_the_fast_path(text.strip())


@pytest.mark.parametrize(
    ("value", "scope"),
    [
        pytest.param(None, MetadataScope.LISTED, id="absent"),
        pytest.param(" ", MetadataScope.LISTED, id="blank"),
        pytest.param("ephemeral", MetadataScope.EPHEMERAL, id="ephemeral"),
        pytest.param("persist", MetadataScope.PERSISTENT, id="persist"),
    ],
)
def test_consistency_type_selects_a_scope(value: str | None, scope: MetadataScope) -> None:
    assert validate.consistency_type(value) is scope


@pytest.mark.parametrize("value", ["all", "listed", "EPHEMERAL", "Persist", "persistent"])
def test_consistency_type_is_exactly_one_of_nacos_values(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validate.consistency_type(value)
    assert raised.value.field == "consistency_type"
    assert "ephemeral, persist or empty" in raised.value.rule


def test_metadata_targets_take_nacos_instance_defaults_and_ignore_other_keys() -> None:
    listed = validate.metadata_targets(
        '[{"ip": "10.0.0.1", "port": 80},'
        ' {"ip": "10.0.0.2", "port": "81", "clusterName": "c1", "ephemeral": false,'
        '  "weight": 3, "metadata": {"a": 1}},'
        ' {"ip": "10.0.0.1", "port": 80, "clusterName": "", "ephemeral": "true"}]'
    )
    assert listed == (
        MetadataTarget(ephemeral=True, cluster_name="DEFAULT", ip="10.0.0.1", port=80),
        MetadataTarget(ephemeral=False, cluster_name="c1", ip="10.0.0.2", port=81),
    )
    assert validate.metadata_targets(None) == validate.metadata_targets(" ") == ()
    assert validate.metadata_targets("[]") == ()


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        pytest.param("not json", "must be a JSON array", id="not-json"),
        pytest.param('{"ip": "10.0.0.1"}', "must be a JSON array", id="object"),
        pytest.param('["10.0.0.1:80"]', "item 0 must be a JSON object", id="item-text"),
        pytest.param('[{"port": 80}]', "item 0: ip is required", id="no-ip"),
        pytest.param('[{"ip": "10.0.0.1"}]', "item 0: port is required", id="no-port"),
        pytest.param('[{"ip": "a b", "port": 80}]', "item 0: ip must be", id="bad-ip"),
        pytest.param('[{"ip": 10, "port": 80}]', "item 0: ip must be a string", id="ip-number"),
        pytest.param('[{"ip": "10.0.0.1", "port": 0}]', "item 0: port must be", id="port-0"),
        pytest.param('[{"ip": "10.0.0.1", "port": true}]', "port must be an integer",
                     id="port-bool"),
        pytest.param('[{"ip": "h", "port": 1}, {"ip": "h", "port": 1, "clusterName": "c_1"}]',
                     "item 1: clusterName must match", id="bad-cluster"),
        pytest.param('[{"ip": "h", "port": 1, "ephemeral": "maybe"}]',
                     "item 0: ephemeral must be true or false", id="bad-flag"),
        pytest.param('[{"ip": "h", "port": 1, "ephemeral": 1}]',
                     "item 0: ephemeral must be true or false", id="flag-number"),
        pytest.param("[" + ",".join(['{"ip": "h", "port": 1}'] * 1001) + "]",
                     "at most 1000 instances", id="too-many"),
    ],
)  # fmt: skip
def test_bad_metadata_targets_name_instances_and_the_rule(value: str, rule: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        validate.metadata_targets(value)
    assert raised.value.field == "instances"
    assert rule in raised.value.rule


def test_metadata_targets_take_up_to_the_bound() -> None:
    items = ",".join(f'{{"ip": "h", "port": {port}}}' for port in range(1, 1001))
    assert len(validate.metadata_targets(f"[{items}]")) == validate.MAX_METADATA_BATCH == 1000
