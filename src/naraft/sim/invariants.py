"""The Raft paper's safety properties, checked incrementally after every event.

- Election safety: at most one leader per term, over the whole run.
- Leader append-only: a leader never overwrites or deletes its own entries.
- Log matching: entries with the same index and term carry the same command and follow
  the same previous term (by induction, identical prefixes), checked on every durable write.
- Leader completeness: a new leader holds the highest entry ever committed.
- State-machine safety: no two nodes apply different entries at one index; each node
  applies indexes in order without gaps.
- Durability: an acknowledged write is in the durable log of a majority when acknowledged.
- Commit monotonicity: a node's commit index never decreases while it runs.
- Convergence (after faults heal): one leader, identical applied state everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from naraft.raft import Entry, Index, NodeId, RaftCore, Ready, Role, SnapshotMeta, Term


class SafetyViolationError(AssertionError):
    """A Raft safety property does not hold; the message says which and where."""


class SafetyMonitor:
    """Accumulates what every node did and raises SafetyViolationError at the first breach."""

    def __init__(self, ids: tuple[NodeId, ...]) -> None:
        self._ids = ids
        self._leader_by_term: dict[Term, NodeId] = {}
        self._seen_leader: set[tuple[NodeId, Term]] = set()
        self._entry_at: dict[tuple[int, int], tuple[bytes, int]] = {}  # (i, t) -> (cmd, prev t)
        self._durable: dict[NodeId, list[int]] = {n: [0] for n in ids}  # [i] = term at i
        self._durable_floor: dict[NodeId, int] = dict.fromkeys(ids, 0)  # snapshot boundary
        self._applied_at: dict[int, tuple[int, bytes]] = {}  # index -> (term, command)
        self._last_applied: dict[NodeId, int] = dict.fromkeys(ids, 0)
        self._commit: dict[NodeId, int] = dict.fromkeys(ids, 0)
        self._highest_commit = (0, 0)  # (index, term) of the highest committed entry seen

    # ------------------------------------------------------------------ lifecycle

    def on_boot(self, node: NodeId, core: RaftCore) -> None:
        self._commit[node] = core.commit_index
        self._last_applied[node] = core.applied_index

    def on_crash(self, node: NodeId) -> None:
        self._commit[node] = 0

    def on_wipe(self, node: NodeId) -> None:
        """`node` left the cluster and comes back with an empty data directory."""
        self._durable[node] = [0]
        self._durable_floor[node] = 0
        self._last_applied[node] = 0
        self._commit[node] = 0

    # ------------------------------------------------------------------ writes

    def after_persist(self, node: NodeId, ready: Ready, *, is_leader: bool) -> None:
        """`ready`'s entries are durable on `node` (the caller skips a Ready without any)."""
        if not ready.entries:
            return
        log = self._durable[node]
        first = ready.entries[0].index
        if is_leader and first < len(log):
            raise SafetyViolationError(f"leader append-only: {node} rewrote its log from {first}")
        del log[max(first, self._durable_floor[node] + 1) :]
        for entry in ready.entries:
            if entry.index != len(log):
                raise SafetyViolationError(
                    f"{node} persisted entry {entry.index} after a gap (log ends {len(log) - 1})"
                )
            prev_term = log[entry.index - 1] if entry.index - 1 >= self._durable_floor[node] else -1
            self._check_log_matching(node, entry, prev_term)
            log.append(entry.term)

    def _check_log_matching(self, node: NodeId, entry: Entry, prev_term: int) -> None:
        key = (entry.index, entry.term)
        known = self._entry_at.get(key)
        if known is None:
            self._entry_at[key] = (entry.command, prev_term)
            return
        command, known_prev = known
        if command != entry.command or (
            prev_term >= 0 and known_prev >= 0 and prev_term != known_prev
        ):
            raise SafetyViolationError(
                f"log matching: {node} holds a different entry at {entry.index}/{entry.term}"
            )

    def on_snapshot_installed(self, node: NodeId, snapshot: SnapshotMeta) -> None:
        """A digest sync replaced `node`'s log with the leader's state at `snapshot`."""
        self._durable[node] = [0] * (snapshot.index + 1)
        self._durable[node][snapshot.index] = snapshot.term
        self._durable_floor[node] = snapshot.index
        self._last_applied[node] = snapshot.index

    # ------------------------------------------------------------------ leadership

    def on_leader(self, node: NodeId, core: RaftCore) -> None:
        term = core.term
        if (node, term) in self._seen_leader:
            return
        self._seen_leader.add((node, term))
        other = self._leader_by_term.setdefault(term, node)
        if other != node:
            raise SafetyViolationError(f"election safety: {other} and {node} both lead term {term}")
        index, commit_term = self._highest_commit
        if index == 0 or core.snapshot.index >= index:
            return
        if core.term_at(Index(index)) != commit_term:
            raise SafetyViolationError(
                f"leader completeness: {node} leads term {term} without committed entry "
                f"{index}/{commit_term}"
            )

    # ------------------------------------------------------------------ commit and apply

    def after_advance(self, node: NodeId, core: RaftCore) -> None:
        commit = core.commit_index
        if commit < self._commit[node]:
            raise SafetyViolationError(
                f"commit regression: {node} went from {self._commit[node]} to {commit}"
            )
        self._commit[node] = commit
        if commit > self._highest_commit[0]:
            log = self._durable[node]
            if commit < len(log):
                self._highest_commit = (commit, log[commit])

    def on_apply(self, node: NodeId, entry: Entry) -> None:
        expected = self._last_applied[node] + 1
        if entry.index != expected:
            raise SafetyViolationError(f"{node} applied {entry.index}, expected {expected}")
        self._last_applied[node] = entry.index
        known = self._applied_at.setdefault(entry.index, (entry.term, entry.command))
        if known != (entry.term, entry.command):
            raise SafetyViolationError(
                f"state-machine safety: {node} applied {entry.index}/{entry.term}, "
                f"another node applied {entry.index}/{known[0]}"
            )
        if entry.index > self._highest_commit[0]:
            self._highest_commit = (entry.index, entry.term)

    def on_ack(self, entry: Entry, voters: frozenset[NodeId]) -> None:
        """`voters`: the acknowledging leader's configuration, the one it counted the
        commit in (it cannot change between the commit and the apply of one Ready)."""
        holders = sum(
            1
            for node in voters
            if entry.index <= self._durable_floor[node]
            or (
                entry.index < len(self._durable[node])
                and self._durable[node][entry.index] == entry.term
            )
        )
        if holders < len(voters) // 2 + 1:
            raise SafetyViolationError(
                f"durability: write {entry.index}/{entry.term} acknowledged while durable on "
                f"{holders} node(s) only"
            )

    # ------------------------------------------------------------------ the end

    def check_converged(
        self,
        views: Mapping[NodeId, tuple[RaftCore, dict[str, str]]],
        members: frozenset[NodeId] | None = None,
    ) -> None:
        """After healing: a leader, and every member applied the same state (`members`:
        the leader's configuration; None: every node)."""
        expected = set(self._ids) if members is None else set(members)
        views = {n: v for n, v in views.items() if n in expected}
        if len(views) != len(expected):
            raise SafetyViolationError(f"convergence: only {sorted(views)} are up")
        leaders = [n for n, (core, _) in views.items() if core.role is Role.LEADER]
        if len(leaders) != 1:
            raise SafetyViolationError(f"convergence: leaders after healing: {leaders}")
        leader_core, leader_kv = views[leaders[0]]
        for node, (core, kv) in views.items():
            if core.applied_index != leader_core.commit_index:
                raise SafetyViolationError(
                    f"convergence: {node} applied {core.applied_index}, "
                    f"leader committed {leader_core.commit_index}"
                )
            if kv != leader_kv:
                raise SafetyViolationError(f"convergence: {node}'s state differs from the leader's")
