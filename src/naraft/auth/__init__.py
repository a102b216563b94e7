"""Users, roles, permissions and the token signing key: replicated auth state, tokens and
the permission rule (Nacos's model). Pure: no IO, no clock of its own."""

from __future__ import annotations
