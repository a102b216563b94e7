"""ConfigState through the node's state machine: publish (with casMd5), delete, delete by
ids, history with deterministic pruning, MD5 as Nacos computes it, rollback and snapshots."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import fields, replace

import pytest

from naraft.configs.commands import (
    Change,
    DeleteConfig,
    DeleteConfigs,
    PruneHistory,
    PublishConfig,
    decode_config_command,
    encode_config_command,
)
from naraft.configs.model import ConfigKey, HistoryRecord, OpType, content_md5
from naraft.configs.service import ConfigService
from naraft.configs.settings import ConfigSettings
from naraft.configs.state import ConfigApplied, ConfigRejected, ConfigState
from naraft.configs.validate import RawPublish
from naraft.machine import NodeStateMachine
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.state.datums import DatumTable
from naraft.state.rejections import REJECTIONS_KEY, EntryRejected

DAY = 86_400_000
T0 = 1_700_000_000_000
KEY = ConfigKey(tenant="", group="DEFAULT_GROUP", data_id="app.yaml")


def change(at_ms: int = T0, retention_ms: int = 30 * DAY) -> Change:
    return Change(src_ip="10.0.0.1", stamped_at_ms=at_ms, retention_ms=retention_ms)


class Machine:
    def __init__(self, datums: DatumTable | None = None) -> None:
        self.datums = datums if datums is not None else DatumTable()
        self.configs = ConfigState(self.datums)
        self.machine = NodeStateMachine(self.datums, NamingState(self.datums), configs=self.configs)
        self.index = 0

    def apply(self, command: object) -> object:
        self.index += 1
        payload = encode_config_command(command)  # type: ignore[arg-type]
        return self.machine.apply(Entry(term=1, index=self.index, command=payload))


def publish(
    content: str, *, key: ConfigKey = KEY, cas: str | None = None, at: int = T0
) -> PublishConfig:
    return PublishConfig(key=key, content=content, cas_md5=cas, change=change(at))


def test_md5_is_the_hex_md5_of_the_utf8_bytes() -> None:
    text = "名字=值\nemoji=🎉"
    assert content_md5(text) == hashlib.md5(text.encode("utf-8")).hexdigest()
    assert content_md5("a") == "0cc175b9c0f1b6a831c399e269772661"


def test_publish_update_delete_keep_id_and_history() -> None:
    m = Machine()
    assert m.apply(publish("v1")) == ConfigApplied(1, (KEY,))
    first = m.configs.get(KEY)
    assert first is not None
    assert first.id == 1
    assert first.md5 == content_md5("v1")
    m.apply(publish("v2", at=T0 + 5))
    second = m.configs.get(KEY)
    assert second is not None
    assert second.id == 1
    assert second.content == "v2"
    assert second.create_ms == T0
    assert second.modify_ms == T0 + 5
    m.apply(DeleteConfig(key=KEY, change=change(T0 + 9)))
    assert m.configs.get(KEY) is None
    assert m.configs.md5_of(KEY) == ""
    history = m.configs.history_of(KEY)
    assert [h.op_type for h in history] == [OpType.DELETE, OpType.UPDATE, OpType.INSERT]
    # an update and a delete keep the content they replaced, an insert the new one
    contents = [m.configs.history_record(h.nid).content for h in history]  # type: ignore[union-attr]
    assert contents == ["v2", "v1", "v1"]
    previous = m.configs.previous_history(1)
    assert previous is not None
    assert previous.op_type == OpType.DELETE


def test_cas_publish_applies_only_on_a_matching_md5() -> None:
    m = Machine()
    absent = m.apply(publish("v1", cas=content_md5("x")))
    assert isinstance(absent, ConfigRejected)
    assert m.configs.get(KEY) is None
    m.apply(publish("v1"))
    wrong = m.apply(publish("v2", cas=content_md5("nope")))
    assert isinstance(wrong, ConfigRejected)
    assert m.configs.get(KEY).content == "v1"  # type: ignore[union-attr]
    assert m.apply(publish("v2", cas=content_md5("v1"))) == ConfigApplied(4, (KEY,))
    assert m.configs.get(KEY).content == "v2"  # type: ignore[union-attr]


def test_delete_by_ids_skips_missing_ones() -> None:
    m = Machine()
    other = ConfigKey(tenant="ns1", group="G", data_id="b")
    m.apply(publish("a"))
    m.apply(publish("b", key=other))
    result = m.apply(DeleteConfigs(ids=(2, 99), change=change()))
    assert result == ConfigApplied(3, (other,))
    assert m.configs.get(other) is None
    assert m.configs.get(KEY) is not None


def test_history_is_pruned_by_the_entrys_own_stamp() -> None:
    m = Machine()
    m.apply(publish("v1", at=T0))
    m.apply(publish("v2", at=T0 + DAY))
    assert m.configs.history_count() == 2
    # 30 days after the first change, plus one ms: only the first record is past it
    m.apply(PruneHistory(change=change(T0 + 30 * DAY + 1)))
    assert [h.content for h in (m.configs.history_record(n) for n in (1, 2)) if h] == ["v1"]
    assert m.configs.history_count() == 1
    # a shorter retention carried by the command prunes the rest
    m.apply(PruneHistory(change=change(T0 + 30 * DAY + 2, retention_ms=DAY)))
    assert m.configs.history_count() == 0


def test_replicas_applying_the_same_entries_hold_the_same_datums() -> None:
    a, b = Machine(), Machine()
    commands = [
        publish("v1"),
        publish("v2", at=T0 + DAY),
        DeleteConfig(key=KEY, change=change(T0 + 40 * DAY)),
    ]
    for command in commands:
        a.apply(command)
        b.apply(command)
    assert dict(a.datums.items()) == dict(b.datums.items())


def test_a_rolled_back_entry_leaves_the_index_as_the_table() -> None:
    m = Machine()
    m.apply(publish("v1"))
    m.machine._configured_quota = 0
    # a quota just above the current size: the next publish is rolled back on apply
    m.datums.put("naraft.meta.quota", b'{"bytes": %d}' % (m.datums.size_bytes + 10), 2)
    m.index = 2
    rejected = m.apply(publish("much longer content " * 10))
    assert isinstance(rejected, EntryRejected)
    assert m.configs.get(KEY).content == "v1"  # type: ignore[union-attr]
    assert m.configs.history_count() == 1


def test_a_snapshot_rebuilds_the_index() -> None:
    m = Machine()
    m.apply(publish("v1"))
    copy = Machine(DatumTable())
    copy.datums.replace_all(dict(m.datums.items()))
    assert copy.configs.get(KEY) == m.configs.get(KEY)
    copy.apply(publish("v2"))
    assert copy.configs.get(KEY).id == 1  # type: ignore[union-attr]
    assert copy.configs.history_count() == 2


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"cs.publish"}',
        b'{"op":"cs.nope","src_ip":"","src_user":"","stamped_at_ms":1,"retention_ms":1}',
        b'{"op":"cs.publish","key":["","G","bad id"],"content":"x","app_name":"","type":"text",'
        b'"desc":"","config_tags":"","cas_md5":null,"src_ip":"","src_user":"",'
        b'"stamped_at_ms":1,"retention_ms":1}',
        b'{"op":"cs.delete_ids","ids":[-1],"src_ip":"","src_user":"","stamped_at_ms":1,'
        b'"retention_ms":1}',
        b'{"op":"cs.',
    ],
)
def test_a_bad_command_is_rejected_and_changes_nothing(payload: bytes) -> None:
    m = Machine()
    m.apply(publish("v1"))
    before = dict(m.datums.items())
    result = m.machine.apply(Entry(term=1, index=2, command=payload))
    assert isinstance(result, EntryRejected)
    assert {k: v for k, v in m.datums.items() if k != REJECTIONS_KEY} == before


def test_commands_round_trip() -> None:
    for command in (
        publish("x", cas="abc"),
        DeleteConfig(key=KEY, change=change()),
        DeleteConfigs(ids=(1, 2), change=change()),
        PruneHistory(change=change()),
    ):
        assert decode_config_command(encode_config_command(command)) == command


def test_writes_outside_an_entry_rebuild_the_index() -> None:
    """A digest install writes the live table key by key, not through apply."""
    source = Machine()
    source.apply(publish("v1"))
    source.apply(publish("v2", key=ConfigKey(tenant="", group="G", data_id="other")))
    m = Machine()
    m.apply(publish("old"))
    assert m.configs.count() == 1
    for key, datum in source.datums.items():
        m.datums.put(key, datum.value, datum.version)
    assert m.configs.count() == 2
    assert m.configs.get(KEY).content == "v1"  # type: ignore[union-attr]


class _Clock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class _Proposer:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    async def propose(self, command: bytes) -> object:
        self.machine.index += 1
        return self.machine.machine.apply(Entry(term=1, index=self.machine.index, command=command))

    async def read_barrier(self) -> None:
        return None


@pytest.mark.usefixtures("no_leftover_event_loop")
def test_an_idle_leader_prunes_history_past_the_retention() -> None:
    m = Machine()
    clock = _Clock(T0)
    service = ConfigService(m.configs, _Proposer(m), clock, ConfigSettings(history_days=1))
    raw = RawPublish(data_id="app.yaml", group="DEFAULT_GROUP", tenant="", content="v1")
    asyncio.run(service.publish(raw))
    assert not service.prune_due()
    clock.now = T0 + DAY + 1
    assert service.prune_due()
    asyncio.run(service.prune_history())
    assert m.configs.history_count() == 0
    assert not service.prune_due()
    assert m.configs.get(KEY).content == "v1"  # type: ignore[union-attr]


def test_a_history_record_without_content_keeps_every_other_field() -> None:
    record = HistoryRecord(
        nid=7,
        config_id=3,
        key=ConfigKey(tenant="t", group="g", data_id="d"),
        app_name="app",
        content="body",
        md5="m",
        src_ip="10.0.0.1",
        src_user="u",
        op_type=OpType.UPDATE,
        created_ms=99,
    )
    # every field set to something other than a default, so a field added later must be
    # set here too, and then shows whether `without_content` copies it
    assert all(getattr(record, f.name) != f.default for f in fields(HistoryRecord))
    assert record.without_content() == replace(record, content="")
