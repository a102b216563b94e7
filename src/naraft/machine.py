"""The replicated state machine of a node: committed entries -> datums.

It dispatches each entry to the key/value applier, the config domain's or the naming
domain's, by the op its payload names. Deterministic: no clock, no randomness; times arrive
in commands, stamped by the leader. An empty payload is the leader's no-op.

Apply is total. An entry either takes effect as a whole or changes nothing but the
rejection record (`naraft.state.rejections`): one that does not decode, whose apply raises
(a bug, or an entry an older build wrote), or that would push the state past the quota is
rolled back on the table's undo journal and answered with `EntryRejected`, identically on
every replica. Nothing an entry holds can stop the node.

The quota bounds the state's size as `DatumTable.size_bytes` counts it. It is checked here,
at apply, against the quota held in the replicated state (`QUOTA_KEY`), so every replica
decides the same whatever its own configuration: an entry that grows the state past it is
rejected; one that shrinks it (a delete) always applies. A leader whose `--quota-bytes`
differs from the replicated one proposes its own (`quota_proposal`), so the cluster's quota
is the current leader's. Within `alarm_margin` of the quota the alarm is up: writes are
refused before they are proposed, reads and deletes go on, and it clears by itself once
deletes free the space.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

import orjson

from naraft.auth.state import AUTH_PREFIX, AuthCommandError, apply_auth, is_auth_command
from naraft.configs.commands import (
    ConfigCommandError,
    decode_config_command,
    is_config_command,
)
from naraft.configs.state import ConfigState
from naraft.naming.codec import decode_command
from naraft.naming.errors import CommandDecodeError
from naraft.naming.state import NamingState
from naraft.raft import Entry
from naraft.raft.membership import Membership, decode_membership, is_membership_command
from naraft.state.datums import Datum, DatumChanges, DatumTable
from naraft.state.kv import KvCommandError, apply_kv, decode_kv, is_kv_command
from naraft.state.rejections import (
    EntryRejected,
    RejectionKind,
    RejectionRecord,
    read_record,
    record_rejection,
)

logger = logging.getLogger(__name__)

MAX_ALARM_MARGIN_BYTES: Final = 1 << 20
QUOTA_KEY: Final = "naraft.meta.quota"  # {"bytes": N}; absent or 0: no quota
MEMBERSHIP_KEY: Final = "naraft.meta.membership"  # {"voters": [...], "learners": [...]}
META_MARKER: Final = b'{"op":"meta.'  # every encoded meta command starts with these bytes
OP_SET_QUOTA: Final = "meta.quota"
CLUSTER_VERSION_KEY: Final = "naraft.meta.cluster_version"  # {"version": N}; absent: 1
OP_RAISE_CLUSTER_VERSION: Final = "meta.cluster_version"
MAX_CLUSTER_VERSION: Final = 1_000_000  # the peer protocol's bound (`transport.version`)
MAX_QUOTA_BYTES: Final = 1 << 62


def encode_membership_record(membership: Membership) -> bytes:
    return orjson.dumps(
        {"voters": sorted(membership.voters), "learners": sorted(membership.learners)}
    )


class _Datums(Protocol):
    def get(self, key: str, /) -> Datum | None: ...


def membership_of(datums: _Datums) -> Membership | None:
    """The committed configuration the state records (None: the bootstrap one holds), read
    from a `DatumTable` or the stored datums."""
    datum = datums.get(MEMBERSHIP_KEY)
    if datum is None:
        return None
    try:
        record = orjson.loads(datum.value)
        return Membership.of(record["voters"], record.get("learners", ()))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def encode_set_quota(quota_bytes: int) -> bytes:
    """The command that makes `quota_bytes` the cluster's quota (0: none)."""
    return orjson.dumps({"op": OP_SET_QUOTA, "bytes": quota_bytes})


def encode_raise_cluster_version(version: int) -> bytes:
    """The command recording that every member speaks peer protocol `version`. Applying it
    never lowers the recorded version (`cluster_version`)."""
    return orjson.dumps({"op": OP_RAISE_CLUSTER_VERSION, "version": version})


def raised_version(payload: bytes) -> int | None:
    """The version `payload` raises the cluster's record to, if it is that command (and
    well formed); None for any other entry."""
    if not payload.startswith(META_MARKER):
        return None
    try:
        op, data = _decode_meta(payload)
        return _decode_cluster_version(data) if op == OP_RAISE_CLUSTER_VERSION else None
    except (ValueError, orjson.JSONDecodeError):
        return None


def _decode_meta(payload: bytes) -> tuple[str, Any]:
    """The op and the decoded object of a meta command; ValueError for anything else."""
    data: Any = orjson.loads(payload)
    op = data.get("op") if isinstance(data, dict) else None
    if op not in (OP_SET_QUOTA, OP_RAISE_CLUSTER_VERSION):
        raise ValueError(f"unknown meta command {str(data)[:80]}")
    return op, data


def _decode_cluster_version(data: Any) -> int:
    version = data.get("version")
    if type(version) is not int or not 1 <= version <= MAX_CLUSTER_VERSION:
        raise ValueError(f"cluster version must be an integer in 1..{MAX_CLUSTER_VERSION}")
    return version


def cluster_version_of(datums: _Datums) -> int:
    """The peer protocol version the replicated state records every member speaking (1:
    none recorded), read from a `DatumTable` or the stored datums."""
    datum = datums.get(CLUSTER_VERSION_KEY)
    if datum is None:
        return 1
    try:
        return _decode_cluster_version(orjson.loads(datum.value))
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return 1


def _decode_set_quota(data: Any) -> int:
    quota = data.get("bytes")
    if type(quota) is not int or not 0 <= quota <= MAX_QUOTA_BYTES:
        raise ValueError(f"quota must be an integer in 0..{MAX_QUOTA_BYTES}")
    return quota


def _quota_of(datum: Datum | None) -> int | None:
    if datum is None:
        return None
    try:
        data: Any = orjson.loads(datum.value)
    except orjson.JSONDecodeError:
        return None
    quota = data.get("bytes") if isinstance(data, dict) else None
    return quota if type(quota) is int and 0 < quota <= MAX_QUOTA_BYTES else None


def alarm_margin(quota_bytes: int) -> int:
    """How far below the quota the alarm goes up: 1 % of it, at most 1 MiB."""
    return min(quota_bytes // 100, MAX_ALARM_MARGIN_BYTES)


class NodeStateMachine:
    """Applies entries to one DatumTable shared by the kv view, the naming state and the
    config state."""

    def __init__(
        self,
        datums: DatumTable,
        naming: NamingState,
        *,
        quota_bytes: int | None = None,
        configs: ConfigState | None = None,
    ) -> None:
        self._datums = datums
        datums.index_prefix(AUTH_PREFIX)  # users, roles and grants are listed by prefix
        self._naming = naming
        self._configs = configs if configs is not None else ConfigState(datums)
        self._configured_quota = quota_bytes or 0  # what this node proposes as the leader
        self._auth_generation = 0  # bumped by every applied auth entry (caches compare it)

    @property
    def datums(self) -> DatumTable:
        return self._datums

    @property
    def naming(self) -> NamingState:
        return self._naming

    def membership(self) -> Membership | None:
        return membership_of(self._datums)

    @property
    def auth_generation(self) -> int:
        """Changes whenever an auth entry applies: users, roles, permissions or the key."""
        return self._auth_generation

    def note_installed(self) -> None:
        """A digest install or repair replaced datums without entries: auth may differ."""
        self._auth_generation += 1

    @property
    def configs(self) -> ConfigState:
        return self._configs

    @property
    def quota_bytes(self) -> int | None:
        """The cluster's quota, as the replicated state holds it (None: none)."""
        return _quota_of(self._datums.get(QUOTA_KEY))

    @property
    def cluster_version(self) -> int:
        """The peer protocol version every member spoke when the cluster recorded it (1:
        none recorded). Commands that version brought may be proposed; a peer that does
        not speak it is refused (`naraft.upgrade`)."""
        return cluster_version_of(self._datums)

    def quota_proposal(self) -> bytes | None:
        """The command making this node's configured quota the cluster's, if they differ
        (the leader proposes it)."""
        if (self.quota_bytes or 0) == self._configured_quota:
            return None
        return encode_set_quota(self._configured_quota)

    def apply(self, entry: Entry) -> object:
        """Apply `entry`; never raises (see the module docstring)."""
        payload = entry.command
        if not payload:
            return None
        datums = self._datums
        size_before = datums.size_bytes
        quota = self.quota_bytes
        datums.begin()
        try:
            result = self._dispatch(payload, entry.index)
        except Exception as error:  # total: whatever it was, this entry changes nothing
            datums.rollback()
            logger.debug("entry %d: apply failed", entry.index, exc_info=True)
            return self._reject(entry.index, RejectionKind.FAULT, _describe(error))
        size = datums.size_bytes
        grows = (
            size > size_before
            and not payload.startswith(META_MARKER)
            and not is_membership_command(payload)
        )
        if quota is not None and grows and size > quota:
            datums.rollback()
            detail = f"the state would grow to {size} bytes, past the quota of {quota} bytes"
            return self._reject(entry.index, RejectionKind.QUOTA, detail)
        datums.commit()
        self._naming.publish_applied(result)  # only now: a rolled-back entry changed nothing
        return result

    def _dispatch(self, payload: bytes, index: int) -> object:
        if is_membership_command(payload):
            # the core used it from its append; the state keeps the committed one, so that
            # a snapshot, a digest sync and a restart carry the configuration with the data
            membership = decode_membership(payload)
            if membership is None:
                raise ValueError("undecodable membership entry")
            self._datums.put(MEMBERSHIP_KEY, encode_membership_record(membership), index)
            return membership
        if is_kv_command(payload):
            return apply_kv(self._datums, decode_kv(payload), index)
        if is_auth_command(payload):
            self._auth_generation += 1
            return apply_auth(self._datums, payload, index)
        if payload.startswith(META_MARKER):
            op, data = _decode_meta(payload)
            if op == OP_RAISE_CLUSTER_VERSION:
                version = max(_decode_cluster_version(data), self.cluster_version)
                self._datums.put(CLUSTER_VERSION_KEY, orjson.dumps({"version": version}), index)
                return version
            quota = _decode_set_quota(data)
            if quota:
                self._datums.put(QUOTA_KEY, orjson.dumps({"bytes": quota}), index)
            else:
                self._datums.delete(QUOTA_KEY)
            return quota
        if is_config_command(payload):
            return self._configs.apply(decode_config_command(payload), index)
        return self._naming.apply(decode_command(payload), index, publish=False)

    def _reject(self, index: int, kind: RejectionKind, detail: str) -> EntryRejected:
        rejected = EntryRejected(index=index, kind=kind, detail=detail)
        if kind is RejectionKind.FAULT:
            logger.error("entry %d rejected on apply, nothing changed: %s", index, detail)
        else:
            logger.warning("entry %d rejected on apply: %s", index, detail)
        try:
            record_rejection(self._datums, rejected)
        except Exception as error:  # the record is best effort; the entry is rejected anyway
            logger.error("entry %d: cannot record its rejection: %s", index, _describe(error))
        return rejected

    def drain_changes(self) -> DatumChanges:
        return self._datums.drain_changes()

    # ---------------------------------------------------------- quota and record

    def size_bytes(self) -> int:
        return self._datums.size_bytes

    def rejections(self) -> RejectionRecord:
        return read_record(self._datums)

    def quota_alarm(self) -> bool:
        """True while the state is over the quota or within its margin of it."""
        quota = self.quota_bytes
        if quota is None:
            return False
        return self._datums.size_bytes >= quota - alarm_margin(quota)

    def quota_refusal(self) -> str | None:
        """Why a write is refused before it is proposed (the alarm is up), or None."""
        if not self.quota_alarm():
            return None
        return (
            f"state quota exceeded: the replicated state holds {self._datums.size_bytes} "
            f"bytes of a {self.quota_bytes}-byte quota (--quota-bytes); only deletes and "
            "reads are served until space is freed"
        )

    def view(self) -> dict[str, object]:
        """The `/raft/state` fields of the state's size, quota, rejected entries and the
        peer protocol version the cluster records."""
        return {
            "clusterVersion": self.cluster_version,
            "stateBytes": self._datums.size_bytes,
            "quotaBytes": self.quota_bytes,
            "quotaAlarm": self.quota_alarm(),
            "rejectedEntries": self.rejections().view(),
        }


def _describe(error: Exception) -> str:
    try:
        text = str(error)[:500]
    except Exception:  # an exception whose message itself fails
        text = "(no message)"
    if isinstance(
        error, CommandDecodeError | KvCommandError | AuthCommandError | ConfigCommandError
    ):
        return f"undecodable command: {text}"
    return f"{type(error).__name__}: {text}"
