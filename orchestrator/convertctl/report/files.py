"""The report's files beside report.json and report.md: report.html and a
Model Explorer overlay per file with per-layer errors. Written into the run
directory (never through a link a stage left); placement promotes them."""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.report.model import Report
from convertctl.store import safefs


def write(run_dir: Path, report: Report, stem: str) -> dict:
    """Write them; {name in the run directory: name in --out}."""
    from convertctl.report.html import render
    from convertctl.report.overlay import overlays

    # Rendered from the report as saved (JSON sorts its keys), so that
    # `convertctl report show --html report.json` prints these same bytes.
    saved = Report(**json.loads(json.dumps(report.to_dict(), sort_keys=True)))
    texts = {"report.html": render(saved), **overlays(report, stem)}
    for name, text in texts.items():
        safefs.write_atomic(run_dir, name, text)
    return {name: name for name in texts}


def names(report: Report, stem: str) -> set:
    """The names write() gives, known before it runs."""
    from convertctl.report.overlay import node_data, overlay_name

    return {"report.html"} | {overlay_name(stem, a["mode"]) for a in report.artifacts if node_data(a) is not None}
