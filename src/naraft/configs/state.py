"""ConfigState: the configs and their history as datums, changed only by `apply`.

Layout in the shared `DatumTable` (so snapshots, digest catch-up and the state checksum
cover it like everything else):

| datum | key | value |
|---|---|---|
| a config | `naraft.cs.config.` + tenant `/` group `/` dataId | `ConfigRecord` JSON |
| a history record | `naraft.cs.history.` + nid, 20 digits | `HistoryRecord` JSON |
| the id counters | `naraft.cs.ids` | `{"lastId": n, "lastNid": n}` |

`/` cannot occur in a valid dataId, group or tenant, so a key parses back unambiguously.

Apply is deterministic: times, the source and the history retention arrive in the command.
History is pruned as Nacos prunes it (records older than the retention), driven by the
applying entry's own stamp: each config entry drops up to `PRUNE_BATCH` records, oldest
first, whose stamp is older than `stamped_at_ms - retention_ms`.

Beside the table the state keeps an index (configs by key and by id, history by nid, by
key and by config id). Its own writes keep it current; when the table changed behind its
back (an entry rolled back, a snapshot installed: `DatumTable.generation`), it is rebuilt
from the table before the next use.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from naraft.configs.commands import (
    Change,
    ConfigCommand,
    DeleteConfig,
    DeleteConfigs,
    PruneHistory,
    PublishConfig,
)
from naraft.configs.model import ConfigKey, ConfigRecord, HistoryRecord, OpType, content_md5
from naraft.state.datums import DatumTable

CONFIG_PREFIX: Final = "naraft.cs.config."
HISTORY_PREFIX: Final = "naraft.cs.history."
IDS_KEY: Final = "naraft.cs.ids"
PRUNE_BATCH: Final = 256
_SEP: Final = "/"


def config_datum_key(key: ConfigKey) -> str:
    return f"{CONFIG_PREFIX}{key.tenant}{_SEP}{key.group}{_SEP}{key.data_id}"


def config_key_of(datum_key: str) -> ConfigKey | None:
    """The config a datum key holds, or None for any other datum."""
    if not datum_key.startswith(CONFIG_PREFIX):
        return None
    parts = datum_key[len(CONFIG_PREFIX) :].split(_SEP, 2)
    if len(parts) != 3:
        return None
    return ConfigKey(tenant=parts[0], group=parts[1], data_id=parts[2])


def history_datum_key(nid: int) -> str:
    return f"{HISTORY_PREFIX}{nid:020d}"


# ---------------------------------------------------------------------- record codec


def encode_config(record: ConfigRecord) -> bytes:
    key = record.key
    return orjson.dumps(
        {
            "id": record.id,
            "dataId": key.data_id,
            "group": key.group,
            "tenant": key.tenant,
            "content": record.content,
            "md5": record.md5,
            "appName": record.app_name,
            "type": record.type,
            "desc": record.desc,
            "configTags": record.config_tags,
            "createTime": record.create_ms,
            "modifyTime": record.modify_ms,
            "srcIp": record.src_ip,
            "srcUser": record.src_user,
        }
    )


def decode_config(value: bytes) -> ConfigRecord:
    data: Any = orjson.loads(value)
    return ConfigRecord(
        key=ConfigKey(tenant=data["tenant"], group=data["group"], data_id=data["dataId"]),
        id=data["id"],
        content=data["content"],
        md5=data["md5"],
        app_name=data["appName"],
        type=data["type"],
        desc=data["desc"],
        config_tags=data["configTags"],
        create_ms=data["createTime"],
        modify_ms=data["modifyTime"],
        src_ip=data["srcIp"],
        src_user=data["srcUser"],
    )


def encode_history(record: HistoryRecord) -> bytes:
    key = record.key
    return orjson.dumps(
        {
            "nid": record.nid,
            "id": record.config_id,
            "dataId": key.data_id,
            "group": key.group,
            "tenant": key.tenant,
            "appName": record.app_name,
            "content": record.content,
            "md5": record.md5,
            "srcIp": record.src_ip,
            "srcUser": record.src_user,
            "opType": record.op_type,
            "createdMs": record.created_ms,
        }
    )


def decode_history(value: bytes) -> HistoryRecord:
    data: Any = orjson.loads(value)
    return HistoryRecord(
        nid=data["nid"],
        config_id=data["id"],
        key=ConfigKey(tenant=data["tenant"], group=data["group"], data_id=data["dataId"]),
        app_name=data["appName"],
        content=data["content"],
        md5=data["md5"],
        src_ip=data["srcIp"],
        src_user=data["srcUser"],
        op_type=data["opType"],
        created_ms=data["createdMs"],
    )


# ---------------------------------------------------------------------- apply results


class ConfigRejectReason(enum.StrEnum):
    CAS_MISMATCH = "cas-mismatch"


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """The command took effect at `index`; `changed` lists the configs it wrote or
    removed (none for a delete of a missing config)."""

    index: int
    changed: tuple[ConfigKey, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigRejected:
    reason: ConfigRejectReason
    detail: str = ""


ConfigApplyResult = ConfigApplied | ConfigRejected


# ------------------------------------------------------------------------ the index


@dataclass(slots=True)
class _Index:
    generation: int
    configs: dict[ConfigKey, ConfigRecord] = field(default_factory=dict)
    by_id: dict[int, ConfigKey] = field(default_factory=dict)
    history: dict[int, HistoryRecord] = field(default_factory=dict)  # content left out
    order: deque[int] = field(default_factory=deque)  # nids, ascending
    by_key: dict[ConfigKey, deque[int]] = field(default_factory=dict)
    by_config_id: dict[int, deque[int]] = field(default_factory=dict)
    last_id: int = 0
    last_nid: int = 0

    def add_history(self, record: HistoryRecord) -> None:
        self.history[record.nid] = record.without_content()
        self.order.append(record.nid)
        self.by_key.setdefault(record.key, deque()).append(record.nid)
        self.by_config_id.setdefault(record.config_id, deque()).append(record.nid)

    def drop_oldest_history(self) -> int:
        nid = self.order.popleft()
        record = self.history.pop(nid)
        for table, owner in ((self.by_key, record.key), (self.by_config_id, record.config_id)):
            nids = table[owner]  # type: ignore[index]
            nids.remove(nid)
            if not nids:
                del table[owner]  # type: ignore[arg-type]
        return nid


def _build_index(datums: DatumTable) -> _Index:
    index = _Index(generation=datums.generation)
    histories: list[HistoryRecord] = []
    for datum_key, datum in datums.items():
        if datum_key.startswith(CONFIG_PREFIX):
            record = decode_config(datum.value)
            index.configs[record.key] = record
            index.by_id[record.id] = record.key
        elif datum_key.startswith(HISTORY_PREFIX):
            histories.append(decode_history(datum.value))
        elif datum_key == IDS_KEY:
            ids: Any = orjson.loads(datum.value)
            index.last_id, index.last_nid = ids["lastId"], ids["lastNid"]
    for history in sorted(histories, key=lambda r: r.nid):
        index.add_history(history)
    return index


class ConfigState:
    """The config state machine over a DatumTable. One owner: the replica's apply loop."""

    def __init__(self, datums: DatumTable) -> None:
        self._datums = datums
        self._index: _Index | None = None

    @property
    def datums(self) -> DatumTable:
        return self._datums

    def _current(self) -> _Index:
        index = self._index
        if index is None or index.generation != self._datums.generation:
            index = self._index = _build_index(self._datums)
        return index

    # ------------------------------------------------------------------- apply

    def apply(self, command: ConfigCommand, index: int) -> ConfigApplyResult:
        """Apply `command` committed at log `index`. Deterministic; may raise only on a bug
        (the state machine then rolls the entry back and records it)."""
        state = self._current()
        result: ConfigApplyResult
        match command:
            case PublishConfig():
                result = self._publish(state, command, index)
            case DeleteConfig():
                deleted = self._delete(state, command.key, command.change, index)
                result = ConfigApplied(index, (command.key,) if deleted else ())
            case DeleteConfigs():
                keys = [state.by_id[i] for i in command.ids if i in state.by_id]
                done = [k for k in keys if self._delete(state, k, command.change, index)]
                result = ConfigApplied(index, tuple(done))
            case PruneHistory():
                result = ConfigApplied(index)
        if isinstance(result, ConfigApplied):
            self._prune(state, command.change, index)
            self._write_ids(state, index)
        return result

    def _publish(self, state: _Index, command: PublishConfig, index: int) -> ConfigApplyResult:
        key, change = command.key, command.change
        current = state.configs.get(key)
        if command.cas_md5 is not None and (current is None or current.md5 != command.cas_md5):
            found = "no config" if current is None else f"md5 {current.md5}"
            return ConfigRejected(ConfigRejectReason.CAS_MISMATCH, f"casMd5 mismatch: {found}")
        stamp = change.stamped_at_ms
        record = ConfigRecord(
            key=key,
            id=current.id if current is not None else state.last_id + 1,
            content=command.content,
            md5=content_md5(command.content),
            app_name=command.app_name,
            type=command.type,
            desc=command.desc,
            config_tags=command.config_tags,
            create_ms=current.create_ms if current is not None else stamp,
            modify_ms=stamp,
            src_ip=change.src_ip,
            src_user=change.src_user,
        )
        if current is None:
            state.last_id = record.id
            self._record_history(state, record, OpType.INSERT, change, index)
        else:
            self._record_history(state, current, OpType.UPDATE, change, index)
        self._datums.put(config_datum_key(key), encode_config(record), index)
        state.configs[key] = record
        state.by_id[record.id] = key
        return ConfigApplied(index, (key,))

    def _delete(self, state: _Index, key: ConfigKey, change: Change, index: int) -> bool:
        current = state.configs.pop(key, None)
        if current is None:
            return False
        state.by_id.pop(current.id, None)
        self._datums.delete(config_datum_key(key))
        self._record_history(state, current, OpType.DELETE, change, index)
        return True

    def _record_history(
        self, state: _Index, record: ConfigRecord, op_type: str, change: Change, index: int
    ) -> None:
        state.last_nid += 1
        history = HistoryRecord(
            nid=state.last_nid,
            config_id=record.id,
            key=record.key,
            app_name=record.app_name,
            content=record.content,
            md5=record.md5,
            src_ip=change.src_ip,
            src_user=change.src_user,
            op_type=op_type,
            created_ms=change.stamped_at_ms,
        )
        self._datums.put(history_datum_key(history.nid), encode_history(history), index)
        state.add_history(history)

    def _prune(self, state: _Index, change: Change, index: int) -> None:
        cutoff = change.stamped_at_ms - change.retention_ms
        for _ in range(PRUNE_BATCH):
            if not state.order or state.history[state.order[0]].created_ms >= cutoff:
                return
            self._datums.delete(history_datum_key(state.drop_oldest_history()))

    def _write_ids(self, state: _Index, index: int) -> None:
        value = orjson.dumps({"lastId": state.last_id, "lastNid": state.last_nid})
        current = self._datums.get(IDS_KEY)
        if current is None or current.value != value:
            self._datums.put(IDS_KEY, value, index)
        state.generation = self._datums.generation

    # ------------------------------------------------------------------- reads

    def get(self, key: ConfigKey) -> ConfigRecord | None:
        return self._current().configs.get(key)

    def md5_of(self, key: ConfigKey) -> str:
        """The config's MD5, "" when there is none (what Nacos compares listeners with)."""
        record = self._current().configs.get(key)
        return "" if record is None else record.md5

    def count(self) -> int:
        return len(self._current().configs)

    def history_count(self) -> int:
        return len(self._current().history)

    def configs(self) -> Iterator[ConfigRecord]:
        """Every config, ordered by id (Nacos pages by row order)."""
        state = self._current()
        for config_id in sorted(state.by_id):
            yield state.configs[state.by_id[config_id]]

    def oldest_history_ms(self) -> int | None:
        state = self._current()
        return state.history[state.order[0]].created_ms if state.order else None

    def history_of(self, key: ConfigKey) -> list[HistoryRecord]:
        """The key's history, newest first, without contents."""
        nids = self._current().by_key.get(key, ())
        history = self._current().history
        return [history[nid] for nid in reversed(nids)]

    def history_record(self, nid: int) -> HistoryRecord | None:
        datum = self._datums.get(history_datum_key(nid))
        return None if datum is None else decode_history(datum.value)

    def previous_history(self, config_id: int) -> HistoryRecord | None:
        """The config's newest history record (Nacos: max nid with this config id)."""
        nids = self._current().by_config_id.get(config_id)
        return self.history_record(nids[-1]) if nids else None


def changed_configs(keys: Iterable[str]) -> set[ConfigKey]:
    """The configs among changed datum keys."""
    found = set()
    for datum_key in keys:
        key = config_key_of(datum_key)
        if key is not None:
            found.add(key)
    return found
