"""The digest wire format round-trips and refuses garbage with the part named (signatures:
tests/digest/test_digest_routes.py and tests/transport/test_signing.py)."""

from __future__ import annotations

import gzip

import pytest

from naraft.digest.progress import catch_up_view
from naraft.digest.protocol import (
    DigestProtocolError,
    decode_datums,
    decode_digest_chunk,
    encode_datums,
    encode_digest_chunk,
)
from naraft.state.datums import Datum


def test_digest_chunks_and_datum_batches_round_trip() -> None:
    rows = [("naraft.kv.a", 3, 2**64 - 1), ("com.alibaba.nacos.naming.iplist.x##y", 9, 0)]
    assert decode_digest_chunk(encode_digest_chunk(rows)) == rows
    datums = [("k", Datum(b"\x00\xffbinary", 4)), ("j", Datum(b"", 5))]
    assert decode_datums(encode_datums(datums)) == dict(datums)


@pytest.mark.parametrize(
    "payload",
    # mtime=0: the same bytes, so the same test ids, in every pytest-xdist worker
    [b"not gzip", gzip.compress(b"{}", mtime=0), gzip.compress(b'[["k", "v", 1]]', mtime=0)],
    ids=["not-gzip", "an-object", "a-row-not-in-a-chunk"],
)
def test_a_malformed_chunk_is_refused_naming_the_part(payload: bytes) -> None:
    with pytest.raises(DigestProtocolError) as caught:
        decode_digest_chunk(payload)
    assert caught.value.what == "digest chunk"


def test_status_shows_a_progress_bar_only_for_members_catching_up() -> None:
    idle = {"catchUp": {"phase": "idle"}}
    running = {
        "catchUp": {
            "phase": "fetch",
            "mode": "catch-up",
            "index": 120,
            "keysTotal": 100,
            "keysCompared": 100,
            "keysToFetch": 40,
            "keysFetched": 10,
        }
    }
    assert catch_up_view({"a:1": idle, "b:2": {}}) is None
    view = catch_up_view({"a:1": idle, "b:2": running})
    assert view is not None
    assert view.row_count == 1  # type: ignore[attr-defined]
