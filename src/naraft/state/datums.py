"""DatumTable: the in-memory applied state, with the changes since the last drain.

Owned by the replica's driver task; the storage layer persists the drained changes in the
same transaction as the applied index.

The table also keeps its size (UTF-8 bytes of every key plus every value), which the state
quota is checked against, and an undo journal: the state machine opens it before applying
an entry and rolls back to it when the entry must not take effect (a fault or the quota),
so an entry either changes the state as a whole or not at all.
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

    def changed_keys(self) -> Iterator[str]:
        """Every key written or deleted."""
        yield from self.puts
        yield from self.deletes


def right_sized(value: bytes) -> bytes:
    """`value` in a buffer of exactly its size, for bytes kept long (datums, the log, cached
    answers): orjson, which encodes most of them, returns bytes in a buffer of at least
    1 KiB (4 KiB from orjson 3.12), so a 250-byte instance record held 1,057 bytes."""
    return bytes(memoryview(value))


def datum_size(key: str, datum: Datum | None) -> int:
    """What one datum counts towards the state size: its key's UTF-8 bytes and its value."""
    if datum is None:
        return 0
    return len(key.encode("utf-8", "surrogatepass")) + len(datum.value)


class DatumTable:
    """A dict of datums that remembers which keys changed since `drain_changes`."""

    def __init__(self, initial: Mapping[str, Datum] | None = None) -> None:
        self._data: dict[str, Datum] = dict(initial or {})
        self._dirty: set[str] = set()  # keys changed since the last drain
        self._size = sum(datum_size(k, d) for k, d in self._data.items())
        self._journal: dict[str, Datum | None] | None = None  # key -> datum before `begin`
        self._generation = 0  # bumped when keys change behind the appliers' backs
        self._indexed: dict[str, dict[str, None]] = {}  # prefix -> its keys (`index_prefix`)
        self._groupings: list[_Grouping] = []  # `index_groups`

    @property
    def generation(self) -> int:
        """Changes whenever keys change other than by an entry's apply: a `rollback`, a
        `replace_all`, a put or delete outside `begin`/`commit` (a digest install or
        repair). A domain that keeps an index of its keys beside the table rebuilds it when
        this moved; its own writes, made while applying an entry, keep it current."""
        return self._generation

    @property
    def size_bytes(self) -> int:
        """Keys and values of every datum, in bytes (the state quota's measure)."""
        return self._size

    def get(self, key: str) -> Datum | None:
        return self._data.get(key)

    def _remember(self, key: str, before: Datum | None) -> None:
        if self._journal is not None and key not in self._journal:
            self._journal[key] = before

    def index_prefix(self, prefix: str) -> None:
        """Keep the keys under `prefix` apart, so that `with_prefix` of it (or of a longer
        prefix) visits only them instead of scanning the table: for a domain that lists its
        keys often (the leader's beat sweep lists every ephemeral instance list each
        second, whatever else the table holds)."""
        if prefix not in self._indexed:
            self._indexed[prefix] = self._scan_keys(prefix)

    def _scan_keys(self, prefix: str) -> dict[str, None]:
        """The keys under `prefix`, in the table's order (an index built from scratch)."""
        return dict.fromkeys(k for k in self._data if k.startswith(prefix))

    def index_groups(self, prefix: str, separator: str) -> None:
        """Keep the keys under `prefix` in groups, each named by the text of its keys before
        their first `separator` after the prefix (a key without one is a group's name and
        its member): `group_items` and `group_stamp` then answer for one group without a
        scan (a service's instances, each a datum of its own)."""
        if all(g.prefix != prefix for g in self._groupings):
            grouping = _Grouping(prefix, separator)
            grouping.rebuild(self._data)
            self._groupings.append(grouping)

    def _grouping_of(self, name: str) -> _Grouping | None:
        for grouping in self._groupings:
            if name.startswith(grouping.prefix):
                return grouping
        return None

    def _members_of(self, name: str) -> dict[str, None]:
        """The member keys of group `name` of an `index_groups` prefix (KeyError if no
        grouped prefix holds it)."""
        grouping = self._grouping_of(name)
        if grouping is None:
            raise KeyError(f"no grouped prefix holds {name!r}")
        return grouping.members.get(name, {})

    def group_items(self, name: str) -> list[tuple[str, Datum]]:
        """The members of group `name` of an `index_groups` prefix, in no set order."""
        data = self._data
        return [(key, data[key]) for key in self._members_of(name)]

    def group_size(self, name: str) -> int:
        """How many keys group `name` of an `index_groups` prefix holds, without reading them."""
        return len(self._members_of(name))

    def group_stamp(self, name: str) -> object | None:
        """An object that stays the same while no member of group `name` is put, deleted,
        rolled back or installed, and is replaced when one is; None while it has none. A
        cache of what the group holds is valid while this is the same object."""
        grouping = self._grouping_of(name)
        return None if grouping is None else grouping.stamps.get(name)

    def groups(self, prefix: str) -> list[tuple[str, object]]:
        """Every group whose name starts with `prefix` (itself under a grouped prefix), and
        its stamp."""
        grouping = self._grouping_of(prefix)
        if grouping is None:
            raise KeyError(f"no grouped prefix holds {prefix!r}")
        return [(n, stamp) for n, stamp in grouping.stamps.items() if n.startswith(prefix)]

    def _index_add(self, key: str) -> None:
        for prefix, keys in self._indexed.items():
            if key.startswith(prefix):
                keys[key] = None
        for grouping in self._groupings:
            grouping.add(key)

    def _index_drop(self, key: str) -> None:
        for keys in self._indexed.values():
            keys.pop(key, None)
        for grouping in self._groupings:
            grouping.drop(key)

    def _index_touch(self, key: str) -> None:
        for grouping in self._groupings:
            grouping.touch(key)

    def put(self, key: str, value: bytes, version: int) -> Datum:
        datum = Datum(right_sized(value), version)  # kept for as long as its key is
        before = self._data.get(key)
        self._remember(key, before)
        if before is None:
            if self._indexed or self._groupings:
                self._index_add(key)
        elif self._groupings:
            self._index_touch(key)
        self._data[key] = datum
        if before is None:
            self._size += datum_size(key, datum)
        else:  # the key counted already: only the value's size changes (no key encoding)
            self._size += len(datum.value) - len(before.value)
        self._dirty.add(key)
        if self._journal is None:
            self._generation += 1
        return datum

    def delete(self, key: str) -> bool:
        """Remove `key`; True if it was there."""
        before = self._data.pop(key, None)
        if before is None:
            return False
        self._remember(key, before)
        if self._indexed or self._groupings:
            self._index_drop(key)
        self._size -= datum_size(key, before)
        self._dirty.add(key)
        if self._journal is None:
            self._generation += 1
        return True

    # ------------------------------------------------------------ undo journal

    def begin(self) -> None:
        """Start remembering what each changed key held, for `rollback`."""
        self._journal = {}

    def commit(self) -> None:
        """Keep every change since `begin` (and stop remembering)."""
        self._journal = None

    def rollback(self) -> None:
        """Put back every key changed since `begin` as it was. A restored key stays dirty:
        draining it writes the datum it holds again, which is what the store has."""
        journal, self._journal = self._journal, None
        if journal is None:
            return
        self._generation += 1
        for key, before in journal.items():
            current = self._data.get(key)
            self._size -= datum_size(key, current)
            if before is None:
                self._data.pop(key, None)
                self._index_drop(key)
            else:
                self._data[key] = before
                self._size += datum_size(key, before)
                if current is None:
                    self._index_add(key)
                else:
                    self._index_touch(key)
            self._dirty.add(key)

    # ------------------------------------------------------------------- reads

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        return iter(self._data.keys())

    def items(self) -> Iterator[tuple[str, Datum]]:
        return iter(self._data.items())

    def with_prefix(self, prefix: str) -> Iterator[tuple[str, Datum]]:
        """Items whose key starts with `prefix`: a scan of the table, or of the keys of an
        indexed prefix that `prefix` extends (`index_prefix`). Taken at the call: the
        table may change while the caller goes through them."""
        for indexed, keys in self._indexed.items():
            if prefix.startswith(indexed):
                data = self._data
                return iter([(k, data[k]) for k in keys if k.startswith(prefix)])
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
        self._size = sum(datum_size(k, d) for k, d in self._data.items())
        self._journal = None
        self._generation += 1
        for prefix in self._indexed:
            self._indexed[prefix] = self._scan_keys(prefix)
        for grouping in self._groupings:
            grouping.rebuild(self._data)


class _Grouping:
    """The groups of one `index_groups` prefix: each group's member keys and its stamp."""

    __slots__ = ("members", "prefix", "separator", "stamps")

    def __init__(self, prefix: str, separator: str) -> None:
        self.prefix = prefix
        self.separator = separator
        self.members: dict[str, dict[str, None]] = {}
        self.stamps: dict[str, object] = {}

    def group_of(self, key: str) -> str | None:
        if not key.startswith(self.prefix):
            return None
        at = key.find(self.separator, len(self.prefix))
        return key if at < 0 else key[:at]

    def rebuild(self, data: Mapping[str, Datum]) -> None:
        self.members = {}
        self.stamps = {}
        for key in data:
            self.add(key)

    def add(self, key: str) -> None:
        group = self.group_of(key)
        if group is not None:
            self.members.setdefault(group, {})[key] = None
            self.stamps[group] = object()

    def drop(self, key: str) -> None:
        group = self.group_of(key)
        members = None if group is None else self.members.get(group)
        if group is None or members is None or key not in members:
            return
        del members[key]
        if members:
            self.stamps[group] = object()
        else:
            del self.members[group]
            del self.stamps[group]

    def touch(self, key: str) -> None:
        group = self.group_of(key)
        if group is not None and group in self.stamps:
            self.stamps[group] = object()
