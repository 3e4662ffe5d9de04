"""`convertctl batch`: many models with shared flags, or a batch file; on a
local pool (default) or a Ray cluster; or a GitHub Actions matrix of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from convertctl.cli.params import RUN_OPTIONS, given, with_options
from convertctl.cli.ui import console, handled
from convertctl.config.options import OUTPUT, default
from convertctl.errors import UsageError

BATCH = "Batch"


@handled
@with_options(*RUN_OPTIONS)
def batch_command(
    sources: Annotated[
        list[str],
        typer.Argument(help="Model files or globs (models/*.pt), or one batch file (zoo.toml).", show_default=False),
    ],
    executor: Annotated[
        str, typer.Option(help="local (a pool on this machine) or ray (a Ray cluster).", rich_help_panel=BATCH)
    ] = "local",
    address: Annotated[
        str, typer.Option(help="Ray: auto, HOST:PORT or ray://HOST:PORT.", rich_help_panel=BATCH)
    ] = "auto",
    shared_dir: Annotated[
        str,
        typer.Option(
            help="Ray: a folder every node sees at the same path; model files and data under it are not copied.",
            rich_help_panel=BATCH,
        ),
    ] = "",
    jobs: Annotated[
        int | None,
        typer.Option(
            help="Local: at most this many at once (default: the cores, as memory allows).",
            min=1,
            rich_help_panel=BATCH,
        ),
    ] = None,  # fmt: skip
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Start no model after one has failed.", rich_help_panel=BATCH)
    ] = False,
    emit: Annotated[
        str,
        typer.Option(
            help="gha-matrix: print GitHub Actions matrices (JSON) and convert nothing.", rich_help_panel=BATCH
        ),
    ] = "",
    trust_config: Annotated[
        bool,
        typer.Option(
            "--trust-config",
            help="Let the batch file and the models' convertctl.toml name code to import (arch, arch_kwargs, code).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    **flags,
):
    """Convert many models: each into --out/NAME with its own report; one combined batch-report.json/.md.

    Exit code: 0 only when every requested file of every model passed; else the most severe of the models'
    codes (1 > 2 > 5 > 3 > 4); 130 when interrupted (Ctrl-C; a rerun takes finished steps from the cache)."""
    from convertctl.batch import plan as planning
    from convertctl.batch.driver import EXECUTORS, Choices, run_batch
    from convertctl.batch.summary import headline, table

    typed = given(flags)
    out = str(typed.get("out") or default("out"))
    if not out.strip():
        raise UsageError("--out '': an empty folder name (an unset variable?); give the output folder")
    if emit:
        if emit != "gha-matrix":
            raise UsageError(f"--emit {emit!r}: the one thing it emits is gha-matrix")
        from convertctl.batch.matrix import matrices

        _, found = planning.entries(sources, typed, trust_config)
        typer.echo(json.dumps(matrices(found, out)))
        return
    if executor not in EXECUTORS:
        raise UsageError(f"--executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    plan = planning.make_plan(sources, typed, Path(out), trust_config)
    choices = Choices(executor, jobs, fail_fast, address, shared_dir)

    def display_for(outcomes, workers):
        from convertctl.batch.progress import Display

        return Display(console, outcomes, workers, f"convertctl batch ({executor})")

    def say(line: str) -> None:
        from rich.markup import escape

        console.print(f"[cyan]›[/] {escape(line)}", highlight=False, soft_wrap=True)

    code, data = run_batch(plan, choices, display_for, say)
    from convertctl.batch.outcome import Outcome

    outcomes = [Outcome(**{k: v for k, v in m.items() if k in Outcome.__dataclass_fields__}) for m in data["models"]]
    console.print(table(outcomes, data))
    style = "bold green" if code == 0 else "bold red"
    console.print(f"[{style}]{headline(outcomes, data)}[/]", highlight=False)
    console.print(f"batch report: {Path(data['out']) / 'batch-report.json'}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
