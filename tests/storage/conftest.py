"""Fixtures for the store tests: each store kind, opened and reopened like a restarting node."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from naraft.storage import MemoryStore, Store, open_store

Reopen = Callable[[], Store]


class Reopener:
    """Opens a store of one kind; each call closes the previous store and opens it again.

    A SqliteStore is reopened from its file. A MemoryStore is its own disk: it is closed and
    rebooted with `crash()`, which keeps what was written durably.
    """

    def __init__(self, kind: str, path: Path) -> None:
        self._kind = kind
        self._path = path
        self._memory = MemoryStore(name=str(path))
        self._current: Store | None = None

    def __call__(self) -> Store:
        self.close()
        store: Store
        if self._kind == "sqlite":
            store = open_store(self._path)
        else:
            self._memory.crash()
            store = self._memory
        self._current = store
        return store

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    """`reopen()` returns a freshly (re)opened store of the parametrized kind."""
    reopener = Reopener(str(request.param), tmp_path / "naraft.db")
    yield reopener
    reopener.close()


@pytest.fixture
def store(reopen: Reopen) -> Store:
    """A new, empty store of the parametrized kind."""
    return reopen()
