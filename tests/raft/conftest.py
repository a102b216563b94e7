"""Options for the core's specification tests.

`--rewrite` regenerates the expected outputs of tests/raft/scenarios/*.txt
(docs/conventions.md#tests).
The suite-wide tests/conftest.py may declare it too; whichever conftest loads first wins.
"""

from __future__ import annotations

import contextlib

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # already declared by tests/conftest.py
        parser.addoption(
            "--rewrite",
            action="store_true",
            default=False,
            help="regenerate the expected outputs of tests/raft/scenarios/*.txt (review the diff)",
        )
