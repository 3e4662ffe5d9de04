"""What a finished run leaves in --out. A passed run places its set there:
one .tflite per mode, report.json, report.md and report.html (and a Model
Explorer overlay per file with per-layer errors), and with
--keep-intermediates the ONNX file and the SavedModel. Files an earlier run
of this model (or the earlier report in --out) left there that this run did
not make are moved to OUT/.convertctl/previous/<time>/ with the report that
described them, and listed in the new report: --out holds exactly what its
report describes. A failed run leaves --out alone and keeps its run dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

from convertctl.config.modes import NAMES as MODES
from convertctl.report import files as report_files
from convertctl.report.model import Report
from convertctl.report.overlay import overlay_name
from convertctl.store import rundir, runs, safefs
from convertctl.store.digests import Hasher


def place(opts, run_dir: Path, report: Report, hasher: Hasher | None = None) -> None:
    from convertctl.report.render import markdown

    out, ok = Path(opts.out), report.status == "passed"
    files = out_files(opts, run_dir, report)
    hasher = hasher or Hasher()  # the run's: files restored from the cache are hashed already
    for art in report.artifacts:
        if "file" in art:
            art["sha256"] = hasher.inside(run_dir, art["file"])  # a name a stage gave: checked, never followed
            art["path"] = str(out / files[art["file"]]) if ok else str(run_dir / art["file"])
    aside = None
    if ok:
        report.run_dir = str(run_dir) if opts.keep_run else ""  # kept: convertctl quantize --reference-run reads it
        report.manifest["outputs"] = {name: hasher.inside(run_dir, rel) for rel, name in files.items()}
        made = set(files.values()) | report_files.names(report, Path(opts.model).stem)
        stale = rundir.stale_files(out, made, rundir.earlier_outputs(out) | out_names(opts, report))
        if stale:
            aside = rundir.previous_dir(out)
            report.stale = [{"name": n, "moved_to": str(aside / n)} for n in stale]
    else:
        runs.remember(run_dir)
    report.save(run_dir / "report.json")
    md = markdown(report)
    safefs.write_atomic(run_dir, "report.md", md)
    beside = report_files.write(run_dir, report, Path(opts.model).stem)  # report.html, Model Explorer overlays
    if ok:
        everything = {**files, **beside, "report.md": "report.md", "report.json": "report.json"}
        rundir.promote(run_dir, out, everything, [s["name"] for s in report.stale], aside)
        if not opts.keep_run:
            rundir.discard(run_dir)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(md + "\n")


def out_files(opts, run_dir: Path, report: Report) -> dict:
    """{run-dir source: name in --out}: one .tflite per mode, and with
    --keep-intermediates the ONNX file and SavedModel the files came from."""
    stem = Path(opts.model).stem
    files = {a["file"]: f"{stem}_{a['mode']}.tflite" for a in report.artifacts if "file" in a}
    if not getattr(opts, "keep_intermediates", False) or report.status != "passed":
        return files
    variants = sorted({a["variant"] for a in report.artifacts if a.get("variant")})
    for variant in variants:
        work = f"convert/{variant}"
        tag = "" if len(variants) == 1 else f"_{variant}"
        request, result = read_json(run_dir, f"{work}/request.json"), read_json(run_dir, f"{work}/result.json")
        for rel, name in ((request.get("onnx"), f"{stem}{tag}.onnx"), (result.get("saved_model"), None)):
            if rel and safefs.kind(run_dir, safefs.rel(rel, "an intermediate file")):
                files[rel] = name or f"{stem}{tag}_saved_model"
    return files


def out_names(opts, report: Report) -> set:
    """Every name a run of this model may place in --out."""
    stem = Path(opts.model).stem
    names = {f"{stem}_{m}.tflite" for m in MODES} | {f"{stem}.onnx", f"{stem}_saved_model"}
    names |= {overlay_name(stem, m) for m in MODES}
    for entry in report.ladder:
        if entry.get("stage") == "convert":
            names |= {f"{stem}_{entry['variant']}.onnx", f"{stem}_{entry['variant']}_saved_model"}
    return names


def read_json(root: Path, name: str) -> dict:
    try:
        data = json.loads(safefs.read_bytes(root, name))
    except safefs.Unsafe:
        raise
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
