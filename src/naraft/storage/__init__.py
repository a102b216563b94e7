"""naraft.storage: where a node keeps its Raft state and applied state between restarts.

`open_store(path)` opens the durable `SqliteStore`; `MemoryStore` is the in-memory twin for the
simulator and tests. Both satisfy `Store` and take one `WriteBatch` per `Ready`. This package
imports only `naraft.raft.types` and `naraft.state` (the layers below it).
"""

from __future__ import annotations

from naraft.storage.base import (
    ClusterIdMismatchError,
    CorruptStoreError,
    InvalidBatchError,
    NodeIdMismatchError,
    SchemaTooNewError,
    Store,
    StoredState,
    StoreError,
    StoreFullError,
    WriteBatch,
)
from naraft.storage.memory import MemoryStore
from naraft.storage.sqlite import SqliteStore, open_store

__all__ = [
    "ClusterIdMismatchError",
    "CorruptStoreError",
    "InvalidBatchError",
    "MemoryStore",
    "NodeIdMismatchError",
    "SchemaTooNewError",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreFullError",
    "StoredState",
    "WriteBatch",
    "open_store",
]
