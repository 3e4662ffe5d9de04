"""`convertctl cache list|prune`, `convertctl runs prune`, `convertctl
verify`, and the cache and failed-runs lines of `convertctl envs list`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from convertctl.cli.params import with_options
from convertctl.cli.ui import Progress, console, handled, options_of, runtime_for
from convertctl.config.options import ENVIRONMENT
from convertctl.errors import EXIT_VALIDATION, UsageError
from convertctl.report.text import term
from convertctl.store import runs
from convertctl.store.cache import StageCache, cache_root, parse_age

cache_app = typer.Typer(no_args_is_help=True, help="The stage cache (outputs of steps that ran before).")
runs_app = typer.Typer(no_args_is_help=True, help="Run directories failed runs left behind.")

OlderThan = Annotated[str | None, typer.Option("--older-than", help="Age, e.g. 30d, 12h, 90m.")]
AllEntries = Annotated[bool, typer.Option("--all", help="Remove every entry.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would go, remove nothing.")]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _age(seconds: float) -> str:
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f}{unit}"
    return f"{seconds:.0f}s"


def cache_summary() -> str:
    cache = StageCache(cache_root())
    rows, memos = cache.entries(), cache.memo.rows()
    return (
        f"stage cache: {len(rows)} entries, {_mb(sum(r['size_bytes'] for r in rows))} in {cache_root()}"
        f" (and {len(memos)} host results, {_mb(sum(r['size_bytes'] for r in memos))})"
    )


def envs_summary() -> str:
    """The lines `convertctl envs list` ends with."""
    return f"{cache_summary()}\n{runs.summary()}"


@cache_app.command("list")
@handled
def cache_list():
    """Every entry: the step it stands for, its size, the time it saves, when last used."""
    rows = StageCache(cache_root()).entries()
    table = Table(show_edge=False)
    for column in ("key", "stage", "variant", "mode", "size", "saves", "last used"):
        table.add_column(column, no_wrap=column == "key", justify="right" if column in ("size", "saves") else "left")
    now = time.time()
    for r in rows:
        saves = f"{r['seconds']:.1f}s" if r.get("seconds") is not None else "-"
        name = term(r.get("variant")) if r.get("variant") else "[red]broken entry[/]"
        table.add_row(  # an entry is a file like any other: its words are shown as text
            term(r["key"][:16]), term(r.get("stage") or "-"), name, term(r.get("mode") or ""), _mb(r["size_bytes"]),
            saves, f"{_age(now - r['last_used'])} ago",
        )  # fmt: skip
    if rows:
        console.print(table)
    console.print(cache_summary(), highlight=False)


@cache_app.command("prune")
@handled
def cache_prune(older_than: OlderThan = None, all_entries: AllEntries = False, dry_run: DryRun = False):
    """Remove entries not used for --older-than (or --all of them), and broken ones."""
    if (older_than is None) == (not all_entries):  # neither, or both
        raise UsageError(
            "cache prune: say what to remove: --older-than AGE (e.g. 30d) or --all"
            if older_than is None
            else "cache prune: --older-than and --all both given; choose one"
        )
    age = parse_age(older_than) if older_than is not None else None
    removed = StageCache(cache_root()).prune(age, dry_run)
    memos = [r for r in removed if r.get("stage") == "memo"]
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {len(removed) - len(memos)} entries and {len(memos)} host results, "
        f"{_mb(sum(r['size_bytes'] for r in removed))}",
        highlight=False,
    )
    console.print(cache_summary(), highlight=False)


@runs_app.command("prune")
@handled
def runs_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age, e.g. 7d, 12h.")] = runs.DEFAULT_AGE,
    out: Annotated[
        list[Path] | None, typer.Option("--out", help="Also look in this output folder's .convertctl/runs.")
    ] = None,
    dry_run: DryRun = False,
):
    """Remove failed runs' directories older than --older-than (passed runs kept with --keep-run stay)."""
    removed = runs.prune(parse_age(older_than), tuple(out or ()), dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"{verb} {len(removed)} failed run directories, {_mb(sum(r['size_bytes'] for r in removed))}"
        + "".join(f"\n  {term(r['path'])}" for r in removed),
        highlight=False,
    )
    console.print(runs.summary(), highlight=False)


@handled
@with_options(*(n for n in ENVIRONMENT if n != "runtime"))
def verify_command(
    report: Annotated[Path, typer.Argument(help="report.json of a passed run (in its --out folder).")],
    trust_config: Annotated[
        bool,
        typer.Option("--trust-config", help="Let the report name code to run (arch, code, a pickled module)."),
    ] = False,
    **flags,
):
    """Make the recorded conversion again (no cache) and check every file's sha256: exit 0 only when all match."""
    from convertctl.run.verify import verify

    opts = options_of(flags)
    with Progress() as say:
        verdict = verify(report, lambda name: runtime_for(opts, say, name), say, trust_config)
    table = Table(show_edge=False)
    for column in ("file", "recorded", "in the folder", "re-run", ""):
        table.add_column(column, no_wrap=column == "file")
    for f in verdict.files:
        mark = "[green]✓ match[/]" if f.ok else f"[red]✗ {term(f.problem())}[/]"
        table.add_row(
            term(f.name), term(f.recorded[:12] or "-"), term(f.on_disk[:12] or "missing"), term(f.rebuilt[:12] or "-"),
            mark,
        )  # fmt: skip
    console.print(table)
    for problem in verdict.inputs:
        console.print(f"[red]input {term(problem)}[/]: not re-run", highlight=False)
    if verdict.rerun is not None and verdict.rerun.status != "passed":
        console.print(f"[red]the re-run failed:[/] {term(verdict.rerun.failure)}", highlight=False)
    if verdict.ok:
        console.print(f"[bold green]VERIFIED: {len(verdict.files)} file(s) reproduced byte for byte[/]")
        raise typer.Exit(0)
    bad = [f.name for f in verdict.files if not f.ok]
    console.print(f"[bold red]NOT VERIFIED: {term(', '.join(bad) or 'inputs changed')}[/]", highlight=False)
    raise typer.Exit(EXIT_VALIDATION)
