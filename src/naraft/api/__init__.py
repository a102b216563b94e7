"""The HTTP edge: Nacos v1 Open API handlers over a NamingService, errors → status codes."""

from __future__ import annotations

from naraft.api.app import make_app

__all__ = ["make_app"]
