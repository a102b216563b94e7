"""The key/value view of the datums (the seed's datum API): commands and their apply.

Keys live in the datum table under `KV_PREFIX`, so the naming domain's keys and these never
collide, and digest sync and checksums see both. Deterministic: no clock, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.state.datums import Datum, DatumTable

KV_PREFIX: Final = "naraft.kv."
OP_PUT: Final = "kv.put"
OP_DELETE: Final = "kv.delete"
COMMAND_MARKER: Final = b'{"op":"kv.'  # every encoded kv command starts with these bytes
MAX_KEY_BYTES: Final = 512
MAX_VALUE_BYTES: Final = 1 << 20

_ABSENT: Final = object()


class KvCommandError(ValueError):
    """A log payload that is not a valid kv command (rejected identically on every replica)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PutValue:
    """Write `value` at `key`; with `check_prev`, only if the current value is `prev`
    (None: only if the key is absent)."""

    key: str
    value: str
    check_prev: bool = False
    prev: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteKey:
    key: str


KvCommand = PutValue | DeleteKey


@dataclass(frozen=True, slots=True, kw_only=True)
class KvPut:
    """The put applied; `index` is the log index, now the key's version."""

    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class KvCasFailed:
    """The compare-and-set did not apply; `current` is the value it found (None: absent)."""

    current: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class KvDeleted:
    deleted: bool
    index: int


KvResult = KvPut | KvCasFailed | KvDeleted


def encode_kv(command: KvCommand) -> bytes:
    """The log payload of `command` ("op" first, so `COMMAND_MARKER` recognises it)."""
    match command:
        case PutValue():
            body: dict[str, object] = {"op": OP_PUT, "key": command.key, "value": command.value}
            if command.check_prev:
                body["prev"] = command.prev
            return orjson.dumps(body)
        case DeleteKey():
            return orjson.dumps({"op": OP_DELETE, "key": command.key})


def decode_kv(payload: bytes) -> KvCommand:
    try:
        data: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise KvCommandError(f"not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        raise KvCommandError("a kv command is an object with a string key")
    op, key = data.get("op"), data["key"]
    if op == OP_DELETE:
        return DeleteKey(key=key)
    if op != OP_PUT or not isinstance(data.get("value"), str):
        raise KvCommandError(f"unknown kv op {op!r} or non-string value")
    prev = data.get("prev", _ABSENT)
    if prev is _ABSENT:
        return PutValue(key=key, value=data["value"])
    if prev is not None and not isinstance(prev, str):
        raise KvCommandError("prev must be a string or null")
    return PutValue(key=key, value=data["value"], check_prev=True, prev=prev)


def is_kv_command(payload: bytes) -> bool:
    return payload.startswith(COMMAND_MARKER)


def datum_key(key: str) -> str:
    return KV_PREFIX + key


def read_value(datums: DatumTable, key: str) -> Datum | None:
    return datums.get(datum_key(key))


def apply_kv(datums: DatumTable, command: KvCommand, index: int) -> KvResult:
    """Apply `command` as the log entry at `index`."""
    stored = datums.get(datum_key(command.key))
    match command:
        case PutValue():
            if command.check_prev:
                current = stored.value.decode() if stored is not None else None
                if current != command.prev:
                    return KvCasFailed(current=current)
            datums.put(datum_key(command.key), command.value.encode(), index)
            return KvPut(index=index)
        case DeleteKey():
            return KvDeleted(deleted=datums.delete(datum_key(command.key)), index=index)
