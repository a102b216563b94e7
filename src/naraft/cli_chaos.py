"""`naraft chaos`: run a fault campaign against a real local cluster (see naraft.chaos).

The campaign machinery is imported only when the command runs, so `naraft server` never
loads it.

Exit 0 only when every check of every schedule passed; 1 when any failed (the seed and
the replay command of each failed schedule are printed); 2 for a usage error.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from naraft.chaos import ScheduleKind, ScheduleResult
    from naraft.chaos.inputs import ProbeKind


def _kinds(text: str) -> tuple[ScheduleKind, ...]:
    from naraft.chaos.schedules import CI_KINDS, SOAK_KINDS, ScheduleKind

    if text == "ci":
        return CI_KINDS
    if text == "soak":
        return SOAK_KINDS
    try:
        return tuple(ScheduleKind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as error:
        choices = ", ".join(k.value for k in ScheduleKind)
        raise click.BadParameter(f"{error}; choose ci, soak or some of: {choices}") from None


def _nemesis_kinds(text: str) -> tuple[ProbeKind, ...]:
    from naraft.chaos.inputs import ProbeKind, parse_kinds

    try:
        return parse_kinds(text)
    except ValueError as error:
        choices = ", ".join(k.value for k in ProbeKind)
        raise click.BadParameter(
            f"{error}; choose default, all or some of: {choices}", param_hint="--nemesis-kinds"
        ) from None


def _can_mount(history_dir: Path) -> bool:
    from naraft.chaos.cluster import can_mount_tmpfs

    history_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=history_dir) as scratch:
        return can_mount_tmpfs(Path(scratch))


def _inputs_sent(result: ScheduleResult) -> str:
    """How many requests the input nemesis sent in the schedule ("-" when it was off)."""
    sent = (result.input_nemesis or {}).get("sent")
    return str(sum(sent.values())) if isinstance(sent, dict) else "-"


@click.command("chaos")
@click.option("--nodes", type=click.IntRange(3, 5), default=3, show_default=True)
@click.option("--schedules", type=click.IntRange(1, 100_000), default=6, show_default=True)
@click.option("--seconds", type=click.FloatRange(5, 3600), default=25.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--history-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("chaos-runs"),
    show_default=True,
    help="one directory per schedule: history.jsonl, result.json, node logs",
)
@click.option(
    "--kinds",
    default="ci",
    show_default=True,
    help="ci (the six CI schedules), soak (every kind), or a comma-separated list",
)
@click.option("--only", type=click.IntRange(0), default=None, help="replay one schedule index")
@click.option("--clients", type=click.IntRange(1, 64), default=6, show_default=True)
@click.option(
    "--grpc-clients",
    type=click.IntRange(0, 64),
    default=2,
    show_default=True,
    help="Nacos 2.x gRPC clients: ephemeral instances owned by their connection, persistent writes",
)
@click.option(
    "--failpoints",
    default="storage.powerloss=1",
    show_default=True,
    help="NARAFT_FAILPOINTS for every node; add storage.lying_fsync=1 to plant a lost-write bug",
)
@click.option(
    "--input-nemesis/--no-input-nemesis",
    default=True,
    show_default=True,
    help="send extreme, oversized and malformed requests to random nodes during the faults",
)
@click.option(
    "--nemesis-kinds",
    default="default",
    show_default=True,
    help="the input nemesis's request kinds: default (all but those this build cannot take "
    "yet), all, or a comma-separated list",
)
def chaos(
    nodes: int,
    schedules: int,
    seconds: float,
    seed: int,
    history_dir: Path,
    kinds: str,
    only: int | None,
    clients: int,
    grpc_clients: int,
    failpoints: str,
    input_nemesis: bool,
    nemesis_kinds: str,
) -> None:
    """Run seeded fault schedules against a real local cluster and check every history."""
    from naraft.chaos.runner import CampaignConfig, run_campaign
    from naraft.chaos.schedules import NEEDS_TMPFS

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    chosen = _kinds(kinds)
    if any(kind in NEEDS_TMPFS for kind in chosen) and not _can_mount(history_dir):
        if kinds != "soak":
            raise click.BadParameter(
                "the disk-full schedule mounts a tmpfs per node: run as root", param_hint="--kinds"
            )
        chosen = tuple(kind for kind in chosen if kind not in NEEDS_TMPFS)
        click.echo("note: no disk-full schedules (mounting a tmpfs needs root)", err=True)
    config = CampaignConfig(
        history_dir=history_dir.resolve(),
        nodes=nodes,
        schedules=schedules,
        seconds=seconds,
        seed=seed,
        kinds=chosen,
        only=only,
        clients=clients,
        grpc_clients=grpc_clients,
        failpoints=failpoints,
        input_nemesis=input_nemesis,
        nemesis_kinds=_nemesis_kinds(nemesis_kinds),
    )
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(
        f"naraft chaos: {nodes} nodes, {schedules if only is None else 1} schedule(s) x "
        f"{seconds:g} s, seed {seed}, histories in {config.history_dir}"
    )

    def report(result: ScheduleResult) -> None:
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        console.print(
            f"schedule {result.index} {result.kind}: {mark}, {result.ops} ops, "
            f"{result.lost_writes} lost, {result.violations} violations"
        )
        for check in result.failed_checks:
            console.print(f"  [red]{check.name}[/red]: {escape(check.detail)}")
        if result.input_nemesis is not None:
            sent = result.input_nemesis.get("sent")
            if isinstance(sent, dict):
                counts = ", ".join(f"{count} {kind}" for kind, count in sent.items())
                console.print(f"  input nemesis sent {escape(counts)}")
        if result.grpc:
            counts = ", ".join(f"{count} {what}" for what, count in result.grpc.items())
            console.print(f"  gRPC clients: {escape(counts)}")

    campaign = run_campaign(config, on_result=report)
    table = Table(title=f"naraft chaos, seed {seed}")
    for column in (
        "#", "schedule", "ops", "ok", "info", "fail", "faults", "inputs", "acked checked",
        "lost", "violations", "converged", "result",
    ):  # fmt: skip
        table.add_column(column)
    for r in campaign.results:
        converged = "-" if r.convergence_seconds is None else f"{r.convergence_seconds:.1f} s"
        table.add_row(
            str(r.index), str(r.kind), str(r.ops), str(r.ok), str(r.info), str(r.fail),
            str(r.nemesis_actions), _inputs_sent(r), str(r.acked_writes_checked),
            str(r.lost_writes), str(r.violations), converged,
            "[green]pass[/green]" if r.passed else "[red]FAIL[/red]",
        )  # fmt: skip
    console.print(table)
    totals = campaign.results
    console.print(
        f"{len(totals)} schedules, {sum(r.ops for r in totals)} ops, "
        f"{sum(r.lost_writes for r in totals)} lost writes, "
        f"{sum(r.violations for r in totals)} violations"
    )
    failed = [r for r in totals if not r.passed]
    if failed:
        for r in failed:
            console.print(
                f"[red]failed[/red] schedule {r.index} ({r.kind}), seed {seed}: {r.run_dir}"
            )
            console.print(f"  replay: {r.replay}")
        raise SystemExit(1)
