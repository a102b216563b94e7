"""NodeStateMachine: apply is total (a fault or the quota rejects an entry as a whole, the
same way on every replica), the state's size accounting, and the quota alarm."""

from __future__ import annotations

import orjson
import pytest

from naraft.machine import (
    QUOTA_KEY,
    NodeStateMachine,
    alarm_margin,
    encode_raise_cluster_version,
    encode_set_quota,
    raised_version,
)
from naraft.naming.codec import encode_command
from naraft.naming.commands import (
    DeregisterInstance,
    RegisterInstance,
    ReleaseOwner,
    UpdateSwitches,
)
from naraft.naming.feed import ChangeFeed
from naraft.naming.keys import SWITCH_KEY, ServiceKey
from naraft.naming.model import Instance
from naraft.naming.state import Applied, NamingState, Rejected, RejectReason
from naraft.raft import Entry, Index, Term
from naraft.state.datums import Datum, DatumTable, datum_size
from naraft.state.kv import DeleteKey, KvDeleted, KvPut, PutValue, encode_kv
from naraft.state.rejections import REJECTIONS_KEY, EntryRejected, RejectionKind

T0 = 1_700_000_000_000
ORDERS = ServiceKey(namespace_id="public", group_name="DEFAULT_GROUP", service_name="orders")
# What an older build let through and then died applying, on every replica and restart.
POISON_SWITCH = UpdateSwitches(
    entry="clientBeatInterval", value="1000000000000000000000000000000", stamped_at_ms=T0
)


def machine(quota_bytes: int | None = None) -> NodeStateMachine:
    """A replica whose replicated quota is `quota_bytes` (set by the entry at index 0)."""
    datums = DatumTable()
    m = NodeStateMachine(datums, NamingState(datums), quota_bytes=quota_bytes)
    proposal = m.quota_proposal()
    if proposal is not None:
        m.apply(entry(0, proposal))
    assert m.quota_proposal() is None
    return m


def entry(index: int, command: bytes) -> Entry:
    return Entry(Term(1), Index(index), command)


def put(key: str, value: str) -> bytes:
    return encode_kv(PutValue(key=key, value=value))


def state_of(m: NodeStateMachine) -> dict[str, Datum]:
    return dict(m.datums.items())


# ------------------------------------------------------------------ size and undo journal


def test_the_table_counts_keys_and_values_in_bytes() -> None:
    table = DatumTable({"a": Datum(b"xyz", 1)})
    assert table.size_bytes == 4
    table.put("é", b"12", 2)  # two UTF-8 bytes of key
    assert table.size_bytes == 4 + 4
    table.put("a", b"", 3)
    assert table.size_bytes == 1 + 4
    table.put("é", b"1234", 4)  # a key written again counts its value's change only
    assert table.size_bytes == 1 + 6 == sum(datum_size(k, d) for k, d in table.items())
    table.delete("é")
    assert table.size_bytes == 1
    table.replace_all({"k" * 10: Datum(b"v" * 5, 4)})
    assert table.size_bytes == 15 == sum(datum_size(k, d) for k, d in table.items())


def test_rollback_puts_back_every_key_and_the_size() -> None:
    table = DatumTable({"a": Datum(b"1", 1), "b": Datum(b"2", 1)})
    before, size = dict(table.items()), table.size_bytes
    table.drain_changes()
    table.begin()
    table.put("a", b"changed", 2)
    table.put("a", b"twice", 2)
    table.delete("b")
    table.put("c", b"new", 2)
    table.rollback()
    assert dict(table.items()) == before
    assert table.size_bytes == size
    changes = table.drain_changes()  # what the store is told: the datums it already holds
    assert dict(changes.puts) == before
    assert changes.deletes == {"c"}


# ------------------------------------------------------------------------- apply is total


def test_the_poison_switch_of_older_builds_is_refused_on_apply_and_changes_nothing() -> None:
    m = machine()
    result = m.apply(entry(1, encode_command(POISON_SWITCH)))
    assert isinstance(result, Rejected)
    assert result.reason is RejectReason.INVALID_SWITCH
    assert "clientBeatInterval" in result.detail
    assert m.datums.get(SWITCH_KEY) is None


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"kv.put","key":1}',
        b'{"op":"kv.nope","key":"k","value":"v"}',
        b"\x00garbage",
        b'{"op":"naming.register_instance","v":99}',
        b'{"op":"naming.update_switches","v":1,"entry":"x"}',
        b'{"op":"naming.release_owner","v":1,"owner":"","keys":[],"stamped_at_ms":1}',
    ],
)
def test_an_undecodable_entry_is_a_recorded_fault(payload: bytes) -> None:
    m = machine()
    result = m.apply(entry(5, payload))
    assert isinstance(result, EntryRejected)
    assert result.kind is RejectionKind.FAULT
    assert "undecodable" in result.detail
    record = m.rejections()
    assert (record.faults, record.quota, record.last_index) == (1, 0, 5)
    assert set(state_of(m)) == {REJECTIONS_KEY}


def _exploding_register(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make registering write its datums and then raise: a half-applied command."""
    original = NamingState._register

    def register_then_fail(self: NamingState, *args: object, **kwargs: object) -> object:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        raise TypeError("Integer exceeds 64-bit range")

    monkeypatch.setattr(NamingState, "_register", register_then_fail)


def test_an_apply_that_raises_midway_changes_nothing_on_any_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = Instance(service=ORDERS, ip="10.0.0.1", port=80, ephemeral=False)
    good = encode_command(RegisterInstance(instance=instance, stamped_at_ms=T0))
    replicas = [machine(), machine()]
    for m in replicas:
        assert isinstance(m.apply(entry(1, good)), Applied)
        m.drain_changes()
    before = state_of(replicas[0])
    _exploding_register(monkeypatch)
    other = Instance(service=ORDERS, ip="10.0.0.2", port=80, ephemeral=False)
    bad = encode_command(RegisterInstance(instance=other, stamped_at_ms=T0 + 1))
    results = [m.apply(entry(2, bad)) for m in replicas]
    for result in results:
        assert isinstance(result, EntryRejected)
        assert result.kind is RejectionKind.FAULT
        assert "TypeError: Integer exceeds 64-bit range" in result.detail
    states = [state_of(m) for m in replicas]
    assert states[0] == states[1]  # deterministic: no replica diverges
    assert {k: v for k, v in states[0].items() if k != REJECTIONS_KEY} == before
    assert replicas[0].naming.instances(ORDERS) == (instance,)  # the decoded cache too
    assert replicas[0].rejections().faults == 1
    # the next entry applies as usual
    monkeypatch.undo()
    assert isinstance(replicas[0].apply(entry(3, bad)), Applied)
    assert len(replicas[0].naming.instances(ORDERS)) == 2


def test_the_rejection_record_is_readable_after_a_restart() -> None:
    m = machine()
    m.apply(entry(3, b"nonsense"))
    restarted = DatumTable(dict(m.datums.items()))
    again = NodeStateMachine(restarted, NamingState(restarted))
    view = again.view()["rejectedEntries"]
    assert view == {
        "total": 1,
        "fault": 1,
        "quota": 0,
        "lastIndex": 3,
        "lastReason": "fault",
        "lastDetail": view["lastDetail"],
    }
    assert "undecodable" in str(view["lastDetail"])


def test_a_damaged_rejection_record_reads_as_zero_and_is_rewritten() -> None:
    m = machine()
    m.datums.put(REJECTIONS_KEY, b"[not a record", 1)
    assert m.rejections().total == 0
    m.apply(entry(2, b"nonsense"))
    assert orjson.loads(m.datums.get(REJECTIONS_KEY).value)["fault"] == 1  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- quota


def test_a_write_past_the_quota_is_rejected_whole_and_deletes_always_apply() -> None:
    m = machine(quota_bytes=3_000)
    index = 0
    results = []
    for i in range(10):
        index += 1
        results.append(m.apply(entry(index, put(f"k{i}", "x" * 500))))
    applied = [r for r in results if isinstance(r, KvPut)]
    refused = [r for r in results if isinstance(r, EntryRejected)]
    assert len(applied) == 5  # 5 x (key + 500) bytes fit in 3,000; the sixth does not
    assert all(r.kind is RejectionKind.QUOTA for r in refused)
    assert "quota of 3000 bytes" in refused[0].detail
    assert {k for k in state_of(m) if k not in (REJECTIONS_KEY, QUOTA_KEY)} == {
        f"naraft.kv.k{i}" for i in range(5)
    }
    assert m.datums.size_bytes <= 3_000
    assert m.rejections().quota == 5
    assert not m.quota_alarm()  # 2,7xx of 3,000 bytes: a smaller write still fits
    index += 1
    room = 3_000 - m.datums.size_bytes - len("naraft.kv.fill") - 10
    assert isinstance(m.apply(entry(index, put("fill", "f" * room))), KvPut)
    assert m.quota_alarm()  # within 30 bytes (1 %) of the quota: writes stop before the log
    assert m.quota_refusal() is not None
    assert "--quota-bytes" in str(m.quota_refusal())
    # a delete frees space: always applied, and the alarm clears by itself
    index += 1
    deleted = m.apply(entry(index, encode_kv(DeleteKey(key="k0"))))
    assert isinstance(deleted, KvDeleted)
    assert deleted.deleted
    assert not m.quota_alarm()
    index += 1
    assert isinstance(m.apply(entry(index, put("again", "y" * 400))), KvPut)


def test_a_naming_write_past_the_quota_is_rejected_and_a_deregister_applies() -> None:
    instance = Instance(service=ORDERS, ip="10.0.0.1", port=80, ephemeral=False)
    m = machine(quota_bytes=10_000)
    first = m.apply(entry(1, encode_command(RegisterInstance(instance=instance, stamped_at_ms=T0))))
    assert isinstance(first, Applied)
    big = Instance(
        service=ORDERS, ip="10.0.0.2", port=80, ephemeral=False, metadata={"m": "z" * 10_000}
    )
    before = state_of(m)
    refused = m.apply(entry(2, encode_command(RegisterInstance(instance=big, stamped_at_ms=T0))))
    assert isinstance(refused, EntryRejected)
    assert refused.kind is RejectionKind.QUOTA
    assert {k: v for k, v in state_of(m).items() if k != REJECTIONS_KEY} == before
    gone = m.apply(entry(3, encode_command(DeregisterInstance(key=instance.key, stamped_at_ms=T0))))
    assert isinstance(gone, Applied)
    assert m.naming.instances(ORDERS) == ()


def test_a_release_applies_at_the_quota_and_the_owner_counts_in_the_size() -> None:
    owned = Instance(service=ORDERS, ip="10.0.0.1", port=80, owner="conn-a")
    m = machine(quota_bytes=10_000)
    m.apply(entry(1, encode_command(RegisterInstance(instance=owned, stamped_at_ms=T0))))
    assert b"conn-a" in b"".join(d.value for d in state_of(m).values())
    big = Instance(service=ORDERS, ip="10.0.0.2", port=80, metadata={"m": "z" * 10_000})
    refused = m.apply(entry(2, encode_command(RegisterInstance(instance=big, stamped_at_ms=T0))))
    assert isinstance(refused, EntryRejected)
    release = ReleaseOwner(owner="conn-a", keys=(owned.key,), stamped_at_ms=T0)
    assert isinstance(m.apply(entry(3, encode_command(release))), Applied)
    assert m.naming.instances(ORDERS) == ()


def test_the_alarm_margin_is_one_percent_at_most_one_mebibyte() -> None:
    assert alarm_margin(64 * 1024) == 655
    assert alarm_margin(2 << 30) == 1 << 20
    m = machine(quota_bytes=10_000)
    below = 10_000 - 101 - m.datums.size_bytes - len("naraft.kv.k")
    m.apply(entry(1, put("k", "x" * below)))
    assert m.datums.size_bytes == 9_899
    assert not m.quota_alarm()  # 101 bytes short of the quota: the margin is 100
    m.apply(entry(2, put("k", "x" * (below + 1))))
    assert m.quota_alarm()
    m.apply(entry(3, encode_kv(DeleteKey(key="k"))))
    assert not m.quota_alarm()


def test_no_quota_means_no_alarm() -> None:
    m = machine(quota_bytes=0)
    m.apply(entry(1, put("k", "x" * 100_000)))
    assert m.quota_bytes is None
    assert not m.quota_alarm()
    assert m.quota_refusal() is None


def test_the_quota_is_the_replicated_one_whatever_each_replica_was_configured_with() -> None:
    small, large = machine(quota_bytes=2_000), machine(quota_bytes=1 << 30)
    for m in (small, large):  # the leader (configured with 2,000) replicated its quota
        m.apply(entry(1, encode_set_quota(2_000)))
    assert large.quota_proposal() is not None  # it would propose its own once it leads
    results = [m.apply(entry(2, put("k", "x" * 3_000))) for m in (small, large)]
    assert all(isinstance(r, EntryRejected) for r in results)
    assert state_of(small) == state_of(large)
    # the next leader replicates its own quota (0: none), and both apply the same again
    for m in (small, large):
        m.apply(entry(3, encode_set_quota(0)))
        assert m.quota_bytes is None
        assert isinstance(m.apply(entry(4, put("k", "x" * 3_000))), KvPut)
    assert state_of(small) == state_of(large)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"meta.quota","bytes":-1}',
        b'{"op":"meta.nope"}',
        b'{"op":"meta.',
        b'{"op":"meta.quota","bytes":1e3}',
    ],
)
def test_a_bad_quota_command_is_a_fault_and_changes_no_quota(payload: bytes) -> None:
    m = machine(quota_bytes=5_000)
    result = m.apply(entry(1, payload))
    assert isinstance(result, EntryRejected)
    assert result.kind is RejectionKind.FAULT
    assert m.quota_bytes == 5_000


def test_setting_the_quota_is_never_refused_by_the_quota() -> None:
    m = machine(quota_bytes=100)
    m.datums.put("naraft.kv.big", b"x" * 500, 1)
    assert m.apply(entry(2, encode_set_quota(90))) == 90
    assert m.quota_bytes == 90


# ------------------------------------------------------------------ cluster version


def test_the_cluster_version_starts_at_one_and_is_only_ever_raised() -> None:
    m = machine(quota_bytes=100)
    assert m.cluster_version == 1
    assert m.apply(entry(1, encode_raise_cluster_version(3))) == 3
    assert m.cluster_version == 3
    # a later, lower record (a leader of an older build cannot send one, but a stale
    # proposal could commit) changes nothing
    assert m.apply(entry(2, encode_raise_cluster_version(2))) == 3
    assert m.cluster_version == 3
    m.datums.put("naraft.kv.big", b"x" * 500, 3)  # past the quota: the record still applies
    assert m.apply(entry(4, encode_raise_cluster_version(4))) == 4


@pytest.mark.parametrize(
    "payload",
    [
        b'{"op":"meta.cluster_version","version":0}',
        b'{"op":"meta.cluster_version","version":"3"}',
        b'{"op":"meta.cluster_version","version":1000001}',
        b'{"op":"meta.cluster_version"}',
    ],
)
def test_a_bad_cluster_version_record_is_a_fault_and_changes_nothing(payload: bytes) -> None:
    m = machine()
    m.apply(entry(1, encode_raise_cluster_version(3)))
    result = m.apply(entry(2, payload))
    assert isinstance(result, EntryRejected)
    assert result.kind is RejectionKind.FAULT
    assert m.cluster_version == 3
    assert raised_version(payload) is None


def test_a_log_entry_says_which_version_it_raises_to() -> None:
    assert raised_version(encode_raise_cluster_version(7)) == 7
    assert raised_version(encode_set_quota(7)) is None
    assert raised_version(put("k", "v")) is None


def test_a_digest_install_recomputes_the_size_the_quota_is_checked_against() -> None:
    m = machine()
    quota = Datum(b'{"bytes":1000}', 6)  # the leader's state carries the cluster's quota
    m.datums.replace_all({QUOTA_KEY: quota, "naraft.kv.big": Datum(b"x" * 2_000, 7)})
    assert m.datums.size_bytes == 2_013 + len(QUOTA_KEY) + len(quota.value)
    assert m.quota_bytes == 1_000
    assert m.quota_alarm()
    refused = m.apply(entry(8, put("more", "y")))
    assert isinstance(refused, EntryRejected)
    assert refused.kind is RejectionKind.QUOTA
    assert isinstance(m.apply(entry(9, encode_kv(DeleteKey(key="big")))), KvDeleted)
    assert not m.quota_alarm()


def test_subscribers_hear_of_applied_entries_only_never_of_rolled_back_ones() -> None:
    datums = DatumTable()
    feed = ChangeFeed()
    heard: list[ServiceKey] = []
    feed.subscribe_all(heard.append)
    m = NodeStateMachine(datums, NamingState(datums, feed), quota_bytes=2_000)
    m.apply(entry(0, m.quota_proposal() or b""))
    small = Instance(service=ORDERS, ip="10.0.0.1", port=80, ephemeral=False)
    big = Instance(service=ORDERS, ip="10.0.0.2", port=80, metadata={"m": "z" * 3_000})
    assert isinstance(m.apply(entry(1, encode_command(register_of(small)))), Applied)
    assert heard == [ORDERS]
    refused = m.apply(entry(2, encode_command(register_of(big))))
    assert isinstance(refused, EntryRejected)
    assert heard == [ORDERS]  # the rolled-back registration was never announced


def register_of(instance: Instance) -> RegisterInstance:
    return RegisterInstance(instance=instance, stamped_at_ms=T0)
