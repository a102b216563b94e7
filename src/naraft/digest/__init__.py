"""Digest sync and state checksums: followers catch up fast, replicas are verified.

- `checksum.StateChecksum`: the incremental, order-independent checksum of the applied state.
- `server.DigestServer`: the leader serves its applied state frozen at an index (routes).
- `sync.DigestSync`: a follower catches up from (or repairs against) the leader's state.
- `verifier.ChecksumVerifier`: the leader reports its checksum, followers compare.
"""

from __future__ import annotations

from naraft.digest.checksum import StateChecksum, checksum_of, datum_hash
from naraft.digest.server import ChecksumReport, DigestServer
from naraft.digest.sync import DigestSync, SyncMode, SyncSettings
from naraft.digest.verifier import ChecksumVerifier

__all__ = [
    "ChecksumReport",
    "ChecksumVerifier",
    "DigestServer",
    "DigestSync",
    "StateChecksum",
    "SyncMode",
    "SyncSettings",
    "checksum_of",
    "datum_hash",
]
