"""The batch of work the core hands to its shell, and what the shell reports back."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """Work for the shell, to be done in field order, then acknowledged with `advance`.

    1. Persist `hard_state` (if set) and `entries` in one durable write. An entry at
       index i replaces every stored entry at index >= i.
    2. Send `messages`: only after step 1 is durable.
    3. Apply `committed` to the state machine, in order; answer `read_states` whose
       index is applied.
    4. Call `RaftCore.advance(ready)`.

    `snapshot_to_fetch` asks the shell to catch up by digest sync from `leader` up to
    that snapshot; it reports completion with `RaftCore.restore_snapshot`.
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Envelope, ...]
    committed: tuple[Entry, ...]
    role_change: RoleChange | None
    read_states: tuple[ReadState, ...] = ()
    snapshot_to_fetch: SnapshotMeta | None = None
    dropped_reads: tuple[int, ...] = ()
