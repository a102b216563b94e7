"""The snapshot file format (`naraft.digest.snapshot_file`) and the restore into a new store:
round trips, and every way a file can be wrong ending in one clear `SnapshotFormatError`."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from naraft.digest.checksum import checksum_of
from naraft.digest.restore import restore_store
from naraft.digest.snapshot_file import (
    MAGIC,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    SnapshotFormatError,
    SnapshotHeader,
    SnapshotReader,
    SnapshotWriter,
    frame_batches,
)
from naraft.state.datums import Datum
from naraft.storage.sqlite import open_store

INDEX = 1000


def _header(datums: dict[str, Datum], **changes: object) -> SnapshotHeader:
    fields: dict[str, object] = {
        "index": INDEX,
        "term": 3,
        "keys": len(datums),
        "state_checksum": checksum_of(datums),
        "cluster_id": "0123456789abcdef",
        "node": "127.0.0.1:8848",
        "snapshot_id": "feedface",
        "created_ms": 1,
    }
    fields.update(changes)
    return SnapshotHeader(**fields)  # type: ignore[arg-type]


def encode(datums: dict[str, Datum], target_bytes: int = 64, **changes: object) -> bytes:
    writer = SnapshotWriter(_header(datums, **changes))
    parts = [writer.start()]
    for batch in frame_batches(sorted(datums), datums, target_bytes):
        parts.append(writer.frame(batch))
    parts.append(writer.end())
    return b"".join(parts)


def decode(raw: bytes) -> tuple[SnapshotHeader, dict[str, Datum]]:
    reader = SnapshotReader(io.BytesIO(raw))
    out: dict[str, Datum] = {}
    for rows in reader.frames():
        out.update(rows)
    return reader.header, out


SAMPLE = {f"k{i:03d}": Datum(f"value {i}".encode() * (i % 7), version=i + 1) for i in range(40)}

datum_maps = st.dictionaries(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30),
    st.builds(Datum, st.binary(max_size=200), st.integers(0, INDEX)),
    max_size=60,
)


@given(datums=datum_maps, target=st.integers(1, 2000))
@settings(max_examples=60, deadline=None)
def test_any_state_round_trips(datums: dict[str, Datum], target: int) -> None:
    header, back = decode(encode(datums, target))
    assert back == datums
    assert header.keys == len(datums)
    assert header.index == INDEX


def test_an_empty_state_round_trips() -> None:
    assert decode(encode({}))[1] == {}


@given(position=st.integers(0, len(encode(SAMPLE)) - 1), flip=st.integers(1, 255))
@settings(max_examples=150, deadline=None)
def test_any_flipped_byte_is_a_clear_error(position: int, flip: int) -> None:
    raw = bytearray(encode(SAMPLE))
    raw[position] ^= flip
    with pytest.raises(SnapshotFormatError) as caught:
        decode(bytes(raw))
    assert "\n" not in str(caught.value)


@given(length=st.integers(0, len(encode(SAMPLE)) - 1))
@settings(max_examples=100, deadline=None)
def test_any_truncation_is_a_clear_error(length: int) -> None:
    with pytest.raises(SnapshotFormatError, match="truncated|not a naraft snapshot"):
        decode(encode(SAMPLE)[:length])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            b"PK\x03\x04 a zip file, not ours", "not a naraft snapshot", id="not-a-snapshot"
        ),
        pytest.param(b"", "truncated at byte 0", id="empty"),
        pytest.param(
            MAGIC + struct.pack(">I", MAX_HEADER_BYTES + 1), "over the 65536 limit", id="header"
        ),
        pytest.param(MAGIC + struct.pack(">I", 2) + b"[]", "not a JSON object", id="header-list"),
        pytest.param(MAGIC + struct.pack(">I", 3) + b"{x}", "header: not JSON", id="header-json"),
        pytest.param(encode(SAMPLE) + b"x", "bytes after the trailer", id="trailing-bytes"),
    ],
)
def test_malformed_files_are_refused_in_one_line(raw: bytes, message: str) -> None:
    with pytest.raises(SnapshotFormatError, match=message):
        decode(raw)


def _with_header(data: dict[str, object]) -> bytes:
    import orjson

    body = orjson.dumps(data)
    return MAGIC + struct.pack(">I", len(body)) + body


def test_a_newer_format_is_refused_naming_both_versions() -> None:
    with pytest.raises(SnapshotFormatError, match="format 2 is not one this naraft reads"):
        decode(_with_header({"format": 2}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("index", -1, id="negative-index"),
        pytest.param("keys", "many", id="keys-not-int"),
        pytest.param("stateChecksum", -5, id="negative-checksum"),
        pytest.param("clusterId", "", id="empty-cluster-id"),
        pytest.param("term", True, id="bool-term"),
    ],
)
def test_bad_header_fields_are_named(field: str, value: object) -> None:
    import orjson

    data = orjson.loads(_header(SAMPLE).to_json())
    data[field] = value
    with pytest.raises(SnapshotFormatError, match=f"header: {field}"):
        decode(_with_header(data))


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    head = encode({})[: -8 - 40]  # magic and header, without the end frame and trailer
    raw = head + struct.pack(">II", MAX_FRAME_BYTES + 1, 1)
    with pytest.raises(SnapshotFormatError, match="over the 67108864 limit"):
        decode(raw)


def test_a_header_that_lies_about_the_count_is_refused() -> None:
    with pytest.raises(SnapshotFormatError, match="more records than the header's 3"):
        decode(encode(SAMPLE, keys=3))
    with pytest.raises(SnapshotFormatError, match="the header says 50"):
        decode(encode(SAMPLE, keys=50))


def test_a_wrong_state_checksum_is_refused() -> None:
    with pytest.raises(SnapshotFormatError, match="state checksum mismatch"):
        decode(encode(SAMPLE, state_checksum=12345))


def test_repeated_or_unordered_keys_are_refused() -> None:
    datums = {"a": Datum(b"1", 1), "b": Datum(b"2", 2)}
    writer = SnapshotWriter(_header(datums))
    raw = writer.start() + writer.frame([("b", datums["b"]), ("a", datums["a"])]) + writer.end()
    with pytest.raises(SnapshotFormatError, match="keys out of order or repeated"):
        decode(raw)


def test_a_key_that_is_not_utf8_is_refused() -> None:
    datums = {"zq": Datum(b"1", 1)}
    raw = encode(datums).replace(b"zq", b"z\xff")
    with pytest.raises(SnapshotFormatError, match="a key is not UTF-8"):
        decode(raw)


def test_a_version_past_the_index_is_refused() -> None:
    with pytest.raises(SnapshotFormatError, match="past the index 5"):
        decode(encode(SAMPLE, index=5))


# ---------------------------------------------------------------------- restore


def test_restore_writes_the_datums_at_the_snapshot_point(tmp_path: Path) -> None:
    db = tmp_path / "naraft.db"
    seen: list[int] = []
    reader = SnapshotReader(io.BytesIO(encode(SAMPLE)))
    restore_store(reader, db, node_id="n:1", cluster_id="c" * 16, on_frame=seen.append)
    assert sum(seen) == len(SAMPLE)
    store = open_store(db)
    try:
        state = store.load()
        assert state.datums == SAMPLE
        assert state.applied_index == INDEX
        assert (state.snapshot.index, state.snapshot.term) == (INDEX, 3)
        assert state.hard_state.commit == INDEX
        assert state.entries == ()
        assert state.node_id == "n:1"
        assert store.set_cluster_id("c" * 16) is False  # recorded already
    finally:
        store.close()


def test_a_failed_restore_leaves_nothing_behind(tmp_path: Path) -> None:
    raw = bytearray(encode(SAMPLE))
    raw[-40] ^= 1  # inside the last frame's end marker area: found only at the end
    reader = SnapshotReader(io.BytesIO(bytes(raw)))
    with pytest.raises(SnapshotFormatError):
        restore_store(reader, tmp_path / "naraft.db", node_id="n:1", cluster_id="c" * 16)
    assert list(tmp_path.iterdir()) == []
