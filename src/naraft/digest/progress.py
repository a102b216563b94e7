"""How `naraft status` shows a catching-up node: one progress bar per running digest sync,
from the `catchUp` part of each member's `/nacos/v1/ns/raft/state`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table


def catch_up_view(rows: Mapping[str, Mapping[str, Any]]) -> RenderableType | None:
    """A table of progress bars for the members whose digest sync runs; None if none does."""
    table = Table(title="catching up", show_header=True)
    for column in ("member", "mode", "phase", "at index", "progress", "keys"):
        table.add_column(column)
    shown = 0
    for member, row in rows.items():
        sync = row.get("catchUp") if row else None
        if not isinstance(sync, dict) or sync.get("phase", "idle") == "idle":
            continue
        total = int(sync.get("keysTotal", 0))
        to_fetch = int(sync.get("keysToFetch", 0))
        fetched = int(sync.get("keysFetched", 0))
        compared = int(sync.get("keysCompared", 0))
        # Comparing the digest is the first half of the work, fetching the second.
        done = compared + (fetched if to_fetch else 0)
        whole = total + to_fetch if to_fetch else max(total, 1) * 2
        if sync.get("phase") == "install":
            done = whole
        table.add_row(
            member,
            str(sync.get("mode")),
            str(sync.get("phase")),
            str(sync.get("index")),
            ProgressBar(total=max(whole, 1), completed=done, width=30),
            f"{compared}/{total} compared, {fetched}/{to_fetch} fetched",
        )
        shown += 1
    return table if shown else None
