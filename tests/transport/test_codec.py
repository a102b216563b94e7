"""The peer wire format: round trips, and nothing but CodecError out of any input."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naraft.raft.messages import (
    AppendEntries,
    AppendReply,
    Envelope,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    RequestVote,
    VoteReply,
)
from naraft.raft.types import Entry, Index, NodeId, Term
from naraft.transport import (
    FORMAT_VERSION,
    GZIP_THRESHOLD_BYTES,
    BodyTooLargeError,
    CodecError,
    compress_if_large,
    decode_batch,
    decompress,
    encode_batch,
)
from naraft.transport.codec import MAX_WIRE_INT, TAGS

N1, N2 = NodeId("n1"), NodeId("n2")

wire_ints = st.integers(min_value=0, max_value=MAX_WIRE_INT)
terms = wire_ints.map(Term)
indexes = wire_ints.map(Index)
node_ids = st.text(min_size=1, max_size=12).map(NodeId)
entries = st.builds(Entry, term=terms, index=indexes, command=st.binary(max_size=64))

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        RequestVote,
        term=terms,
        last_log_index=indexes,
        last_log_term=terms,
        pre_vote=st.booleans(),
    ),
    st.builds(VoteReply, term=terms, granted=st.booleans(), pre_vote=st.booleans()),
    st.builds(
        AppendEntries,
        term=terms,
        prev_log_index=indexes,
        prev_log_term=terms,
        entries=st.lists(entries, max_size=4).map(tuple),
        leader_commit=indexes,
        quiet=st.booleans(),
    ),
    st.builds(
        AppendReply,
        term=terms,
        success=st.booleans(),
        match_index=indexes,
        hint_index=indexes,
        hint_term=terms,
    ),
    st.builds(
        Heartbeat, term=terms, leader_commit=indexes, read_round=wire_ints, quiet=st.booleans()
    ),
    st.builds(HeartbeatReply, term=terms, read_round=wire_ints, last_log_index=indexes),
    st.builds(InstallSnapshot, term=terms, index=indexes, snapshot_term=terms),
)
envelopes = st.builds(Envelope, sender=node_ids, recipient=node_ids, message=messages)
batches = st.lists(envelopes, max_size=8)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


def append(*commands: bytes) -> Envelope:
    return Envelope(
        N1,
        N2,
        AppendEntries(
            term=Term(2),
            prev_log_index=Index(0),
            prev_log_term=Term(0),
            entries=tuple(
                Entry(Term(2), Index(i + 1), command) for i, command in enumerate(commands)
            ),
            leader_commit=Index(0),
        ),
    )


def test_every_message_type_has_a_distinct_tag() -> None:
    assert len(TAGS) == len(Message.__args__)


@given(batches)
def test_round_trip_keeps_every_envelope_in_order(batch: list[Envelope]) -> None:
    assert decode_batch(encode_batch(batch)) == tuple(batch)


def _loud(envelope: Envelope) -> Envelope:
    message = envelope.message
    if isinstance(message, AppendEntries | Heartbeat):
        return envelope._replace(message=dataclasses.replace(message, quiet=False))
    return envelope


@given(batches)
def test_version_1_carries_quiet_messages_as_loud_ones(batch: list[Envelope]) -> None:
    """A follower of a build before version 2 gets a commit notice it answers."""
    body = encode_batch(batch, 1)
    assert orjson.loads(body)["v"] == 1
    assert decode_batch(body) == tuple(_loud(envelope) for envelope in batch)


def test_quiet_is_written_only_where_set_and_only_from_version_2() -> None:
    loud = Heartbeat(term=Term(3), leader_commit=Index(7), read_round=1)
    quiet = dataclasses.replace(loud, quiet=True)
    items = orjson.loads(encode_batch([Envelope(N1, N2, loud), Envelope(N1, N2, quiet)]))["e"]
    assert ["quiet" in item for item in items] == [False, True]
    assert items[1]["quiet"] is True
    assert "quiet" not in orjson.loads(encode_batch([Envelope(N1, N2, quiet)], 1))["e"][0]


def test_a_version_1_batch_with_quiet_is_refused() -> None:
    with pytest.raises(CodecError) as caught:
        decode_batch(orjson.dumps({"v": 1, "e": [orjson.loads(_batch(quiet=True))["e"][0]]}))
    assert caught.value.where == "e[0]"


def test_encoding_a_version_this_build_does_not_write_is_a_bug() -> None:
    with pytest.raises(ValueError, match="no batch format 3"):
        encode_batch([], 3)


@given(batches)
def test_round_trip_through_compression(batch: list[Envelope]) -> None:
    wire, encoding = compress_if_large(encode_batch(batch), threshold_bytes=0)
    body = decompress(wire) if encoding == "gzip" else wire
    assert decode_batch(body) == tuple(batch)


@given(st.binary(max_size=256))
def test_arbitrary_bytes_raise_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_batch(data)


@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_decompress_to_anything_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decompress(data, max_bytes=1024)


def _mutate(document: Any, path: list[int], replacement: object, *, delete: bool) -> Any:
    """Replace (or delete) the node that `path` picks, walking dicts and lists."""
    if not path or not isinstance(document, dict | list) or not document:
        return replacement
    keys = list(document) if isinstance(document, dict) else list(range(len(document)))
    key = keys[path[0] % len(keys)]
    if delete and len(path) == 1:
        copy = dict(document) if isinstance(document, dict) else list(document)
        del copy[key]
        return copy
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[key] = _mutate(document[key], path[1:], replacement, delete=delete)
    return copy


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    batches.filter(bool),
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
    json_values,
    st.booleans(),
)
def test_mutated_documents_decode_or_raise_codec_error(
    batch: list[Envelope], path: list[int], replacement: object, delete: bool
) -> None:
    document = orjson.loads(encode_batch(batch))
    mutated = orjson.dumps(_mutate(document, path, replacement, delete=delete))
    try:
        decoded = decode_batch(mutated)
    except CodecError:
        return
    assert all(isinstance(envelope, Envelope) for envelope in decoded)


@given(
    batches.filter(bool),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
    st.booleans(),
)
def test_corrupted_bytes_decode_or_raise_codec_error(
    batch: list[Envelope], position: int, byte: int, truncate: bool
) -> None:
    data = bytearray(encode_batch(batch))
    at = position % len(data)
    corrupted = bytes(data[:at]) if truncate else bytes(data[:at] + bytes([byte]) + data[at + 1 :])
    with contextlib.suppress(CodecError):
        decode_batch(corrupted)


def test_encoding_is_compact_and_tagged() -> None:
    beat = Envelope(N1, N2, Heartbeat(term=Term(3), leader_commit=Index(7), read_round=1))
    assert orjson.loads(encode_batch([beat])) == {
        "v": FORMAT_VERSION,
        "e": [
            {"t": "heartbeat", "s": "n1", "r": "n2", "term": 3, "leader_commit": 7, "read_round": 1}
        ],
    }
    document = orjson.loads(encode_batch([append(b"\x00\xff")]))
    assert document["e"][0]["entries"] == [[2, 1, base64.b64encode(b"\x00\xff").decode()]]


def _batch(**item: object) -> bytes:
    envelope: dict[str, object] = {
        "t": "heartbeat",
        "s": "n1",
        "r": "n2",
        "term": 1,
        "leader_commit": 0,
        "read_round": 0,
    }
    envelope.update(item)
    return orjson.dumps({"v": FORMAT_VERSION, "e": [envelope]})


def _without(key: str) -> bytes:
    envelope = orjson.loads(_batch())["e"][0]
    del envelope[key]
    return orjson.dumps({"v": FORMAT_VERSION, "e": [envelope]})


def _append_with_entry(entry: object) -> bytes:
    item = orjson.loads(encode_batch([append(b"x")]))
    item["e"][0]["entries"] = [entry]
    return orjson.dumps(item)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        pytest.param(b"", "body", id="empty"),
        pytest.param(b"{", "body", id="bad-json"),
        pytest.param(b"\xff\xfe", "body", id="not-utf8"),
        pytest.param(b"[]", "body", id="not-an-object"),
        pytest.param(b'{"v":3,"e":[]}', "batch.v", id="newer-version"),
        pytest.param(b'{"v":0,"e":[]}', "batch.v", id="version-0"),
        pytest.param(_batch(quiet=1), "e[0].quiet", id="quiet-not-bool"),
        pytest.param(b'{"v":"1","e":[]}', "batch.v", id="version-as-string"),
        pytest.param(b'{"e":[]}', "batch.v", id="missing-version"),
        pytest.param(b'{"v":1}', "batch.e", id="missing-envelopes"),
        pytest.param(b'{"v":1,"e":{}}', "batch.e", id="envelopes-not-array"),
        pytest.param(b'{"v":1,"e":[],"x":0}', "batch", id="unknown-batch-key"),
        pytest.param(b'{"v":1,"e":[1]}', "e[0]", id="envelope-not-object"),
        pytest.param(_batch(t="beat"), "e[0].t", id="unknown-type"),
        pytest.param(_batch(t=7), "e[0].t", id="type-not-string"),
        pytest.param(_batch(s=""), "e[0].s", id="empty-sender"),
        pytest.param(_batch(r=None), "e[0].r", id="null-recipient"),
        pytest.param(_batch(term=-1), "e[0].term", id="negative-term"),
        pytest.param(_batch(leader_commit=-5), "e[0].leader_commit", id="negative-index"),
        pytest.param(_batch(term=True), "e[0].term", id="bool-as-int"),
        pytest.param(_batch(term=1.0), "e[0].term", id="float-as-int"),
        pytest.param(_batch(term="1"), "e[0].term", id="string-as-int"),
        pytest.param(_batch(term=2**63), "e[0].term", id="int-beyond-63-bits"),
        pytest.param(_batch(extra=1), "e[0]", id="unknown-field"),
        pytest.param(_without("read_round"), "e[0].read_round", id="missing-field"),
        pytest.param(_without("s"), "e[0].s", id="missing-sender"),
        pytest.param(_batch(t="vote_reply", granted=1), "e[0].granted", id="fields-of-other-type"),
        pytest.param(_append_with_entry([1, 1]), "e[0].entries[0]", id="short-entry"),
        pytest.param(_append_with_entry({"term": 1}), "e[0].entries[0]", id="entry-as-object"),
        pytest.param(_append_with_entry([1, -1, ""]), "e[0].entries[0][1]", id="entry-index<0"),
        pytest.param(_append_with_entry([1, 1, "!!"]), "e[0].entries[0][2]", id="bad-base64"),
        pytest.param(_append_with_entry([1, 1, 5]), "e[0].entries[0][2]", id="command-not-str"),
        pytest.param(_append_with_entry([1, 1, "é"]), "e[0].entries[0][2]", id="non-ascii-b64"),
    ],
)
def test_malformed_batches_name_the_fault(data: bytes, where: str) -> None:
    with pytest.raises(CodecError) as caught:
        decode_batch(data)
    assert caught.value.where.startswith(where)
    assert str(caught.value)


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(Envelope(N1, N2, Heartbeat(term=Term(-1), leader_commit=Index(0))), id="neg"),
        pytest.param(
            Envelope(N1, N2, Heartbeat(term=Term(2**63), leader_commit=Index(0))), id="too-big"
        ),
        pytest.param(
            Envelope(NodeId(""), N2, Heartbeat(term=Term(1), leader_commit=Index(0))), id="no-id"
        ),
    ],
)
def test_encoding_refuses_what_decoding_would(envelope: Envelope) -> None:
    with pytest.raises(CodecError):
        encode_batch([envelope])


def test_empty_batch_round_trips() -> None:
    assert decode_batch(encode_batch([])) == ()


def test_small_bodies_are_sent_as_they_are() -> None:
    body = encode_batch([append(b"x")])
    assert compress_if_large(body) == (body, None)


def test_large_bodies_are_gzipped() -> None:
    body = encode_batch([append(b"register-instance " * 4000)])
    assert len(body) > GZIP_THRESHOLD_BYTES
    wire, encoding = compress_if_large(body)
    assert encoding == "gzip"
    assert len(wire) < len(body)
    assert decompress(wire) == body


def test_incompressible_bodies_are_sent_as_they_are() -> None:
    noise = b"".join(hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(512))
    assert compress_if_large(noise, threshold_bytes=0) == (noise, None)


def test_large_bodies_that_gzip_poorly_are_sent_as_they_are() -> None:
    """Base64 of random bytes (a large random value in an entry) shrinks by only a quarter:
    not worth tenths of a second of CPU per MiB on the leader's event loop."""
    random_text = base64.b64encode(random.Random(7).randbytes(900 * 1024))
    body = encode_batch([append(random_text)])
    assert compress_if_large(body) == (body, None)
    repetitive = encode_batch([append(b"register-instance " * 20_000)])
    assert compress_if_large(repetitive)[1] == "gzip"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"not gzip", CodecError, id="not-gzip"),
        pytest.param(gzip.compress(b"{}")[:-4], CodecError, id="truncated"),
        pytest.param(gzip.compress(b"{}") + b"junk", CodecError, id="trailing-bytes"),
        pytest.param(gzip.compress(b"\x00" * 10_000), BodyTooLargeError, id="bomb"),
    ],
)
def test_bad_gzip_raises_codec_error(data: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error):
        decompress(data, max_bytes=1_000)
