"""Envelope batches to bytes and back: the peer wire format, versions 1 and 2.

A batch is one JSON object (encoded with orjson)::

    {"v": 1, "e": [
        {"t": "append_entries", "s": "n1", "r": "n2",
         "term": 3, "prev_log_index": 7, "prev_log_term": 2, "leader_commit": 7,
         "entries": [[3, 8, "cmVnaXN0ZXI="]]},
        {"t": "heartbeat", "s": "n1", "r": "n2", "term": 3, "leader_commit": 7, "read_round": 0}
    ]}

- `v` is the format version; a receiver refuses one it does not know (`FORMAT_VERSIONS`).
  Version 2 adds `"quiet": true` to an append or a beat that is a commit notice (the follower
  does not answer it, `naraft.raft.messages`), present only on those. A sender writes the
  newest version its peer speaks (`version.batch_format`); written as version 1, a quiet
  message travels as a loud one, which costs the older follower's answer and nothing else.
- Each envelope carries its message type tag `t`, its sender `s` and its recipient `r`, and the
  message's fields inline under their Python names (the paper's words, docs/conventions.md#names).
- An entry is the array `[term, index, command]`, `command` being standard base64.
- Every other field is always present; unknown keys are refused, so a change means a new
  version.
- Terms, indexes and counters are integers in 0..2**63-1; node ids are non-empty strings.

Bodies larger than `GZIP_THRESHOLD_BYTES` (64 KiB: catch-up appends, snapshots) travel
gzip'd (`compress_if_large`), as the Nacos 1.x beat did, unless a sample shows gzip would
save little. Under write load a batch is tens of KiB; gzipping it cost the sender and the
receiver more CPU than sending it raw (5-7 % of server CPU per write at c=64, measured with
`benchmarks/versus.py` when the threshold was 4 KiB), and the wire is not what limits a
cluster. Values that are already compressed or random cost tenths of a second of CPU per
MiB to gzip for a quarter of their size, hence the sample: an append's round trip must stay
well inside a heartbeat. Decoding never
raises anything but `CodecError`: the transport drops what it cannot read, and the core never
sees it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from naraft.raft.messages import (
    AppendEntries,
    AppendReply,
    Envelope,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    RequestVote,
    TimeoutNow,
    VoteReply,
)
from naraft.raft.types import Entry, Index, NodeId, Term

FORMAT_VERSION: Final = 2  # the newest this build writes
FORMAT_VERSIONS: Final = frozenset({1, 2})  # what it reads
QUIET_FORMAT: Final = 2  # the first version that carries `quiet`
GZIP_THRESHOLD_BYTES: Final = 64 * 1024  # smaller batches cost more CPU to gzip than to send
MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # a decompressed batch larger than this is refused
MAX_WIRE_INT: Final = 2**63 - 1
CONTENT_TYPE: Final = "application/json"
GZIP_ENCODING: Final = "gzip"
GZIP_MAGIC: Final = b"\x1f\x8b"
MESSAGES_PATH: Final = "/nacos/v1/ns/raft/messages"

_GZIP_LEVEL: Final = 5  # most of level 9's ratio on JSON, at a fraction of its time
_SAMPLE_BYTES: Final = 64 * 1024  # a body larger than this is judged on its first bytes
_WORTH_RATIO: Final = 0.6  # gzip only when the sample shrinks to at most this fraction


class CodecError(ValueError):
    """A batch could not be encoded or decoded. `where` locates the fault, `rule` names it."""

    def __init__(self, where: str, rule: str) -> None:
        self.where = where
        self.rule = rule
        super().__init__(f"{where}: {rule}")


class BodyTooLargeError(CodecError):
    """A (decompressed) body is larger than `limit_bytes`."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__("body", f"larger than {limit_bytes} bytes")


# Message type tags: the message class names in snake_case.
_TAG_BY_TYPE: Final[Mapping[type[Message], str]] = {
    RequestVote: "request_vote",
    VoteReply: "vote_reply",
    AppendEntries: "append_entries",
    AppendReply: "append_reply",
    Heartbeat: "heartbeat",
    HeartbeatReply: "heartbeat_reply",
    InstallSnapshot: "install_snapshot",
    TimeoutNow: "timeout_now",
}
TAGS: Final[frozenset[str]] = frozenset(_TAG_BY_TYPE.values())


def encode_batch(envelopes: Sequence[Envelope], version: int = FORMAT_VERSION) -> bytes:
    """Encode `envelopes`, in order, as one batch of format `version` (uncompressed).

    Raises `CodecError` for a value the format cannot carry (a negative or too large
    integer, an empty node id), so that whatever encodes also decodes, and ValueError for
    a version this build does not write.
    """
    if version not in FORMAT_VERSIONS:
        raise ValueError(f"no batch format {version}; this build writes {sorted(FORMAT_VERSIONS)}")
    quiet = version >= QUIET_FORMAT
    items = [_encode_envelope(envelope, f"e[{i}]", quiet) for i, envelope in enumerate(envelopes)]
    try:
        return orjson.dumps({"v": version, "e": items})
    except orjson.JSONEncodeError as error:
        raise CodecError("batch", f"not encodable: {error}") from error


def decode_batch(data: bytes) -> tuple[Envelope, ...]:
    """Decode one batch of any version in `FORMAT_VERSIONS` (uncompressed), keeping the order
    of its envelopes.

    Raises `CodecError` (and nothing else) for anything malformed.
    """
    try:
        document: Any = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise CodecError("body", f"not JSON: {error}") from error
    if not isinstance(document, dict):
        raise CodecError("body", "expected an object")
    batch = _Fields(document, "batch")
    version = batch.integer("v")
    if version not in FORMAT_VERSIONS:
        raise CodecError(
            "batch.v", f"unsupported version {version}; expected one of {sorted(FORMAT_VERSIONS)}"
        )
    items = batch.array("e")
    batch.finish()
    quiet = version >= QUIET_FORMAT
    return tuple(_decode_envelope(item, f"e[{i}]", quiet) for i, item in enumerate(items))


def compress_if_large(
    body: bytes, *, threshold_bytes: int = GZIP_THRESHOLD_BYTES
) -> tuple[bytes, str | None]:
    """Gzip `body` when it is larger than `threshold_bytes` and gzip makes it smaller (for a
    body over 64 KiB: when its first 64 KiB shrink to 60 % or less at the fastest level).

    Returns the bytes to send and their Content-Encoding (`"gzip"`, or None for identity).
    """
    if len(body) <= threshold_bytes:
        return body, None
    if len(body) > _SAMPLE_BYTES:
        sample = zlib.compress(body[:_SAMPLE_BYTES], 1)
        if len(sample) > _WORTH_RATIO * _SAMPLE_BYTES:
            return body, None
    compressed = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
    if len(compressed) >= len(body):
        return body, None
    return compressed, GZIP_ENCODING


def decompress(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """Gunzip one gzip member, refusing output over `max_bytes` (a gzip bomb).

    Raises `BodyTooLargeError` when the output would be too large, `CodecError` when `body`
    is not exactly one complete gzip member.
    """
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise CodecError("body", f"not gzip: {error}") from error
    if len(out) > max_bytes:
        raise BodyTooLargeError(max_bytes)
    if not decompressor.eof:
        raise CodecError("body", "truncated gzip stream")
    if decompressor.unused_data:
        raise CodecError("body", "trailing bytes after the gzip stream")
    return out


def _encode_envelope(envelope: Envelope, where: str, quiet: bool) -> dict[str, object]:
    """`quiet`: the format carries the field (version 2 on)."""
    item: dict[str, object] = {
        "t": _TAG_BY_TYPE[type(envelope.message)],
        "s": _node_id(envelope.sender, f"{where}.s"),
        "r": _node_id(envelope.recipient, f"{where}.r"),
    }
    message = envelope.message
    item.update(_encode_message(message, where))
    if quiet and isinstance(message, AppendEntries | Heartbeat) and message.quiet:
        item["quiet"] = True
    return item


def _encode_message(message: Message, where: str) -> dict[str, object]:
    def n(name: str, value: int) -> int:
        return _check_int(value, f"{where}.{name}")

    match message:
        case RequestVote():
            vote: dict[str, object] = {
                "term": n("term", message.term),
                "last_log_index": n("last_log_index", message.last_log_index),
                "last_log_term": n("last_log_term", message.last_log_term),
                "pre_vote": message.pre_vote,
            }
            if message.transfer:  # only when set: a node of the previous version reads the rest
                vote["transfer"] = True
            return vote
        case VoteReply():
            return {
                "term": n("term", message.term),
                "granted": message.granted,
                "pre_vote": message.pre_vote,
            }
        case AppendEntries():
            return {
                "term": n("term", message.term),
                "prev_log_index": n("prev_log_index", message.prev_log_index),
                "prev_log_term": n("prev_log_term", message.prev_log_term),
                "leader_commit": n("leader_commit", message.leader_commit),
                "entries": [
                    [
                        n(f"entries[{i}].term", entry.term),
                        n(f"entries[{i}].index", entry.index),
                        base64.b64encode(entry.command).decode("ascii"),
                    ]
                    for i, entry in enumerate(message.entries)
                ],
            }
        case AppendReply():
            return {
                "term": n("term", message.term),
                "success": message.success,
                "match_index": n("match_index", message.match_index),
                "hint_index": n("hint_index", message.hint_index),
                "hint_term": n("hint_term", message.hint_term),
            }
        case Heartbeat():
            return {
                "term": n("term", message.term),
                "leader_commit": n("leader_commit", message.leader_commit),
                "read_round": n("read_round", message.read_round),
            }
        case HeartbeatReply():
            return {
                "term": n("term", message.term),
                "read_round": n("read_round", message.read_round),
                "last_log_index": n("last_log_index", message.last_log_index),
            }
        case InstallSnapshot():
            return {
                "term": n("term", message.term),
                "index": n("index", message.index),
                "snapshot_term": n("snapshot_term", message.snapshot_term),
            }
        case TimeoutNow():
            return {"term": n("term", message.term)}


def _decode_envelope(item: object, where: str, quiet: bool) -> Envelope:
    """`quiet`: the batch's format carries the field (version 2 on)."""
    if not isinstance(item, dict):
        raise CodecError(where, "expected an object")
    fields = _Fields(item, where)
    tag = fields.string("t")
    sender = NodeId(fields.string("s"))
    recipient = NodeId(fields.string("r"))
    message: Message
    if tag == "request_vote":
        message = RequestVote(
            term=Term(fields.integer("term")),
            last_log_index=Index(fields.integer("last_log_index")),
            last_log_term=Term(fields.integer("last_log_term")),
            pre_vote=fields.boolean("pre_vote"),
            transfer=fields.boolean("transfer", default=False),
        )
    elif tag == "vote_reply":
        message = VoteReply(
            term=Term(fields.integer("term")),
            granted=fields.boolean("granted"),
            pre_vote=fields.boolean("pre_vote"),
        )
    elif tag == "append_entries":
        message = AppendEntries(
            term=Term(fields.integer("term")),
            prev_log_index=Index(fields.integer("prev_log_index")),
            prev_log_term=Term(fields.integer("prev_log_term")),
            leader_commit=Index(fields.integer("leader_commit")),
            entries=fields.entries("entries"),
            quiet=quiet and fields.boolean("quiet", default=False),
        )
    elif tag == "append_reply":
        message = AppendReply(
            term=Term(fields.integer("term")),
            success=fields.boolean("success"),
            match_index=Index(fields.integer("match_index")),
            hint_index=Index(fields.integer("hint_index")),
            hint_term=Term(fields.integer("hint_term")),
        )
    elif tag == "heartbeat":
        message = Heartbeat(
            term=Term(fields.integer("term")),
            leader_commit=Index(fields.integer("leader_commit")),
            read_round=fields.integer("read_round"),
            quiet=quiet and fields.boolean("quiet", default=False),
        )
    elif tag == "heartbeat_reply":
        message = HeartbeatReply(
            term=Term(fields.integer("term")),
            read_round=fields.integer("read_round"),
            last_log_index=Index(fields.integer("last_log_index")),
        )
    elif tag == "install_snapshot":
        message = InstallSnapshot(
            term=Term(fields.integer("term")),
            index=Index(fields.integer("index")),
            snapshot_term=Term(fields.integer("snapshot_term")),
        )
    elif tag == "timeout_now":
        message = TimeoutNow(term=Term(fields.integer("term")))
    else:
        raise CodecError(f"{where}.t", f"unknown message type {tag!r}")
    fields.finish()
    return Envelope(sender, recipient, message)


class _Fields:
    """Typed reads of one decoded JSON object; `finish` refuses keys nobody read."""

    __slots__ = ("_object", "_read", "_where")

    def __init__(self, obj: dict[Any, Any], where: str) -> None:
        self._object = obj
        self._where = where
        self._read: set[str] = set()

    def _get(self, name: str) -> object:
        if name not in self._object:
            raise CodecError(f"{self._where}.{name}", "missing")
        self._read.add(name)
        value: object = self._object[name]
        return value

    def integer(self, name: str) -> int:
        return _check_int(self._get(name), f"{self._where}.{name}")

    def boolean(self, name: str, *, default: bool | None = None) -> bool:
        if default is not None and name not in self._object:
            return default
        value = self._get(name)
        if not isinstance(value, bool):
            raise CodecError(f"{self._where}.{name}", "expected a boolean")
        return value

    def string(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not value:
            raise CodecError(f"{self._where}.{name}", "expected a non-empty string")
        return value

    def array(self, name: str) -> list[object]:
        value = self._get(name)
        if not isinstance(value, list):
            raise CodecError(f"{self._where}.{name}", "expected an array")
        return value

    def entries(self, name: str) -> tuple[Entry, ...]:
        return tuple(
            _decode_entry(item, f"{self._where}.{name}[{i}]")
            for i, item in enumerate(self.array(name))
        )

    def finish(self) -> None:
        unknown = self._object.keys() - self._read
        if unknown:
            raise CodecError(self._where, f"unknown keys {sorted(map(str, unknown))}")


def _decode_entry(item: object, where: str) -> Entry:
    if not isinstance(item, list) or len(item) != 3:
        raise CodecError(where, "expected [term, index, command]")
    term, index, command = item
    if not isinstance(command, str):
        raise CodecError(f"{where}[2]", "expected a base64 string")
    try:
        payload = base64.b64decode(command, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CodecError(f"{where}[2]", f"bad base64: {error}") from error
    return Entry(
        term=Term(_check_int(term, f"{where}[0]")),
        index=Index(_check_int(index, f"{where}[1]")),
        command=payload,
    )


def _check_int(value: object, where: str) -> int:
    # bool is an int subclass, and orjson turns integers beyond 64 bits into floats.
    if type(value) is not int or not 0 <= value <= MAX_WIRE_INT:
        raise CodecError(where, f"expected an integer in 0..{MAX_WIRE_INT}")
    return value


def _node_id(value: str, where: str) -> str:
    if not value:
        raise CodecError(where, "node id must be a non-empty string")
    return value
