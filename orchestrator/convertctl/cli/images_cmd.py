"""`convertctl images`: the catalog's Docker images, listed and built."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from convertctl.cli.params import with_options
from convertctl.cli.ui import Progress, console, err, handled, index_settings, options_of
from convertctl.config.catalog import STAGES, load_catalog
from convertctl.config.options import ENVIRONMENT
from convertctl.errors import EnvironmentProblem, UsageError
from convertctl.report.text import term, visible

images_app = typer.Typer(no_args_is_help=True, help="Docker stage images.")

# Columns of `images list`; names, tags and states are copied from here into
# commands and scripts, so they are never wrapped or cut.
COLUMNS = ("variant", "python", "tag", "built", "size", "pins")
WHOLE = ("variant", "python", "tag", "built", "size")


def _builder(base_image: str = "", settings=None):
    from convertctl.runtimes.docker import require_client
    from convertctl.runtimes.images import ImageBuilder
    from convertctl.store.pipconfig import IndexSettings

    return ImageBuilder(require_client(), settings or IndexSettings(), base_image)


def image_rows(builder) -> list[dict]:
    """One row per catalog variant: what `images list` prints, and its --json.
    Without a Docker daemon (builder None): the catalog alone, state unknown."""
    rows = []
    for v in load_catalog().variants.values():
        d = builder.describe(v) if builder else {"ref": "", "state": "unknown", "size_bytes": 0}
        rows.append(
            {
                "variant": v.name,
                "stage": v.stage,
                "python": v.python,
                "tag": v.tag,
                "ref": d["ref"],  # the local image reference of this exact build
                "key": builder.key(v) if builder else "",  # the org.convertctl.key label a current image carries
                "state": d["state"],  # not built | current | stale
                "size_bytes": d["size_bytes"],
                "pins": dict(v.pins),
            }
        )
    return rows


def _cells(row: dict) -> list[str]:
    size = f"{row['size_bytes'] / 1e6:.0f} MB" if row["state"] not in ("not built", "unknown") else "-"
    pins = " ".join(f"{k}={val}" for k, val in row["pins"].items())
    return [row["variant"], row["python"], row["tag"], row["state"], size, pins]


@images_app.command("list")
@handled
def images_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON: variant, stage, python, tag, ref, key, state, size_bytes, pins.")
    ] = False,
):
    """Every catalog variant: image tag, built or not, current or stale, size.
    Without a Docker daemon, the catalog alone (state: unknown)."""
    try:
        builder = _builder()
    except EnvironmentProblem as exc:  # no daemon: still the catalog
        builder, why = None, exc.message
    rows = image_rows(builder)
    if builder is None:
        err.print(f"{term(why)}: whether each image is built is unknown", highlight=False)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))  # verbatim: no wrapping, no markup
        return
    cells = [_cells(r) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(COLUMNS, *cells)]
    # The narrowest table that cuts nothing: whole columns at full width, pins
    # folded at their longest word; each column adds 2 of padding and a border.
    pins_min = max((len(w) for c in cells for w in c[-1].split()), default=4)
    if sum(widths[:-1]) + max(pins_min, 4) + 3 * len(COLUMNS) + 1 <= console.width:
        table = Table()
        for column in COLUMNS:
            table.add_column(column, no_wrap=column in WHOLE, overflow="fold")
        for c in cells:
            table.add_row(*map(term, c))
        console.print(table)
        return
    # Too narrow for a table without cutting a name: aligned plain lines,
    # never wrapped (a long line runs on rather than breaking a tag).
    for line in [list(COLUMNS), *cells]:
        text = "  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip()
        console.print(visible(text), soft_wrap=True, highlight=False, markup=False)


@images_app.command("build")
@handled
@with_options(*(n for n in ENVIRONMENT if n != "runtime"))
def images_build(
    stage: Annotated[list[str] | None, typer.Option("--stage", help="Only these stages.")] = None,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Only these variants (name or tag).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Build even when current.")] = False,
    **flags,
):
    """Build (or refresh) stage images; current ones are left alone."""
    catalog = load_catalog()
    for s in stage or []:
        if s not in STAGES:
            raise UsageError(f"--stage {s!r}: choose from {', '.join(STAGES)}")
    chosen = [catalog.get(v) for v in variant] if variant else list(catalog.variants.values())
    chosen = [v for v in chosen if not stage or v.stage in stage]
    opts = options_of(flags)
    builder = _builder(opts.base_image or "", index_settings(opts))
    with Progress() as say:
        results = [builder.ensure(v, say, force=force) for v in chosen]
    for r in results:
        how = "pulled" if r.location in builder.pulled else "built"
        verb = f"{how} in {r.seconds:.0f}s" if r.created else "already current"
        console.print(f"{term(r.location)}: {verb}", highlight=False)


@images_app.command("prune")
@handled
def images_prune(
    everything: Annotated[
        bool, typer.Option("--all", help="Every image convertctl built, the ones this install uses too.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
):
    """Remove the images convertctl built that no catalog variant of this install
    uses (older stage code, locks or bases), and untagged build stages. Images
    of other checkouts with other stage code count as unused."""
    from convertctl.runtimes import prune
    from convertctl.runtimes.images import build_cache_tag

    builder = _builder()
    variants = load_catalog().variants.values()
    in_use = {builder.ref(v) for v in variants} | {build_cache_tag(v) for v in variants}
    doomed = prune.plan(builder.client, in_use, everything)
    if not doomed:
        console.print("nothing to prune", highlight=False)
        return
    if dry_run:
        for d in doomed:
            console.print(f"would remove {_named(d)} ({d.size_bytes / 1e9:.2f} GB): {d.why}", highlight=False)
        console.print(f"{len(doomed)} image(s), {sum(d.size_bytes for d in doomed) / 1e9:.2f} GB", highlight=False)
        return
    removed, kept = prune.remove(builder.client, doomed)
    for d in removed:
        console.print(f"removed {_named(d)}: {d.why}", highlight=False)
    for d, why in kept:
        err.print(f"kept {_named(d)}: {term(why)}", highlight=False)
    # Sizes overlap where images share layers: the sum is an upper bound of what was freed.
    console.print(
        f"removed {len(removed)} image(s) of up to {sum(d.size_bytes for d in removed) / 1e9:.2f} GB", highlight=False
    )


def _named(d) -> str:
    return term(", ".join(d.tags) if d.tags else f"untagged {d.id.removeprefix('sha256:')[:12]}")
