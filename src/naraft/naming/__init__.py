"""The naming domain: namespaces, services, clusters and instances, as replicated datums."""

from __future__ import annotations
