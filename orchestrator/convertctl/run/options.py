"""The checks of a run's options that need the runtime: a pinned variant it
cannot make."""

from __future__ import annotations

from convertctl.config.options import Options


def preflight(rt, catalog, opts: Options) -> None:
    """A variant pinned with --export-image or --converter, the only rung of
    its stage, that this runtime cannot make (its Python is missing locally)
    fails now, with what to use instead, not after the stages before it ran.
    Exit 5: the flags are valid (the variant works on Docker); the machine
    lacks an interpreter, like any environment that cannot be built."""
    for stage, choice in (("export", opts.export_image), ("convert", opts.converter)):
        if choice and choice != "auto":
            rungs = catalog.pick(rt.name, stage, choice)
            if len(rungs) == 1:
                rt.preflight(rungs + (catalog.quantizers(rungs[0]) if stage == "convert" else []))
