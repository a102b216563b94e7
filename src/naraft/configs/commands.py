"""Config commands: what a config write proposes to the log, and their strict codec.

Each command carries `stamped_at_ms` (the proposing leader's clock) and `retention_ms` (the
proposer's history retention), so that applying it, including pruning the history, reads
no clock and no setting of the replica that applies it. Encoded as JSON objects whose first
field is `"op":"cs.…"` (`COMMAND_MARKER`), decoded with every value bounded; anything else
raises `ConfigCommandError`, which the state machine records as a rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from naraft.configs import validate
from naraft.configs.model import ConfigKey
from naraft.errors import InvalidArgumentError

COMMAND_MARKER: Final = b'{"op":"cs.'
OP_PUBLISH: Final = "cs.publish"
OP_DELETE: Final = "cs.delete"
OP_DELETE_IDS: Final = "cs.delete_ids"
OP_PRUNE: Final = "cs.prune"
MAX_CONTENT_BYTES: Final = 256 << 20  # far above any configured limit: a sanity bound
MAX_RETENTION_MS: Final = 3650 * 86_400_000
MAX_STAMP_MS: Final = 1 << 53


class ConfigCommandError(ValueError):
    """A payload that is not a valid config command (rejected alike on every replica)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Who made a change and when, and how long history is kept."""

    src_ip: str = ""
    src_user: str = ""
    stamped_at_ms: int
    retention_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishConfig:
    """Create or replace a config; with `cas_md5`, only if it exists with that MD5."""

    key: ConfigKey
    content: str
    app_name: str = ""
    type: str = "text"
    desc: str = ""
    config_tags: str = ""
    cas_md5: str | None = None
    change: Change


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteConfig:
    key: ConfigKey
    change: Change


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteConfigs:
    """Delete the configs with these ids (Nacos `delType=ids`); missing ones are skipped."""

    ids: tuple[int, ...]
    change: Change


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneHistory:
    """Drop history records older than the retention (the leader proposes it when due)."""

    change: Change


ConfigCommand = PublishConfig | DeleteConfig | DeleteConfigs | PruneHistory


def is_config_command(payload: bytes) -> bool:
    return payload.startswith(COMMAND_MARKER)


def _key(key: ConfigKey) -> list[str]:
    return [key.tenant, key.group, key.data_id]


def _change(change: Change) -> dict[str, object]:
    return {
        "src_ip": change.src_ip,
        "src_user": change.src_user,
        "stamped_at_ms": change.stamped_at_ms,
        "retention_ms": change.retention_ms,
    }


def encode_config_command(command: ConfigCommand) -> bytes:
    body: dict[str, object]
    match command:
        case PublishConfig():
            body = {
                "op": OP_PUBLISH,
                "key": _key(command.key),
                "content": command.content,
                "app_name": command.app_name,
                "type": command.type,
                "desc": command.desc,
                "config_tags": command.config_tags,
                "cas_md5": command.cas_md5,
            }
        case DeleteConfig():
            body = {"op": OP_DELETE, "key": _key(command.key)}
        case DeleteConfigs():
            body = {"op": OP_DELETE_IDS, "ids": list(command.ids)}
        case PruneHistory():
            body = {"op": OP_PRUNE}
    return orjson.dumps({**body, **_change(command.change)})


# ------------------------------------------------------------------------- decoding


def _text(data: dict[str, Any], name: str, max_chars: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or len(value) > max_chars:
        raise ConfigCommandError(f"{name}: a string of at most {max_chars} characters")
    return value


def _int(data: dict[str, Any], name: str, high: int) -> int:
    value = data.get(name)
    if type(value) is not int or not 0 <= value <= high:
        raise ConfigCommandError(f"{name}: an integer in 0..{high}")
    return value


def _decode_key(data: dict[str, Any]) -> ConfigKey:
    raw = data.get("key")
    if not isinstance(raw, list) or len(raw) != 3 or not all(isinstance(p, str) for p in raw):
        raise ConfigCommandError("key: [tenant, group, dataId]")
    tenant, group, data_id = raw
    try:
        key = validate.config_key(data_id, group, tenant)
    except InvalidArgumentError as error:
        raise ConfigCommandError(f"key: {error}") from None
    if key != ConfigKey(tenant=tenant, group=group, data_id=data_id):
        raise ConfigCommandError("key: not in canonical form")
    return key


def _decode_change(data: dict[str, Any]) -> Change:
    return Change(
        src_ip=_text(data, "src_ip", validate.MAX_SRC_CHARS),
        src_user=_text(data, "src_user", validate.MAX_SRC_CHARS),
        stamped_at_ms=_int(data, "stamped_at_ms", MAX_STAMP_MS),
        retention_ms=_int(data, "retention_ms", MAX_RETENTION_MS),
    )


def decode_config_command(payload: bytes) -> ConfigCommand:
    try:
        data: Any = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise ConfigCommandError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigCommandError("not a JSON object")
    change = _decode_change(data)
    op = data.get("op")
    if op == OP_PUBLISH:
        content = _text(data, "content", MAX_CONTENT_BYTES)
        cas = data.get("cas_md5")
        if cas is not None and (not isinstance(cas, str) or len(cas) > validate.MAX_CAS_MD5_CHARS):
            raise ConfigCommandError("cas_md5: null or an MD5 hex string")
        return PublishConfig(
            key=_decode_key(data),
            content=content,
            app_name=_text(data, "app_name", validate.MAX_APP_NAME_CHARS),
            type=_text(data, "type", validate.MAX_TYPE_CHARS),
            desc=_text(data, "desc", validate.MAX_DESC_CHARS),
            config_tags=_text(
                data, "config_tags", validate.MAX_TAGS * (validate.MAX_TAG_CHARS + 1)
            ),
            cas_md5=cas,
            change=change,
        )
    if op == OP_DELETE:
        return DeleteConfig(key=_decode_key(data), change=change)
    if op == OP_DELETE_IDS:
        raw_ids = data.get("ids")
        if not isinstance(raw_ids, list) or len(raw_ids) > validate.MAX_IDS:
            raise ConfigCommandError(f"ids: a list of at most {validate.MAX_IDS} ids")
        if not all(type(i) is int and 0 <= i < 1 << 62 for i in raw_ids):
            raise ConfigCommandError("ids: non-negative integers")
        return DeleteConfigs(ids=tuple(raw_ids), change=change)
    if op == OP_PRUNE:
        return PruneHistory(change=change)
    raise ConfigCommandError(f"unknown op {str(op)[:40]!r}")
