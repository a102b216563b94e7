"""The snapshot file (`naraft snapshot save` / `restore`): a versioned, checksummed stream of
the datums of a replica's applied state at one index (docs/backup.md has the layout).

```
magic      b"naraft-snapshot\\n"                         16 bytes
header     u32 length + JSON object (at most 64 KiB)      format, index, term, keys,
                                                          stateChecksum, clusterId, node,
                                                          snapshotId, createdMs
frames     u32 payload bytes + u32 records, payload      at most 64 MiB each
           record: u32 key bytes, u64 version, u32 value bytes, key (UTF-8), value
end        a frame header of (0, 0)
trailer    u64 records + SHA-256 of every byte before the trailer (32 bytes)
```

All integers are big-endian. Keys are in strictly increasing order (so a key cannot appear
twice, and a reader needs no memory of the keys it has seen). Two checks guard the content:
the SHA-256 over the bytes (a flipped bit, a cut, a reordering), and `stateChecksum`, the
cluster's own order-independent state checksum at `index` (`naraft.digest.checksum`), which
the reader recomputes over the datums: what is restored is the state the cluster had.

Everything is bounded where it is read: the header's size and fields, each frame's size, each
record inside its frame. A file that breaks a rule raises `SnapshotFormatError` with one line
that says where and what; a reader never allocates more than one frame.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import orjson

from naraft.digest.checksum import MASK, datum_hash
from naraft.state.datums import Datum

MAGIC: Final = b"naraft-snapshot\n"
FORMAT_VERSION: Final = 1
MAX_HEADER_BYTES: Final = 64 << 10
MAX_FRAME_BYTES: Final = 64 << 20
FRAME_TARGET_BYTES: Final = 1 << 20  # a writer closes a frame once it holds this much
MEDIA_TYPE: Final = "application/vnd.naraft.snapshot"

_U32: Final = struct.Struct(">I")
_FRAME: Final = struct.Struct(">II")  # payload bytes, records
_RECORD: Final = struct.Struct(">IQI")  # key bytes, version, value bytes
_TRAILER: Final = struct.Struct(">Q32s")  # records, SHA-256
_MAX_INT: Final = (1 << 63) - 1


class Readable(Protocol):
    """Where a snapshot is read from: a file opened "rb", an HTTP answer."""

    def read(self, size: int = -1, /) -> bytes: ...


class SnapshotFormatError(Exception):
    """The file is not a snapshot this build can read; the message is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotHeader:
    """What a snapshot says about itself."""

    index: int  # the applied index the datums are the state at
    term: int  # that entry's term
    keys: int  # records in the file
    state_checksum: int  # naraft.digest.checksum over the datums
    cluster_id: str  # the cluster it was taken from
    node: str  # the member that served it
    snapshot_id: str  # random, drawn when saved (a restore derives its new cluster token)
    created_ms: int  # wall clock of the serving node, for people
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format": self.format,
                "index": self.index,
                "term": self.term,
                "keys": self.keys,
                "stateChecksum": self.state_checksum,
                "clusterId": self.cluster_id,
                "node": self.node,
                "snapshotId": self.snapshot_id,
                "createdMs": self.created_ms,
            }
        )


# ---------------------------------------------------------------------- writing


class SnapshotWriter:
    """Turns a header and batches of datums into the file's bytes, hashing as it goes.
    Call `start`, then `frame` per batch (keys ascending across batches), then `end`."""

    def __init__(self, header: SnapshotHeader) -> None:
        self._header = header
        self._sha = hashlib.sha256()
        self.records = 0

    def _out(self, data: bytes) -> bytes:
        self._sha.update(data)
        return data

    def start(self) -> bytes:
        body = self._header.to_json()
        if len(body) > MAX_HEADER_BYTES:
            raise ValueError(f"snapshot header is {len(body)} bytes, over {MAX_HEADER_BYTES}")
        return self._out(MAGIC + _U32.pack(len(body)) + body)

    def frame(self, rows: Iterable[tuple[str, Datum]]) -> bytes:
        parts: list[bytes] = []
        count = 0
        for key, datum in rows:
            raw_key = key.encode()  # a store holds no key that is not UTF-8
            parts += (_RECORD.pack(len(raw_key), datum.version, len(datum.value)), raw_key)
            parts.append(datum.value)
            count += 1
        payload = b"".join(parts)
        if len(payload) > MAX_FRAME_BYTES:
            raise ValueError(f"one frame of {len(payload)} bytes is over {MAX_FRAME_BYTES}")
        self.records += count
        return self._out(_FRAME.pack(len(payload), count) + payload)

    def end(self) -> bytes:
        tail = self._out(_FRAME.pack(0, 0))
        return tail + _TRAILER.pack(self.records, self._sha.digest())


def frame_batches(
    keys: Iterable[str], datums: Mapping[str, Datum], target_bytes: int = FRAME_TARGET_BYTES
) -> Iterator[list[tuple[str, Datum]]]:
    """`keys` (ascending) with their datums, cut into batches of about `target_bytes`."""
    batch: list[tuple[str, Datum]] = []
    size = 0
    for key in keys:
        datum = datums[key]
        batch.append((key, datum))
        size += len(key) + len(datum.value) + _RECORD.size
        if size >= target_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------------- reading


def _exactly(stream: Readable, size: int, offset: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise SnapshotFormatError(
            f"truncated at byte {offset + len(data)}: {what} needs {size} bytes"
        )
    return data


def _header_field(data: Mapping[str, object], name: str, kind: type) -> object:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SnapshotFormatError(f"header: {name} is missing or not a {kind.__name__}")
    if isinstance(value, int) and not 0 <= value <= (MASK if name == "stateChecksum" else _MAX_INT):
        raise SnapshotFormatError(f"header: {name} is out of range")
    if isinstance(value, str) and not 0 < len(value) <= 512:
        raise SnapshotFormatError(f"header: {name} must be 1 to 512 characters")
    return value


def parse_header(body: bytes) -> SnapshotHeader:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SnapshotFormatError("header: not JSON") from None
    if not isinstance(data, dict):
        raise SnapshotFormatError("header: not a JSON object")
    version = data.get("format")
    if version != FORMAT_VERSION:
        raise SnapshotFormatError(
            f"snapshot format {str(version)[:20]} is not one this naraft reads"
            f" (it reads format {FORMAT_VERSION})"
        )
    ints = {n: _header_field(data, n, int) for n in ("index", "term", "keys", "createdMs")}
    strs = {n: _header_field(data, n, str) for n in ("clusterId", "node", "snapshotId")}
    return SnapshotHeader(
        index=int(str(ints["index"])),
        term=int(str(ints["term"])),
        keys=int(str(ints["keys"])),
        state_checksum=int(str(_header_field(data, "stateChecksum", int))),
        cluster_id=str(strs["clusterId"]),
        node=str(strs["node"]),
        snapshot_id=str(strs["snapshotId"]),
        created_ms=int(str(ints["createdMs"])),
    )


class SnapshotReader:
    """Reads a snapshot from `stream`, one frame in memory at a time. The header is read at
    construction; `frames()` yields each frame's datums and, after the last, checks the
    record count, the SHA-256, the state checksum and that nothing follows. Only when
    `frames()` has run to its end without raising is the content proven whole."""

    def __init__(self, stream: Readable) -> None:
        self._stream = stream
        self._sha = hashlib.sha256()
        self._offset = 0
        magic = self._read(len(MAGIC), "the magic")
        if magic != MAGIC:
            raise SnapshotFormatError("not a naraft snapshot (the file does not start with one)")
        (length,) = _U32.unpack(self._read(_U32.size, "the header length"))
        if length > MAX_HEADER_BYTES:
            raise SnapshotFormatError(f"header: {length} bytes, over the {MAX_HEADER_BYTES} limit")
        self.header = parse_header(self._read(length, "the header"))

    def _read(self, size: int, what: str) -> bytes:
        data = _exactly(self._stream, size, self._offset, what)
        self._offset += size
        self._sha.update(data)
        return data

    def frames(self) -> Iterator[list[tuple[str, Datum]]]:
        header = self.header
        records = 0
        checksum = 0
        last_key: str | None = None
        while True:
            at = self._offset
            size, count = _FRAME.unpack(self._read(_FRAME.size, "a frame header"))
            if size == 0 and count == 0:
                break
            if size > MAX_FRAME_BYTES:
                raise SnapshotFormatError(
                    f"frame at byte {at}: {size} bytes, over the {MAX_FRAME_BYTES} limit"
                )
            if records + count > header.keys:
                raise SnapshotFormatError(
                    f"frame at byte {at}: more records than the header's {header.keys}"
                )
            rows = _decode_frame(self._read(size, "a frame"), count, at, header.index, last_key)
            for key, datum in rows:
                checksum += datum_hash(key, datum)
            records += count
            if rows:
                last_key = rows[-1][0]
            yield rows
        digest_at = self._offset
        expected = self._sha.digest()
        raw = _exactly(self._stream, _TRAILER.size, self._offset, "the trailer")
        trailer_records, digest = _TRAILER.unpack(raw)
        if self._stream.read(1):
            raise SnapshotFormatError(f"bytes after the trailer at byte {digest_at + len(raw)}")
        if digest != expected:
            raise SnapshotFormatError("SHA-256 mismatch: the file is corrupted")
        if not records == trailer_records == header.keys:
            raise SnapshotFormatError(
                f"{records} records, but the header says {header.keys} and the trailer"
                f" {trailer_records}"
            )
        if checksum & MASK != header.state_checksum:
            raise SnapshotFormatError(
                "state checksum mismatch: the datums are not the state the header names"
            )


def _decode_frame(
    payload: bytes, count: int, at: int, index: int, last_key: str | None
) -> list[tuple[str, Datum]]:
    rows: list[tuple[str, Datum]] = []
    pos = 0
    end = len(payload)
    unpack = _RECORD.unpack_from
    head = _RECORD.size
    for _ in range(count):
        if pos + head > end:
            raise SnapshotFormatError(f"frame at byte {at}: a record runs past the frame")
        key_len, version, value_len = unpack(payload, pos)
        pos += head
        if pos + key_len + value_len > end:
            raise SnapshotFormatError(f"frame at byte {at}: a record runs past the frame")
        try:
            key = payload[pos : pos + key_len].decode()
        except UnicodeDecodeError:
            raise SnapshotFormatError(f"frame at byte {at}: a key is not UTF-8") from None
        pos += key_len
        if last_key is not None and key <= last_key:
            raise SnapshotFormatError(f"frame at byte {at}: keys out of order or repeated")
        if version > index:
            raise SnapshotFormatError(
                f"frame at byte {at}: a datum's version {version} is past the index {index}"
            )
        rows.append((key, Datum(payload[pos : pos + value_len], version)))
        pos += value_len
        last_key = key
    if pos != end:
        raise SnapshotFormatError(f"frame at byte {at}: {end - pos} bytes after its records")
    return rows
