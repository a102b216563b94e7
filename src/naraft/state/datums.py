"""DatumTable: the in-memory applied state, with the changes since the last drain.

Owned by the replica's driver task; the storage layer persists the drained changes in the
same transaction as the applied index.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Datum:
    value: bytes
    version: int  # log index of the entry that last wrote this key


@dataclass(frozen=True, slots=True, kw_only=True)
class DatumChanges:
    """Keys written (with their new datum) and keys deleted since the previous drain."""

    puts: Mapping[str, Datum]
    deletes: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.puts) or bool(self.deletes)


class DatumTable:
    """A dict of datums that remembers which keys changed since `drain_changes`."""

    def __init__(self, initial: Mapping[str, Datum] | None = None) -> None:
        self._data: dict[str, Datum] = dict(initial or {})
        self._dirty: set[str] = set()  # keys changed since the last drain

    def get(self, key: str) -> Datum | None:
        return self._data.get(key)

    def put(self, key: str, value: bytes, version: int) -> Datum:
        datum = Datum(value, version)
        self._data[key] = datum
        self._dirty.add(key)
        return datum

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it was there."""
        if self._data.pop(key, None) is None:
            return False
        self._dirty.add(key)
        return True

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        return iter(self._data.keys())

    def items(self) -> Iterator[tuple[str, Datum]]:
        return iter(self._data.items())

    def with_prefix(self, prefix: str) -> Iterator[tuple[str, Datum]]:
        """Items whose key starts with `prefix` (a scan; the table is a plain dict)."""
        return ((k, d) for k, d in self._data.items() if k.startswith(prefix))

    def drain_changes(self) -> DatumChanges:
        """The changes since the previous drain; afterwards nothing is dirty."""
        puts: dict[str, Datum] = {}
        deletes: set[str] = set()
        for key in self._dirty:
            datum = self._data.get(key)
            if datum is None:
                deletes.add(key)
            else:
                puts[key] = datum
        self._dirty.clear()
        return DatumChanges(puts=puts, deletes=frozenset(deletes))

    def replace_all(self, data: Mapping[str, Datum]) -> None:
        """Install a whole new state (a snapshot); every old and new key counts as changed."""
        self._dirty.update(self._data.keys())
        self._data = dict(data)
        self._dirty.update(self._data.keys())
