"""`python -m naraft` runs the command line."""

from __future__ import annotations

from naraft.cli import main

main()
