"""Every decoder of untrusted input either decodes or raises its own error, never another.

Peer batches (`decode_batch`, before and after gzip), log payloads (`decode_command`,
`decode_kv`, and the machine's dispatch), and request parameters (the validators the API
runs on every Nacos parameter). Hypothesis feeds random bytes, random JSON shaped like the
real thing, and mutations of valid encodings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naraft.errors import InvalidArgumentError
from naraft.naming import validate
from naraft.naming.codec import decode_command
from naraft.naming.errors import CommandDecodeError
from naraft.raft.messages import AppendEntries, Envelope, Heartbeat, RequestVote
from naraft.raft.types import Entry, Index, NodeId, Term
from naraft.state.kv import DeleteKey, KvCommandError, PutValue, decode_kv, encode_kv
from naraft.transport.codec import (
    CodecError,
    compress_if_large,
    decode_batch,
    decompress,
    encode_batch,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def mutate(data: bytes, position: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    position %= len(data)
    return data[:position] + bytes([byte]) + data[position + 1 :]


# ------------------------------------------------------------------ peer batches

node_ids = st.sampled_from([NodeId("127.0.0.1:1"), NodeId("127.0.0.1:2"), NodeId("n3")])
terms = st.integers(min_value=0, max_value=2**63 - 1).map(Term)
indexes = st.integers(min_value=0, max_value=2**63 - 1).map(Index)
entries = st.builds(Entry, terms, indexes, st.binary(max_size=64))
messages = st.one_of(
    st.builds(
        RequestVote,
        term=terms,
        last_log_index=indexes,
        last_log_term=terms,
        pre_vote=st.booleans(),
    ),
    st.builds(
        AppendEntries,
        term=terms,
        prev_log_index=indexes,
        prev_log_term=terms,
        entries=st.lists(entries, max_size=3).map(tuple),
        leader_commit=indexes,
    ),
    st.builds(Heartbeat, term=terms, leader_commit=indexes, read_round=st.integers(0, 2**40)),
)
envelopes = st.builds(Envelope, sender=node_ids, recipient=node_ids, message=messages)


@SETTINGS
@given(st.lists(envelopes, max_size=5))
def test_a_batch_survives_encoding_and_gzip(batch: list[Envelope]) -> None:
    wire, encoding = compress_if_large(encode_batch(batch), threshold_bytes=64)
    body = decompress(wire) if encoding is not None else wire
    assert decode_batch(body) == tuple(batch)


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_are_a_batch_or_a_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_batch(data)


@SETTINGS
@given(json_values)
def test_random_json_is_a_batch_or_a_codec_error(value: Any) -> None:
    for shaped in (value, {"v": 1, "e": value}, {"v": 1, "e": [value]}):
        with contextlib.suppress(CodecError):
            decode_batch(json.dumps(shaped).encode())


@SETTINGS
@given(st.lists(envelopes, min_size=1, max_size=3), st.integers(0, 10_000), st.integers(0, 255))
def test_a_mutated_batch_is_a_batch_or_a_codec_error(
    batch: list[Envelope], position: int, byte: int
) -> None:
    with contextlib.suppress(CodecError):
        decode_batch(mutate(encode_batch(batch), position, byte))


@SETTINGS
@given(st.binary(max_size=256))
def test_random_gzip_bodies_decompress_or_raise_a_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decompress(b"\x1f\x8b" + data, max_bytes=1 << 16)


# ------------------------------------------------------------------ log payloads

kv_commands = st.one_of(
    st.builds(PutValue, key=st.text(min_size=1, max_size=30), value=st.text(max_size=50)),
    st.builds(
        PutValue,
        key=st.text(min_size=1, max_size=30),
        value=st.text(max_size=50),
        check_prev=st.just(True),
        prev=st.none() | st.text(max_size=20),
    ),
    st.builds(DeleteKey, key=st.text(min_size=1, max_size=30)),
)


@SETTINGS
@given(kv_commands)
def test_a_kv_command_survives_encoding(command: PutValue | DeleteKey) -> None:
    assert decode_kv(encode_kv(command)) == command


@SETTINGS
@given(st.binary(max_size=256))
def test_random_bytes_are_a_kv_command_or_a_kv_error(data: bytes) -> None:
    for payload in (data, b'{"op":"kv.' + data):
        with contextlib.suppress(KvCommandError):
            decode_kv(payload)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["op", "key", "value", "prev", "x"]), json_values))
def test_kv_shaped_json_is_a_kv_command_or_a_kv_error(fields: dict[str, Any]) -> None:
    for op in ("kv.put", "kv.delete", None):
        body = dict(fields) if op is None else {**fields, "op": op}
        with contextlib.suppress(KvCommandError):
            decode_kv(json.dumps(body).encode())


@SETTINGS
@given(st.binary(max_size=256))
def test_random_bytes_are_a_naming_command_or_a_decode_error(data: bytes) -> None:
    for payload in (data, b'{"op":"naming.' + data):
        with contextlib.suppress(CommandDecodeError):
            decode_command(payload)


NAMING_OPS = [
    "naming.register_instance",
    "naming.deregister_instance",
    "naming.update_instance",
    "naming.patch_instance",
    "naming.set_instance_health",
    "naming.remove_instances",
    "naming.release_owner",
    "naming.create_service",
    "naming.update_service",
    "naming.delete_service",
    "naming.create_namespace",
    "naming.update_namespace",
    "naming.delete_namespace",
    "naming.update_switches",
]
NAMING_FIELDS = [
    "v", "stamped_at_ms", "key", "instance", "service", "namespace_id", "ip", "port",
    "cluster_name", "metadata", "healthy", "keys", "selector", "protect_threshold", "owner",
    "x",
]  # fmt: skip


@SETTINGS
@given(
    st.sampled_from(NAMING_OPS),
    st.dictionaries(st.sampled_from(NAMING_FIELDS), json_values, max_size=8),
)
def test_naming_shaped_json_is_a_command_or_a_decode_error(op: str, fields: dict[str, Any]) -> None:
    for body in ({**fields, "op": op}, {**fields, "op": op, "v": 1}):
        with contextlib.suppress(CommandDecodeError):
            decode_command(json.dumps(body).encode())


# ------------------------------------------------------------------ request parameters

params = (
    st.none()
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "65536",
            "1e309",
            "nan",
            "true",
            "FALSE",
            "1.2.3.4",
            "a,b",
            "{}",
            '{"a":1}',
        ]
    )
)


@SETTINGS
@given(
    st.builds(
        validate.RawInstance,
        namespace_id=params,
        group_name=params,
        service_name=params,
        cluster_name=params,
        ip=params,
        port=params,
        weight=params,
        enabled=params,
        healthy=params,
        ephemeral=params,
        metadata=params,
    ),
    st.booleans(),
)
def test_instance_parameters_validate_or_name_the_bad_field(
    raw: validate.RawInstance, default_ephemeral: bool
) -> None:
    for check in (validate.instance, validate.instance_key):
        try:
            check(raw, default_ephemeral=default_ephemeral)
        except InvalidArgumentError as error:
            unnamed = not error.field
        else:
            unnamed = False
        assert not unnamed


@SETTINGS
@given(params, params)
def test_every_single_parameter_validator_validates_or_names_the_field(
    value: str | None, other: str | None
) -> None:
    checks: list[Callable[[], object]] = [
        lambda: validate.namespace_id(value),
        lambda: validate.group_name(value),
        lambda: validate.service_key(value, other, value),
        lambda: validate.cluster_name(value),
        lambda: validate.clusters_filter(value),
        lambda: validate.ip(value),
        lambda: validate.port(value),
        lambda: validate.weight(value),
        lambda: validate.flag("healthy", value, default=True),
        lambda: validate.optional_flag("enabled", value),
        lambda: validate.metadata(value),
        lambda: validate.protect_threshold(value),
        lambda: validate.selector(value),
        lambda: validate.page(value, other),
        lambda: validate.udp_port(value),
        lambda: validate.new_namespace_id(value),
        lambda: validate.namespace_show_name(value),
        lambda: validate.description(value),
    ]
    if value is not None:
        checks.append(lambda: validate.beat(value))
    for check in checks:
        try:
            check()
        except InvalidArgumentError as error:
            unnamed = not error.field
        else:
            unnamed = False
        assert not unnamed
