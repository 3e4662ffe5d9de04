"""`convertctl images`: the catalog's Docker images, listed and built."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from convertctl.catalog import STAGES, load_catalog
from convertctl.errors import UsageError
from convertctl.pipconfig import settings_from_flags
from convertctl.ui import BaseImage, CaBundle, IndexUrl, Progress, Wheelhouse, console, handled

images_app = typer.Typer(no_args_is_help=True, help="Docker stage images.")


def _builder(base_image: str = "", ca_bundle: Path | None = None, index_url: str = "", wheelhouse: Path | None = None):
    from convertctl.runtimes.docker import require_client
    from convertctl.runtimes.images import ImageBuilder

    settings = settings_from_flags(ca_bundle, index_url, wheelhouse)
    return ImageBuilder(require_client(), settings, base_image)


@images_app.command("list")
@handled
def images_list():
    """Every catalog variant: image tag, built or not, current or stale, size."""
    builder = _builder()
    table = Table()
    for column in ("variant", "python", "tag", "built", "size", "pins"):
        # names and tags are copied from here into commands: never cut them
        table.add_column(column, no_wrap=column in ("variant", "tag"), overflow="fold")
    for v in load_catalog().variants.values():
        d = builder.describe(v)
        size = f"{d['size_bytes'] / 1e6:.0f} MB" if d["built"] else "-"
        table.add_row(v.name, v.python, v.tag, d["state"], size, " ".join(f"{k}={val}" for k, val in v.pins.items()))
    console.print(table)


@images_app.command("build")
@handled
def images_build(
    stage: Annotated[list[str] | None, typer.Option("--stage", help="Only these stages.")] = None,
    variant: Annotated[list[str] | None, typer.Option("--variant", help="Only these variants (name or tag).")] = None,
    base_image: BaseImage = "",
    ca_bundle: CaBundle = None,
    pip_index_url: IndexUrl = "",
    wheelhouse: Wheelhouse = None,
    force: Annotated[bool, typer.Option("--force", help="Build even when current.")] = False,
):
    """Build (or refresh) stage images; current ones are left alone."""
    catalog = load_catalog()
    for s in stage or []:
        if s not in STAGES:
            raise UsageError(f"--stage {s!r}: choose from {', '.join(STAGES)}")
    chosen = [catalog.get(v) for v in variant] if variant else list(catalog.variants.values())
    chosen = [v for v in chosen if not stage or v.stage in stage]
    builder = _builder(base_image, ca_bundle, pip_index_url, wheelhouse)
    with Progress() as say:
        results = [builder.ensure(v, say, force=force) for v in chosen]
    for r in results:
        how = "pulled" if r.location in builder.pulled else "built"
        verb = f"{how} in {r.seconds:.0f}s" if r.created else "already current"
        console.print(f"{r.location}: {verb}", highlight=False)
