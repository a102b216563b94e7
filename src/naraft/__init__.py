"""naraft: the naming half of Nacos, with its persistent data replicated by Raft."""

from __future__ import annotations

__version__ = "0.1.0"
