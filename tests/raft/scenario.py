"""A tiny datadriven runner and the cluster environment the scenario files drive.

The rules for scenario files: docs/conventions.md#tests.

A scenario file is a list of cases separated by blank lines. Each case is optional `#`
comment lines, one command line, `----`, and the expected output::

    # Three voters; n1 campaigns and wins the election.
    cluster n1 n2 n3
    ----
    ok

`pytest tests/raft --rewrite` regenerates every expected output from the actual one; review
that diff like code before keeping it.
"""

from __future__ import annotations

import difflib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from tests.raft.describe import (
    describe_entry,
    describe_envelope,
    describe_message,
    describe_position,
    describe_role,
    describe_status,
)

from naraft.raft import (
    Entry,
    Envelope,
    HardState,
    Index,
    NodeId,
    NotLeaderError,
    RaftConfig,
    RaftCore,
    RaftError,
    Ready,
    Role,
    Term,
)

SEPARATOR: Final = "----"
DEFAULT_SEED: Final = 42
MAX_STABILIZE_ROUNDS: Final = 500

# ---------------------------------------------------------------------------- the runner


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """One command line: `name positional... key=value...`."""

    name: str
    args: tuple[str, ...]
    options: Mapping[str, str]
    line: int

    @classmethod
    def parse(cls, text: str, *, line: int) -> Command:
        words = text.split()
        args = tuple(word for word in words[1:] if "=" not in word)
        options = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        return cls(name=words[0], args=args, options=options, line=line)

    def int_option(self, key: str, default: int) -> int:
        return int(self.options.get(key, default))

    def bool_option(self, key: str, default: bool) -> bool:
        value = self.options.get(key)
        if value is None:
            return default
        if value not in ("true", "false"):
            raise ValueError(f"line {self.line}: {key}={value!r} is not true or false")
        return value == "true"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    comments: tuple[str, ...]
    command: str
    expected: str
    line: int

    def render(self, output: str) -> str:
        return "\n".join([*self.comments, self.command, SEPARATOR, output])


def parse_cases(text: str) -> list[Case]:
    """Split a scenario file into its cases; a malformed file raises ValueError."""
    cases: list[Case] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        comments: list[str] = []
        while i < len(lines) and lines[i].startswith("#"):
            comments.append(lines[i])
            i += 1
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ValueError(f"line {i + 1}: expected a command followed by {SEPARATOR!r}")
        command, start = lines[i], i + 1
        i += 2
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        cases.append(
            Case(
                comments=tuple(comments), command=command, expected="\n".join(expected), line=start
            )
        )
    return cases


def run_file(path: Path, handler: Callable[[Command], str], *, rewrite: bool) -> None:
    """Run every case of `path` through `handler`; fail with a unified diff on a mismatch,
    or write the actual outputs back when `rewrite` is set."""
    original = path.read_text()
    rendered: list[str] = []
    for case in parse_cases(original):
        output = handler(Command.parse(case.command, line=case.line)).rstrip("\n") or "ok"
        rendered.append(case.render(output))
    actual = "\n\n".join(rendered) + "\n"
    if actual == original:
        return
    if rewrite:
        path.write_text(actual)
        return
    diff = difflib.unified_diff(
        original.splitlines(keepends=True),
        actual.splitlines(keepends=True),
        fromfile=f"{path.name} (expected)",
        tofile=f"{path.name} (actual)",
    )
    pytest.fail("".join(diff), pytrace=False)


# ---------------------------------------------------------------------------- the cluster


@dataclass(slots=True)
class Disk:
    """What one node has made durable from its Ready batches; the only thing a restart reads."""

    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)

    def save(self, hard_state: HardState | None, entries: Iterable[Entry]) -> None:
        """Persist like a shell: an entry at index i replaces every stored entry >= i."""
        if hard_state is not None:
            self.hard_state = hard_state
        for entry in entries:
            del self.entries[entry.index - 1 :]
            if len(self.entries) != entry.index - 1:
                raise AssertionError(f"the core persisted a gap before entry {entry.index}")
            self.entries.append(entry)


class ClusterEnv:
    """Cores connected by a FIFO network that delivers only when told to.

    Role changes are printed, indented, right after the input that caused them.
    """

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self._rng = random.Random(seed)
        self._configs: dict[NodeId, RaftConfig] = {}
        self._cores: dict[NodeId, RaftCore] = {}
        self._disks: dict[NodeId, Disk] = {}
        self._network: list[Envelope] = []
        self._groups: dict[NodeId, int] = {}
        self._seen: dict[NodeId, tuple[Role, Term, NodeId | None]] = {}
        self._counts: Counter[str] = Counter()
        self._out: list[str] = []
        self._tick_label = ""

    # ------------------------------------------------------------------ dispatch

    def handle(self, command: Command) -> str:
        self._out = []
        match command.name:
            case "cluster":
                self._cluster(command)
            case "tick":
                self._tick(command)
            case "run":
                self._run(command)
            case "campaign":
                self._campaign(command)
            case "propose":
                self._propose(command)
            case "read-index":
                self._read_index(command)
            case "deliver":
                self._deliver(command)
            case "stabilize":
                self._stabilize(quiet=False)
            case "partition":
                self._partition(command)
            case "heal":
                self._groups.clear()
            case "crash":
                self._crash(command)
            case "restart":
                self._restart(command)
            case "status":
                self._status(command)
            case "log":
                self._log(command)
            case "counts":
                self._print_counts()
            case "forget-leader":
                self._forget_leader(command)
            case "transfer-leader":
                self._transfer_leader(command)
            case other:
                raise ValueError(f"line {command.line}: unknown command {other!r}")
        return "\n".join(self._out)

    # ------------------------------------------------------------------ commands

    def _cluster(self, command: Command) -> None:
        """`cluster n1 n2 n3 [prevote=] [checkquorum=] [election=] [heartbeat=]
        [max_entries=] [max_inflight=] [seed=]`: a fresh cluster, forgetting any earlier one."""
        self._rng = random.Random(command.int_option("seed", DEFAULT_SEED))
        for state in (self._configs, self._cores, self._disks, self._groups, self._seen):
            state.clear()
        self._network.clear()
        self._counts.clear()
        voters = tuple(NodeId(name) for name in command.args)
        for node in voters:
            self._configs[node] = RaftConfig(
                id=node,
                voters=voters,
                election_ticks=command.int_option("election", 10),
                heartbeat_ticks=command.int_option("heartbeat", 1),
                pre_vote=command.bool_option("prevote", True),
                check_quorum=command.bool_option("checkquorum", True),
                max_entries_per_append=command.int_option("max_entries", 256),
                max_inflight_appends=command.int_option("max_inflight", 64),
            )
            self._disks[node] = Disk()
            self._boot(node)

    def _tick(self, command: Command) -> None:
        targets = self._targets(command.args[0])
        count = int(command.args[1]) if len(command.args) > 1 else 1
        for tick in range(1, count + 1):
            self._tick_label = f" (tick {tick})" if count > 1 else ""
            for node in targets:
                self._cores[node].tick()
                self._observe(node)
        self._tick_label = ""

    def _run(self, command: Command) -> None:
        """`run <n>`: n rounds of tick-all-then-stabilize, printing only role changes."""
        count = int(command.args[0])
        for tick in range(1, count + 1):
            self._tick_label = f" (tick {tick})"
            for node in self._live():
                self._cores[node].tick()
                self._observe(node)
            self._stabilize(quiet=True)
        self._tick_label = ""

    def _campaign(self, command: Command) -> None:
        node = NodeId(command.args[0])
        self._cores[node].campaign()
        self._observe(node)

    def _forget_leader(self, command: Command) -> None:
        node = NodeId(command.args[0])
        self._cores[node].forget_leader()
        self._observe(node)

    def _transfer_leader(self, command: Command) -> None:
        """`transfer-leader <leader> <target>`: the leader hands over to the target."""
        node, target = NodeId(command.args[0]), NodeId(command.args[1])
        try:
            self._cores[node].transfer_leadership(target)
        except RaftError as error:
            self._out.append(f"error: {error}")
            return
        self._observe(node)

    def _propose(self, command: Command) -> None:
        node, text = NodeId(command.args[0]), command.args[1]
        repeat = command.int_option("repeat", 1)
        indexes: list[Index] = []
        try:
            for i in range(1, repeat + 1):
                payload = text if repeat == 1 else f"{text}{i}"
                indexes.append(self._cores[node].propose(payload.encode()))
        except NotLeaderError as error:
            self._out.append(f"error: {error}")
            return
        span = f"{indexes[0]}..{indexes[-1]}" if repeat > 1 else f"{indexes[0]}"
        self._out.append(f"index {span}")

    def _read_index(self, command: Command) -> None:
        node = NodeId(command.args[0])
        try:
            for request_id in command.args[1:]:
                self._cores[node].read_index(int(request_id))
        except NotLeaderError as error:
            self._out.append(f"error: {error}")

    def _deliver(self, command: Command) -> None:
        """`deliver [<node>] [from=<node>] [type=<Kind>] [drop=<node>]`: handle every node's
        Ready, then deliver the queued messages (only to `node`, only from `from`, only of
        `type`), dropping those sent by `drop`. What the deliveries cause waits for the
        next round."""
        recipient = NodeId(command.args[0]) if command.args else None
        drop = command.options.get("drop")
        kind = command.options.get("type")
        sender = command.options.get("from")
        self._handle_readies()
        chosen = [
            envelope
            for envelope in self._network
            if (recipient is None or envelope.recipient == recipient)
            and (sender is None or envelope.sender == sender)
            and (kind is None or describe_message(envelope.message).split()[0] == kind)
        ]
        self._network = [envelope for envelope in self._network if envelope not in chosen]
        for envelope in chosen:
            if envelope.sender == drop:
                self._out.append(f"{describe_envelope(envelope)} (dropped)")
            else:
                self._step(envelope, quiet=False)

    def _stabilize(self, *, quiet: bool) -> None:
        for _ in range(MAX_STABILIZE_ROUNDS):
            self._handle_readies()
            if not self._network:
                return
            queued, self._network = self._network, []
            for envelope in queued:
                self._step(envelope, quiet=quiet)
        raise AssertionError(f"no quiet state after {MAX_STABILIZE_ROUNDS} rounds")

    def _partition(self, command: Command) -> None:
        """`partition n1 n2 / n3`: each `/`-separated group, and everyone unnamed, is cut
        off from the others."""
        self._groups.clear()
        group = 0
        for word in command.args:
            if word == "/":
                group += 1
            else:
                self._groups[NodeId(word)] = group

    def _crash(self, command: Command) -> None:
        node = NodeId(command.args[0])
        del self._cores[node]

    def _restart(self, command: Command) -> None:
        node = NodeId(command.args[0])
        self._boot(node)
        self._status(command)

    def _status(self, command: Command) -> None:
        node = NodeId(command.args[0])
        core = self._cores.get(node)
        if core is None:
            self._out.append(f"{node} is down")
            return
        self._out.append(describe_status(core.status(), core.log))

    def _log(self, command: Command) -> None:
        node = NodeId(command.args[0])
        entries = self._cores[node].log
        self._out.extend(describe_entry(entry) for entry in entries)
        if not entries:
            self._out.append("(empty)")

    def _print_counts(self) -> None:
        counted = " ".join(f"{kind}={n}" for kind, n in sorted(self._counts.items()))
        self._out.append(counted or "nothing delivered")
        self._counts.clear()

    # ------------------------------------------------------------------ machinery

    def _boot(self, node: NodeId) -> None:
        """Build the core from exactly what `node` persisted; nothing applied yet."""
        disk = self._disks[node]
        core = RaftCore(
            self._configs[node],
            rng=random.Random(self._rng.getrandbits(64)),
            hard_state=disk.hard_state,
            log=tuple(disk.entries),
        )
        self._cores[node] = core
        self._seen[node] = (core.role, core.term, core.leader)

    def _live(self) -> list[NodeId]:
        return [node for node in self._configs if node in self._cores]

    def _targets(self, word: str) -> list[NodeId]:
        return self._live() if word == "all" else [NodeId(word)]

    def _connected(self, a: NodeId, b: NodeId) -> bool:
        return self._groups.get(a, -1) == self._groups.get(b, -1)

    def _handle_readies(self) -> None:
        for node in self._live():
            core = self._cores[node]
            while core.has_ready():
                self._handle_ready(node, core.ready())

    def _handle_ready(self, node: NodeId, ready: Ready) -> None:
        """Persist, then send, then apply, then advance (docs/conventions.md#the-ready-contract).

        This loop stays pure-core on purpose rather than driving the shell's `ReadyHandler`:
        the scenario files pin what the core itself hands out, Ready by Ready, and a restart
        here reads exactly every hard state and entry the core asked for. Through the
        handler a commit-only Ready would be deferred, so a scenario's restart would depend
        on the shell's idle flush; the shell's rules are covered by the simulator (which
        drives the handler) and tests/replica."""
        core = self._cores[node]
        self._disks[node].save(ready.hard_state, ready.entries)
        for envelope in ready.messages:
            if self._connected(envelope.sender, envelope.recipient):
                self._network.append(envelope)
        for read in ready.read_states:
            self._out.append(f"  {node} read {read.request_id} at index {read.index}")
        for request_id in ready.dropped_reads:
            self._out.append(f"  {node} dropped read {request_id}")
        if ready.snapshot_to_fetch is not None:
            snapshot = ready.snapshot_to_fetch
            self._out.append(
                f"  {node} fetches snapshot {describe_position(snapshot.index, snapshot.term)}"
            )
        core.advance(ready)
        self._observe(node)

    def _step(self, envelope: Envelope, *, quiet: bool) -> None:
        core = self._cores.get(envelope.recipient)
        if core is None or not self._connected(envelope.sender, envelope.recipient):
            return  # lost in the network
        if not quiet:
            self._out.append(describe_envelope(envelope))
        self._counts[describe_message(envelope.message).split()[0]] += 1
        core.step(envelope)
        self._observe(envelope.recipient)

    def _observe(self, node: NodeId) -> None:
        core = self._cores[node]
        now = (core.role, core.term, core.leader)
        if now != self._seen[node]:
            self._seen[node] = now
            line = describe_role(node, core.role, core.term, core.leader)
            self._out.append(f"  {line}{self._tick_label}")
