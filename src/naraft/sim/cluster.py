"""SimCluster: Raft cores, their stores and a faulty network, one event at a time.

Everything random comes from one `random.Random(seed)`: the same seed gives the same
history, event for event. Each node is the production pair: a `RaftCore` and the shell's
`ReadyHandler` (`naraft.replica.handler`) over the real `NodeStateMachine` (kv and naming),
writing to a `MemoryStore`. The cluster carries out the handler's decisions as `Replica`
does (write, send, apply, advance, the idle flush), so the shell's durability rules (the
deferred commit index, "stored applied never passes stored commit") are under every seed; a
crash loses exactly what the node had not made durable, and a restart rebuilds the node
from its store only.

Faults: message loss, delay (which reorders), duplication, partitions, crashes (including
a crash between persisting a Ready and sending its messages, and a leader's crash after
its appends left but before its own write) and restarts. Clients write
unique values and read through read index; every operation is recorded in a history
that the linearizability checker reads, and safety invariants are checked after every
event (see `invariants.py`).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from naraft.machine import NodeStateMachine, membership_of
from naraft.naming.state import NamingState
from naraft.raft import (
    Entry,
    Envelope,
    Index,
    InvariantError,
    NodeId,
    NotLeaderError,
    RaftConfig,
    RaftCore,
    Ready,
    Role,
    SnapshotMeta,
    Term,
    VoteReply,
)
from naraft.raft.membership import ChangeKind, MembershipChange, MembershipError
from naraft.replica.handler import ReadyHandler
from naraft.sim.invariants import SafetyMonitor, SafetyViolationError
from naraft.state.datums import DatumTable
from naraft.state.kv import KvPut, PutValue, encode_kv, read_value
from naraft.storage.base import WriteBatch
from naraft.storage.memory import MemoryStore

logger = logging.getLogger(__name__)

_SILENT = logging.getLogger("naraft.sim.core")
_SILENT.setLevel(logging.WARNING)
# The production shell flushes the deferred commit index after 1 s idle; a tick is 0.1 s there.
IDLE_FLUSH_TICKS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultProfile:
    """Rates per event or per message; delays are in ticks."""

    drop_rate: float = 0.02
    duplicate_rate: float = 0.01
    min_delay_ticks: float = 0.05
    max_delay_ticks: float = 0.6
    crash_rate: float = 0.002  # per tick of simulated time, for the whole cluster
    restart_after_ticks: tuple[int, int] = (5, 60)
    partition_rate: float = 0.002
    heal_after_ticks: tuple[int, int] = (10, 80)
    campaign_rate: float = 0.001  # a node campaigns at once (targeted event)
    leader_crash_rate: float = 0.0  # per tick: the current leader crashes (targeted event)
    crash_after_vote_rate: float = 0.0  # a node crashes right after sending a vote it granted
    quick_restart_ticks: tuple[float, float] = (0.5, 3.0)  # restart delay after such a crash
    client_rate: float = 0.5  # chance per tick that an idle client starts an operation
    keys: int = 3
    compact_every_entries: int = 0  # 0: never compact
    # followers whose leader crashed see its port refuse: each forgets it and campaigns
    # after the core's random delay (the shell's refusal check); off keeps old seeds' runs
    detect_refusal: bool = False
    transfer_rate: float = 0.0  # per tick: the leader hands over to a random peer
    refusal_spread_ticks: float = 0.0  # each follower sees the refusal up to this much later
    # per tick: the leader changes the membership by one step (add a spare as a learner,
    # promote a caught-up learner, or remove a voter); needs spare nodes to add
    membership_rate: float = 0.0
    max_entries_per_append: int = 8  # 1 splits every append: old-term entries travel alone


@dataclass(slots=True)
class _Node:
    id: NodeId
    store: MemoryStore
    core: RaftCore | None = None
    machine: NodeStateMachine | None = None
    handler: ReadyHandler | None = None
    applied: int = 0
    up: bool = True
    boots: int = 0  # each boot starts its own tick chain; older chains' ticks are ignored


@dataclass(slots=True)
class _Op:
    client: int
    kind: str  # "write" | "read"
    key: str
    value: str | None
    node: NodeId
    index: int = 0
    term: int = 0
    request_id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEvent:
    """One line of the history: `type` is invoke, ok, fail or info (docs/histories.md)."""

    process: int
    type: str
    f: str
    key: str
    value: str | None
    time: float


class SimCluster:
    """A seeded simulation of `size` nodes; see the module docstring."""

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        faults: FaultProfile | None = None,
        pre_vote: bool = True,
        check_quorum: bool = True,
        election_ticks: int = 10,
        clients: int = 3,
        trace: Callable[[str], None] | None = None,
        spares: int = 0,
    ) -> None:
        """`spares`: nodes beyond `size` that start outside the cluster, waiting to be
        added (`FaultProfile.membership_rate`)."""
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or FaultProfile()
        # read on every message and Ready (the profile is frozen)
        self._drop_rate = self.faults.drop_rate
        self._duplicate_rate = self.faults.duplicate_rate
        self._delay_range = (self.faults.min_delay_ticks, self.faults.max_delay_ticks)
        self._compact_every = self.faults.compact_every_entries
        self.ids: tuple[NodeId, ...] = tuple(NodeId(f"n{i + 1}") for i in range(size + spares))
        self.bootstrap = self.ids[:size]
        self._config_for = {
            node_id: RaftConfig(
                id=node_id,
                voters=self.bootstrap if node_id in self.bootstrap else (),
                joining=node_id not in self.bootstrap,
                election_ticks=election_ticks,
                heartbeat_ticks=1,
                pre_vote=pre_vote,
                check_quorum=check_quorum,
                max_entries_per_append=self.faults.max_entries_per_append,
                max_inflight_appends=4,
            )
            for node_id in self.ids
        }
        self.nodes: dict[NodeId, _Node] = {
            node_id: _Node(id=node_id, store=MemoryStore(name=node_id)) for node_id in self.ids
        }
        self.now = 0.0
        self.events = 0
        # (time, sequence, kind, payload): the payload's type follows from the kind (Any
        # spares a cast per event on the hottest loop)
        self._queue: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._blocked: set[tuple[NodeId, NodeId]] = set()
        self.monitor = SafetyMonitor(self.ids)
        self.history: list[HistoryEvent] = []
        self._clients: dict[int, _Op | None] = dict.fromkeys(range(clients))
        self._next_value = 0
        self._clients_done = False
        self._next_request = 0
        self._trace = trace
        self.crash_mid_ready_rate = 0.0  # chance to crash between a Ready's fsync and its sends
        self.acked_writes: list[tuple[str, str, int, int]] = []  # key, value, index, term
        self.retiring: set[NodeId] = set()  # removed, to be wiped and kept as spares
        self.membership_changes = 0  # proposed by leaders
        for node_id in self.ids:
            self._boot(node_id)
            self._schedule(self.rng.random(), "tick", (node_id, self.nodes[node_id].boots))
        self._schedule(1.0, "chaos", None)

    # ------------------------------------------------------------------ running

    def run(self, *, ticks: int, heal_and_settle: bool = True) -> None:
        """Run `ticks` of faulty time; then heal everything and let the cluster converge."""
        self.run_until(self.now + ticks, chaos=True)
        if heal_and_settle:
            self.settle()

    def settle(self) -> None:
        """Heal every fault, stop the clients, wait for convergence and check it."""
        self.crash_mid_ready_rate = 0.0
        self.heal_all()
        self.run_until(self.now + 20 * self._election_ticks(), chaos=False)
        self._clients_done = True  # no new operation; those in flight may still finish
        self.run_until(self.now + 5 * self._election_ticks(), chaos=False)
        self.finish_clients()
        leader = self.leader()
        core = self.nodes[leader].core if leader is not None else None
        members = core.membership.members if core is not None else None
        self.monitor.check_converged(self._live_views(), members)

    def run_until(self, end: float, *, chaos: bool) -> None:
        queue = self._queue
        pop = heapq.heappop
        while queue and queue[0][0] <= end:
            at, _, kind, payload = pop(queue)
            self.now = at
            self.events += 1
            # Most frequent first: a delivery, then a tick.
            if kind == "deliver":
                self._on_deliver(payload)
            elif kind == "tick":
                node_id, boot = payload
                self._on_tick(node_id, boot, chaos=chaos)
            elif kind == "chaos":
                if chaos:
                    self._chaos()
                self._schedule(1.0, "chaos", None)
            elif kind == "restart":
                self.restart(payload)
            elif kind == "forget":
                self.forget_dead_leader(payload)
            elif kind == "hurry":
                node_id, boot = payload
                self._on_hurry(node_id, boot)
            elif kind == "heal":
                if chaos:
                    self._blocked.clear()
                    self._log("heal")
            elif kind == "retire":
                self._retire(payload)
        self.now = end

    def _election_ticks(self) -> int:
        return self._config_for[self.ids[0]].election_ticks

    def _schedule(self, delay: float, kind: str, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, payload))

    def _log(self, line: str) -> None:
        if self._trace is not None:
            self._trace(f"{self.now:9.2f} {line}")

    # ------------------------------------------------------------------ nodes

    def _boot(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        stored = node.store.load()
        try:
            core = RaftCore(
                self._config_for[node_id],
                rng=random.Random(self.rng.getrandbits(64)),
                hard_state=stored.hard_state,
                log=stored.entries,
                snapshot=stored.snapshot,
                applied=stored.applied_index,
                membership=membership_of(stored.datums),
                logger=_SILENT,
            )
        except InvariantError as error:
            raise SafetyViolationError(
                f"{node_id} cannot restart from its store: {error}"
            ) from None
        datums = DatumTable(stored.datums)
        node.machine = NodeStateMachine(datums, NamingState(datums))
        applied_term = core.term_at(core.applied_index)
        node.handler = ReadyHandler(
            node.machine,
            applied_term=applied_term if applied_term is not None else core.snapshot.term,
            now=self.now,
            idle_flush_after=IDLE_FLUSH_TICKS,
        )
        node.core = core
        node.applied = core.applied_index
        node.up = True
        node.boots += 1
        self.monitor.on_boot(node_id, core)

    def crash(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if not node.up:
            return
        self._log(f"crash {node_id}")
        node.up = False
        node.core = None
        node.machine = node.handler = None
        node.store.crash()
        if self.faults.detect_refusal:
            for other in self.nodes.values():
                if other.up and other.core is not None and other.core.leader == node_id:
                    # The next message to the dead leader is refused: at the same instant
                    # for every follower (the case that split votes round after round),
                    # once what the leader sent before dying has arrived.
                    spread = self.faults.refusal_spread_ticks
                    later = self.rng.uniform(0.0, spread) if spread > 0 else 0.0
                    self._schedule(self.faults.max_delay_ticks + later, "forget", other.id)
        self.monitor.on_crash(node_id)
        for client, op in self._clients.items():
            if op is not None and op.node == node_id:
                self._finish(client, "info" if op.kind == "write" else "fail", op.value)

    def restart(self, node_id: NodeId) -> None:
        if self.nodes[node_id].up:
            return
        self._log(f"restart {node_id}")
        self._boot(node_id)
        self._schedule(self.rng.random(), "tick", (node_id, self.nodes[node_id].boots))

    def partition(self, side: Iterable[NodeId]) -> None:
        """Cut every link between `side` and the rest (both directions)."""
        left = set(side)
        right = set(self.ids) - left
        self._log(f"partition {sorted(left)} | {sorted(right)}")
        for a in left:
            for b in right:
                self._blocked.add((a, b))
                self._blocked.add((b, a))

    def campaign(self, node_id: NodeId) -> None:
        """Targeted: `node_id` starts an election now (skipping PreVote), if it is up."""
        node = self.nodes[node_id]
        if node.up and node.core is not None:
            self._log(f"campaign {node_id}")
            node.core.campaign()
            self._drive(node)

    def transfer(self, leader_id: NodeId, target: NodeId) -> None:
        """Targeted: the leader hands leadership over to `target` (up or not)."""
        node = self.nodes[leader_id]
        if node.up and node.core is not None and node.core.is_leader:
            self._log(f"transfer {leader_id} -> {target}")
            node.core.transfer_leadership(target)
            self._drive(node)

    def forget_dead_leader(self, node_id: NodeId) -> None:
        """Targeted: `node_id` saw its leader's port refuse a connection (the shell's
        refusal check). As the shell does, campaign after the delay the core draws."""
        node = self.nodes[node_id]
        if not node.up or node.core is None:
            return
        delay = node.core.forget_leader()
        self._drive(node)
        if delay is not None:
            self._log(f"{node_id} forgets its dead leader, campaigns in {delay:.3f} ticks")
            self._schedule(delay, "hurry", (node_id, node.boots))

    def _on_hurry(self, node_id: NodeId, boot: int) -> None:
        node = self.nodes[node_id]
        if not node.up or node.core is None or boot != node.boots:
            return
        node.core.hurry_election()
        self._drive(node)

    def heal_network(self) -> None:
        self._log("heal")
        self._blocked.clear()

    def heal_all(self) -> None:
        self._blocked.clear()
        for node_id in self.ids:
            self.restart(node_id)

    def _on_tick(self, node_id: NodeId, boot: int, *, chaos: bool) -> None:
        node = self.nodes[node_id]
        if not node.up or node.core is None or boot != node.boots:
            return  # down, or a tick of an earlier boot (a crash and restart within a tick)
        node.core.tick()
        self._drive(node)
        self._schedule(1.0, "tick", (node_id, boot))
        self._maybe_start_client_op(node_id)

    def _on_deliver(self, envelope: Envelope) -> None:
        node = self.nodes[envelope.recipient]
        if not node.up or node.core is None:
            return
        node.core.step(envelope)
        self._drive(node)

    def _drive(self, node: _Node) -> None:
        """The shell's loop, as `Replica` runs it: for every Ready the handler's write, the
        sends, the apply, the advance; then the idle flush."""
        core = node.core
        handler = node.handler
        assert core is not None
        assert handler is not None
        monitor = self.monitor
        rng = self.rng
        send = self._send
        while core.has_ready():
            ready = core.ready()
            crash = rng.random() < self.crash_mid_ready_rate
            if crash and ready.messages_first:
                # A leader's replication leaves while its own write runs (`Replica`): its
                # crash is taken in that window, leaving followers with entries it lost.
                for envelope in ready.messages:
                    send(envelope)
                self.crash(node.id)
                return
            batch = handler.batch_for(ready, core.applied_index)
            if batch is not None:
                self._write(node, batch)
            if ready.entries:
                monitor.after_persist(node.id, ready, is_leader=core.is_leader)
            if crash:
                # A crash after the fsync but before anything was sent or applied.
                self.crash(node.id)
                return
            voted = False
            for envelope in ready.messages:
                send(envelope)
                message = envelope.message
                if isinstance(message, VoteReply) and message.granted and not message.pre_vote:
                    voted = True
            if voted and rng.random() < self.faults.crash_after_vote_rate:
                # Targeted: forget everything not durable right after a vote left.
                self.crash(node.id)
                self._schedule(rng.uniform(*self.faults.quick_restart_ticks), "restart", node.id)
                return
            if (
                ready.committed
                or ready.read_states
                or ready.dropped_reads
                or ready.snapshot_to_fetch is not None
            ):
                self._apply(node, ready)
            core.advance(ready)
            monitor.after_advance(node.id, core)
            if self._compact_every > 0:
                self._maybe_compact(node)
        if handler.has_deferred():
            self._write(node, handler.idle_batch(core.applied_index, self.now))
        if core.is_leader:
            monitor.on_leader(node.id, core)

    def _write(self, node: _Node, batch: WriteBatch | None) -> None:
        if batch is None:
            return
        assert node.handler is not None
        node.store.write(batch)
        node.handler.written(batch, self.now)

    def _apply(self, node: _Node, ready: Ready) -> None:
        """Step 3 of a Ready: apply its committed entries, answer and fail its reads, and
        fetch the snapshot it asks for."""
        assert node.handler is not None
        if ready.committed:
            for entry in ready.committed:
                self.monitor.on_apply(node.id, entry)
            applied = node.handler.apply(ready)
            for item in applied.results:
                node.applied = item.entry.index
                self._resolve_writes(node, item.entry, item.result)
        for read in ready.read_states:
            self._resolve_read(node, read.request_id, read.index)
        for request_id in ready.dropped_reads:
            self._fail_read(request_id)
        if ready.snapshot_to_fetch is not None:
            self._fetch_snapshot(node, ready.snapshot_to_fetch)

    def _maybe_compact(self, node: _Node) -> None:
        every = self._compact_every
        core = node.core
        if every <= 0 or core is None:
            return
        keep = every // 2  # a tail so that briefly-lagging followers catch up from the log
        if core.applied_index - core.snapshot.index < every + keep:
            return
        through = Index(core.applied_index - keep)
        term = self._term_in(core, through)
        core.compact(through)
        assert node.handler is not None
        boundary = SnapshotMeta(index=through, term=term)
        self._write(node, node.handler.applied_batch(core.applied_index, boundary))

    @staticmethod
    def _term_in(core: RaftCore, index: Index) -> Term:
        term = core.term_at(index)
        if term is None:
            raise SafetyViolationError(f"{core.id} has no term for applied index {index}")
        return term

    def _fetch_snapshot(self, node: _Node, wanted: SnapshotMeta) -> None:
        """Digest sync, reduced to its effect: copy the leader's state at its snapshot."""
        core = node.core
        assert core is not None
        leader_id = core.leader
        leader = self.nodes[leader_id] if leader_id is not None else None
        if (
            leader is None
            or not leader.up
            or leader.core is None
            or (leader_id, node.id) in self._blocked
            or leader.core.snapshot != wanted
        ):
            core.snapshot_failed()
            return
        state = leader.store.load()
        if state.snapshot != wanted or state.applied_index <= core.commit_index:
            core.snapshot_failed()
            return
        # Digest sync copies a consistent state at a known index: the leader's applied
        # state, which is at or past its snapshot boundary.
        at = SnapshotMeta(
            index=state.applied_index, term=self._term_in(leader.core, state.applied_index)
        )
        # As `Replica.install_state` does: replace the datums in place, then one durable write
        # of the handler's install batch.
        assert node.machine is not None
        assert node.handler is not None
        node.machine.datums.replace_all(state.datums)
        batch, _changes = node.handler.installed_batch(at)
        self._write(node, batch)
        node.handler.reset_pending(at.term)
        node.applied = at.index
        self.monitor.on_snapshot_installed(node.id, at)
        self._log(f"{node.id} digest-synced to {at.index}/{at.term}")
        core.restore_snapshot(at, node.machine.membership())

    def _send(self, envelope: Envelope) -> None:
        blocked = self._blocked
        if blocked and (envelope.sender, envelope.recipient) in blocked:
            return
        rng = self.rng
        if rng.random() < self._drop_rate:
            return
        duplicate = rng.random() < self._duplicate_rate
        low, high = self._delay_range
        queue = self._queue
        # rng.uniform(low, high), spelled out: the same draw, without the call
        delay = low + (high - low) * rng.random()
        self._seq += 1
        heapq.heappush(queue, (self.now + delay, self._seq, "deliver", envelope))
        if duplicate:
            delay = low + (high - low) * rng.random()
            self._seq += 1
            heapq.heappush(queue, (self.now + delay, self._seq, "deliver", envelope))

    # ------------------------------------------------------------------ chaos

    def _chaos(self) -> None:
        f = self.faults
        rng = self.rng
        if rng.random() < f.crash_rate * len(self.ids):
            victim = rng.choice(self.ids)
            self.crash(victim)
            self._schedule(rng.randint(*f.restart_after_ticks), "restart", victim)
        if rng.random() < f.partition_rate * len(self.ids) and not self._blocked:
            side = [n for n in self.ids if rng.random() < 0.5] or [rng.choice(self.ids)]
            if len(side) < len(self.ids):
                self.partition(side)
                self._schedule(rng.randint(*f.heal_after_ticks), "heal", None)
        leader = self.leader()
        if leader is not None and rng.random() < f.leader_crash_rate:
            self.crash(leader)
            self._schedule(rng.randint(*f.restart_after_ticks), "restart", leader)
        if rng.random() < f.campaign_rate * len(self.ids):
            self.campaign(rng.choice(self.ids))
        leader = self.leader()
        if f.transfer_rate and leader is not None and rng.random() < f.transfer_rate:
            core = self.nodes[leader].core
            assert core is not None
            voters = [n for n in self.ids if n != leader and n in core.membership.voters]
            if voters:
                self.transfer(leader, rng.choice(voters))
        if f.membership_rate and rng.random() < f.membership_rate:
            self.change_membership()

    # ------------------------------------------------------------------ membership

    def change_membership(self, change: MembershipChange | None = None) -> Index | None:
        """The leader proposes `change`, or one step drawn from the state: promote a
        caught-up learner, else add a spare as a learner (up to 5 voters), else remove a
        voter (down to 3). The index of the entry, or None if nothing was proposed."""
        leader_id = self.leader()
        if leader_id is None:
            return None
        node = self.nodes[leader_id]
        core = node.core
        assert core is not None
        if change is None:
            change = self._draw_change(core)
            if change is None:
                return None
        try:
            index = core.propose_membership(change)
        except (MembershipError, NotLeaderError) as refused:
            self._log(f"{leader_id} refuses {change.kind.value} {change.node}: {refused}")
            return None
        self.membership_changes += 1
        self._log(f"{leader_id} proposes {change.kind.value} {change.node} at {index}")
        if change.kind is ChangeKind.REMOVE:
            self.retiring.add(change.node)
            self._schedule(30.0, "retire", change.node)
        self._drive(node)
        return index

    def _draw_change(self, core: RaftCore) -> MembershipChange | None:
        membership, peers = core.membership, core.status().peers
        caught_up = sorted(
            n
            for n in membership.learners
            if n in peers and peers[n].match_index >= core.commit_index
        )
        if caught_up:
            return MembershipChange(ChangeKind.PROMOTE, self.rng.choice(caught_up))
        outside = [
            n
            for n in self.ids
            if n not in membership.members and n not in self.retiring and self.nodes[n].up
        ]
        if outside and len(membership.voters) < 5:
            return MembershipChange(ChangeKind.ADD_LEARNER, self.rng.choice(outside))
        if len(membership.voters) > 3:
            return MembershipChange(ChangeKind.REMOVE, self.rng.choice(sorted(membership.voters)))
        return None

    def _retire(self, node_id: NodeId) -> None:
        """A removed node, once its removal has committed, is wiped and kept as a spare
        (as an operator would: a removed member rejoins only with an empty data dir)."""
        leader_id = self.leader()
        core = self.nodes[leader_id].core if leader_id is not None else None
        if core is None or node_id in core.membership.members or core.membership_pending:
            if core is not None and node_id in core.membership.members:
                self.retiring.discard(node_id)  # its removal did not survive
                return
            self._schedule(10.0, "retire", node_id)
            return
        self._log(f"retire {node_id}: wiped, back as a spare")
        self.crash(node_id)
        node = self.nodes[node_id]
        node.store = MemoryStore(name=node_id)
        self._config_for[node_id] = dataclasses.replace(
            self._config_for[node_id], voters=(), joining=True
        )
        self.monitor.on_wipe(node_id)
        self.retiring.discard(node_id)
        self.restart(node_id)

    # ------------------------------------------------------------------ clients

    def _maybe_start_client_op(self, node_id: NodeId) -> None:
        if self._clients_done:
            return
        node = self.nodes[node_id]
        core = node.core
        if core is None or not core.is_leader:
            return
        for client, op in self._clients.items():
            if node.core is None:
                return  # crashed while driving the previous operation
            if op is not None or self.rng.random() >= self.faults.client_rate:
                continue
            key = f"k{self.rng.randrange(self.faults.keys)}"
            if self.rng.random() < 0.5:
                self._next_value += 1
                value = f"v{self._next_value}"
                self._invoke(client, "write", key, value)
                try:
                    index = core.propose(encode_kv(PutValue(key=key, value=value)))
                except NotLeaderError:
                    self._finish_op(client, "write", key, "fail", value)
                    continue
                self._clients[client] = _Op(
                    client, "write", key, value, node_id, index=index, term=core.term
                )
            else:
                self._next_request += 1
                self._invoke(client, "read", key, None)
                try:
                    core.read_index(self._next_request)
                except NotLeaderError:
                    self._finish_op(client, "read", key, "fail", None)
                    continue
                self._clients[client] = _Op(
                    client, "read", key, None, node_id, request_id=self._next_request
                )
            self._drive(node)

    def _invoke(self, client: int, f: str, key: str, value: str | None) -> None:
        self.history.append(
            HistoryEvent(process=client, type="invoke", f=f, key=key, value=value, time=self.now)
        )

    def _finish_op(self, client: int, f: str, key: str, kind: str, value: str | None) -> None:
        self.history.append(
            HistoryEvent(process=client, type=kind, f=f, key=key, value=value, time=self.now)
        )
        self._clients[client] = None

    def _finish(self, client: int, kind: str, value: str | None) -> None:
        op = self._clients[client]
        assert op is not None
        self._finish_op(client, op.kind, op.key, kind, value)

    def _resolve_writes(self, node: _Node, entry: Entry, result: object) -> None:
        for client, op in self._clients.items():
            if op is None or op.kind != "write" or op.node != node.id or op.index != entry.index:
                continue
            if op.term == entry.term:
                if not isinstance(result, KvPut):
                    raise SafetyViolationError(f"write {entry.index} applied as {result!r}")
                assert node.core is not None
                self.monitor.on_ack(entry, node.core.membership.voters)
                self.acked_writes.append((op.key, op.value or "", entry.index, entry.term))
                self._finish(client, "ok", op.value)
            else:
                self._finish(client, "fail", op.value)  # another leader's entry took the slot

    def _resolve_read(self, node: _Node, request_id: int, index: Index) -> None:
        for client, op in self._clients.items():
            if op is None or op.kind != "read" or op.request_id != request_id:
                continue
            if node.applied < index:
                raise SafetyViolationError(
                    f"read {request_id} released at {index} before {node.id} applied it"
                )
            self._finish(client, "ok", _kv_value(node, op.key))

    def _fail_read(self, request_id: int) -> None:
        for client, op in self._clients.items():
            if op is not None and op.kind == "read" and op.request_id == request_id:
                self._finish(client, "fail", None)

    def finish_clients(self) -> None:
        """Operations still open at the end are indeterminate (writes) or failed (reads)."""
        self._clients_done = True
        for client, op in self._clients.items():
            if op is not None:
                self._finish(client, "info" if op.kind == "write" else "fail", op.value)

    # ------------------------------------------------------------------ views

    def _live_views(self) -> dict[NodeId, tuple[RaftCore, dict[str, str]]]:
        return {
            node_id: (node.core, _state_of(node))
            for node_id, node in self.nodes.items()
            if node.up and node.core is not None
        }

    def leader(self) -> NodeId | None:
        for node_id, node in self.nodes.items():
            if node.core is not None and node.core.role is Role.LEADER:
                return node_id
        return None


def _kv_value(node: _Node, key: str) -> str | None:
    assert node.machine is not None
    datum = read_value(node.machine.datums, key)
    return None if datum is None else datum.value.decode()


def _state_of(node: _Node) -> dict[str, str]:
    """Every datum (kv and naming) with its version, to compare replicas."""
    assert node.machine is not None
    return {
        key: f"{datum.version}:{datum.value.decode(errors='replace')}"
        for key, datum in node.machine.datums.items()
    }
