"""The replicated state every node holds: datums (key -> value, version), as the seed's view.

A datum's `version` is the log index of the entry that last wrote it (the seed's
timestamp, made deterministic). Both the key/value API and the naming domain keep their
state as datums, so digest sync and checksums see one keyspace.
"""

from __future__ import annotations

from naraft.state.datums import Datum, DatumTable

__all__ = ["Datum", "DatumTable"]
