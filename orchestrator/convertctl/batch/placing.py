"""A conversion made on another machine, put into --out/NAME here as a
local run puts its own (run/placement.py): a passed run's files staged in a
run directory of this --out and promoted as one set, report.json last,
files of an earlier run that this one did not make moved aside; a failed
run's kept directory put back under OUT/.convertctl/runs/ (--out itself
left alone). The report's paths are the node's: they are made the
driver's, and the report checked as `report show` checks one."""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.batch.remote import rewrite, write_tree
from convertctl.report.model import load_report
from convertctl.report.render import markdown
from convertctl.run.placement import out_names
from convertctl.store import rundir, safefs

KEPT = ".convertctl/runs/"


def place_files(options, out: Path, files: dict, mapping: dict, passed: bool) -> None:
    if not passed:
        kept = {name: blob for name, blob in files.items() if name.startswith(KEPT)}
        write_tree(out, kept)
        for name in kept:
            if name.endswith("/report.json"):
                _fix_report(out, name, mapping)
        return
    placed = {name: blob for name, blob in files.items() if not name.startswith(".convertctl/")}
    if "report.json" not in placed:
        raise ValueError("a passed run sent back no report.json")
    staging = rundir.create_run_dir(out)
    try:
        write_tree(staging, placed)
        report = _fix_report(staging, "report.json", mapping)
        made = {name.split("/", 1)[0] for name in placed}
        stale = rundir.stale_files(out, made, rundir.earlier_outputs(out) | out_names(options, report))
        aside = rundir.previous_dir(out) if stale else None
        if stale:
            report.stale = [{"name": n, "moved_to": str(aside / n)} for n in stale]
            report.save(staging / "report.json")
            safefs.write_atomic(staging, "report.md", markdown(report))
        rundir.promote(staging, out, {name: name for name in sorted(made)}, stale, aside)
    finally:
        rundir.discard(staging)


def _fix_report(root: Path, name: str, mapping: dict):
    """The report at root/name with the node's paths made the driver's; its .md made again."""
    path = root / safefs.rel(name)
    data = rewrite(json.loads(safefs.read_bytes(root, name)), mapping)
    safefs.write_atomic(root, name, json.dumps(data, indent=2, sort_keys=True) + "\n")
    report = load_report(path)
    safefs.write_atomic(root, str(Path(name).with_name("report.md")), markdown(report))
    return report
