"""The batch of work the core hands to its shell, and what the shell reports back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from naraft.raft.messages import Envelope
from naraft.raft.types import Entry, HardState, Index, NodeId, Role, SnapshotMeta, Term


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleChange:
    role: Role
    term: Term
    leader: NodeId | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadState:
    """The read `request_id` is linearizable once the state machine has applied `index`."""

    request_id: int
    index: Index


class Ready(NamedTuple):
    """Work for the shell, to be done in field order, then acknowledged with `advance`.

    1. Persist `entries` and `hard_state` (if set). An entry at index i replaces every
       stored entry at index >= i. When `must_sync` is true (new entries, or a new term or
       vote) the write must be durable before step 2. When it is false the Ready only
       moves the commit index: a crash that loses it is harmless (the commit index is
       re-learned from the leader), so the shell may defer writing it, provided it never
       stores an applied index past the commit index it stored.
    2. Send `messages`: only after step 1's durable part is durable, unless
       `messages_first` is true: then they may leave before step 1, or while it runs.
       The core sets it on a leader's Ready that changes neither term nor vote: its
       messages are replication (appends, beats, snapshots, hand-over), which followers
       may hold before the leader's own copy is durable (Raft thesis §10.2.1), because
       the leader counts its own entries towards a commit only once `advance` has
       reported them durable. The shell still finishes step 1 before step 3.
    3. Apply `committed` to the state machine, in order; answer `read_states` whose
       index is applied.
    4. Call `RaftCore.advance(ready)`.

    `snapshot_to_fetch` asks the shell to catch up by digest sync from `leader` up to
    that snapshot; it reports completion with `RaftCore.restore_snapshot`.

    A NamedTuple rather than a frozen dataclass: just as immutable, and several times
    cheaper to build on Python 3.11 (one per Ready, on every node's hottest path). Mind the
    field order when building one positionally, as the core does.
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Envelope, ...]
    committed: tuple[Entry, ...]
    role_change: RoleChange | None
    read_states: tuple[ReadState, ...] = ()
    snapshot_to_fetch: SnapshotMeta | None = None
    dropped_reads: tuple[int, ...] = ()
    must_sync: bool = False
    messages_first: bool = False
