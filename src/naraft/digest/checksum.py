"""The incremental, order-independent checksum of a replica's applied state.

Every datum hashes to 64 bits: `datum_hash(key, datum)` = BLAKE2b-64 of the key, the
version and the value. The state's checksum is the sum of those hashes modulo 2**64, so it
does not depend on the order keys were written and is updated in O(changed keys) on every
apply: subtract the old hash of each changed key, add the new one. The per-key hashes are
kept (they are the digest's third column), and the checksum is remembered at the last few
applied indexes so that a follower can compare with a leader's report about a past index.

Owned by the replica's driver task (through the replica's `on_applied` hook); readers on
the same event loop see it consistent with the datum table at every await point.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Mapping
from typing import Final

from naraft.state.datums import Datum, DatumChanges

MASK: Final = (1 << 64) - 1
HISTORY: Final = 512  # applied indexes whose checksum is remembered


def datum_hash(key: str, datum: Datum) -> int:
    """The 64-bit hash of one datum (key, version and value all count)."""
    digest = hashlib.blake2b(
        b"%s\x00%d\x00%s" % (key.encode(), datum.version, datum.value), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


class StateChecksum:
    """The checksum of a datum table, kept up to date from its drained changes."""

    def __init__(self, datums: Iterable[tuple[str, Datum]], index: int) -> None:
        self._hashes: dict[str, int] = {key: datum_hash(key, datum) for key, datum in datums}
        self._total = sum(self._hashes.values()) & MASK
        self._index = index
        self._history: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._remember()

    @property
    def value(self) -> int:
        return self._total

    @property
    def index(self) -> int:
        """The applied index the checksum is at."""
        return self._index

    @property
    def hashes(self) -> Mapping[str, int]:
        """key -> datum hash, live (copy it to keep a point-in-time view)."""
        return self._hashes

    def hash_of(self, key: str) -> int | None:
        return self._hashes.get(key)

    def at(self, index: int) -> int | None:
        """The checksum when the state was at `index`, if still remembered."""
        return self._history.get(index)

    def apply(self, changes: DatumChanges, index: int) -> None:
        """The state moved to `index` by `changes` (puts hold the new datums)."""
        hashes = self._hashes
        total = self._total
        for key in changes.deletes:
            old = hashes.pop(key, None)
            if old is not None:
                total -= old
        for key, datum in changes.puts.items():
            new = datum_hash(key, datum)
            old = hashes.get(key)
            if old is not None:
                total -= old
            hashes[key] = new
            total += new
        self._total = total & MASK
        self._index = index
        self._remember()

    def _remember(self) -> None:
        self._history[self._index] = self._total
        self._history.move_to_end(self._index)
        while len(self._history) > HISTORY:
            self._history.popitem(last=False)


def checksum_of(datums: Mapping[str, Datum]) -> int:
    """The checksum of a whole state, computed from scratch (tests and verification)."""
    return sum(datum_hash(key, datum) for key, datum in datums.items()) & MASK
