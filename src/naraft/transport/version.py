"""The peer protocol's version range, carried by every Raft batch, for rolling upgrades.

A build speaks a range of peer protocol versions, `low..high`: the newest it knows and the
ones before it that it still accepts. Every peer request names the sender's range in the
header `X-Naraft-Protocol: low..high` (a request without it comes from a build older than
the header, which spoke version 1 alone); the receiver takes the batch only if the two
ranges share a version, and otherwise answers 426 naming its own range, logging one line.
The sender logs one line too, once per peer. So an upgrade goes one version at a time: a
build N that still speaks N-1 joins a cluster of N-1 builds, and once every member runs N,
the next build may drop N-1.

A version names what a member can read: the batch formats of the wire (`codec`) and the
commands of the log. This build speaks 1..4:
- version 2 lets a leader mark its commit notices quiet, so that followers do not answer
  them (a wire change: batch format 2);
- version 3 brings the first command added to the log since builds shared one
  (`update_metadata`, Nacos's batch metadata); its batches are still written in format 2;
- version 4 brings `update_cluster` (Nacos's `PUT /cluster`).
A command a version brings is proposed only once the cluster has recorded that version
(`naraft.upgrade`): every member spoke it when it was recorded, and from then on a peer
that does not speak it is refused (`meets_floor`), so no member ever meets an entry it
cannot read.

Batches are written in the newest format both ends speak (`batch_format`): a receiver
names its range in the answer to a stream's upgrade, and one that does not (a build before
version 2) is written version 1. The range a node claims can be overridden
(`--peer-protocol`), which is how the tests stand in for builds of other versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from naraft.transport.codec import FORMAT_VERSION, FORMAT_VERSIONS

PROTOCOL_HEADER: Final = "X-Naraft-Protocol"
INCOMPATIBLE_STATUS: Final = 426  # Upgrade Required
MAX_VERSION: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class ProtocolRange:
    low: int
    high: int

    def __str__(self) -> str:
        return f"{self.low}..{self.high}"

    def shares(self, other: ProtocolRange) -> bool:
        return self.low <= other.high and other.low <= self.high


COMMANDS_VERSION: Final = 4  # the newest version that brought log commands
CURRENT: Final = ProtocolRange(min(FORMAT_VERSIONS), max(FORMAT_VERSION, COMMANDS_VERSION))
BEFORE_HEADER: Final = ProtocolRange(1, 1)
"""What a request without the header speaks: builds before the header spoke version 1.
So does an upgrade's answer without it: builds before version 2 did not name theirs."""


def meets_floor(theirs: ProtocolRange, floor: int) -> bool:
    """Whether a peer speaking `theirs` may take part once the cluster has recorded version
    `floor` (1: nothing recorded): it must read every command the log may hold."""
    return theirs.high >= floor


def batch_format(ours: ProtocolRange, theirs: ProtocolRange | None) -> int:
    """The format of the batches this node writes to a peer speaking `theirs` (None: the
    peer did not say): the newest version both speak, among those this build writes. (A
    range claimed past them stands in for a future build in tests: it gets the newest.)"""
    peer = theirs if theirs is not None else BEFORE_HEADER
    return max(min(FORMAT_VERSIONS), min(ours.high, peer.high, FORMAT_VERSION))


def parse_range(text: str) -> ProtocolRange:
    """`"1..2"` (or `"2"`) as a range; ValueError naming what is wrong."""
    low_text, sep, high_text = text.strip().partition("..")
    if not sep:
        high_text = low_text
    if (
        not all(t.isascii() and t.isdigit() for t in (low_text, high_text))
        or max(len(low_text), len(high_text)) > 7
    ):
        raise ValueError(f"must be LOW..HIGH with versions 1..{MAX_VERSION}, not {text!r}")
    low, high = int(low_text), int(high_text)
    if not 1 <= low <= high <= MAX_VERSION:
        raise ValueError(f"must be LOW..HIGH with 1 <= LOW <= HIGH <= {MAX_VERSION}, not {text!r}")
    return ProtocolRange(low, high)
