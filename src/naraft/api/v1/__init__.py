"""Nacos v1 Open API handlers, one module per resource."""

from __future__ import annotations
