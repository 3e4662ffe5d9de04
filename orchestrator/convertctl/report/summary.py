"""One mode's outcome at a glance, read from a report: what report.html's
summary cards and the Python API's Result.files show (one reading of the
report for both). Plain data; nothing here imports numpy or renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convertctl.report.model import Report


@dataclass(frozen=True)
class ModeFile:
    """The file a run made (or tried to make) for one mode."""

    mode: str
    passed: bool
    problem: str  # why not, in one line ("" when passed)
    path: str  # in --out when the run passed, else in the kept run directory
    sha256: str
    size_bytes: int
    variant: str  # the convert rung that made it
    family: str
    latency_ms: float | None  # LiteRT, XNNPACK, 1 thread, median
    latency_runtime: str
    accuracy: float | None  # % on --eval-data (or the held-out set), when measured
    accuracy_drop: float | None
    max_accuracy_drop: float | None
    agreement: float | None  # top-1 agreement with the reference on the sample inputs (0..1)
    cosine: float | None
    max_abs: float | None
    checks: tuple = ()  # the report's tflite checks of this file (sample inputs, batch N)
    layer_errors: dict = field(default_factory=dict)
    float_layers: tuple = ()  # layers kept float (int8 --int8-float-layers)
    selective: dict = field(default_factory=dict)
    accuracy_step: float | None = None  # one sample of the accuracy data, in points

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else ""


def _latency(art: dict) -> tuple[float | None, str]:
    lat = art.get("latency") or {}
    for c in lat.get("configs", []):
        if c.get("xnnpack") and c.get("threads") == 1:
            return c.get("median_ms"), lat.get("runtime", "LiteRT")
    if art.get("latency_ms"):  # timed by the converting TF (no measure environment)
        return art["latency_ms"].get("median"), "the converting TensorFlow"
    return None, ""


def file_checks(checks: list, art: dict) -> list:
    """The tflite checks of this artifact's file: by the file where the report
    names it (a rung may try two quantizers for a mode, and the first one's file
    fails), else by rung and mode (reports written before checks named it)."""
    same = [
        c
        for c in checks
        if c.get("stage") == "tflite" and c.get("mode") == art.get("mode") and c.get("variant") == art.get("variant")
    ]
    return [c for c in same if not c.get("file") or not art.get("file") or c["file"] == art["file"]]


def sample_check(checks: list) -> dict | None:
    """Of a file's checks, the sample inputs' one: fresh inputs' and batch N's
    are recorded beside it, and their failures are in its own."""
    return next((c for c in checks if c.get("input_set") not in ("batch", "fresh")), None)


def accuracy_step(acc: dict) -> float:
    """The smallest accuracy change the data can show, in points: one sample
    (a report written before it said so has its sample count)."""
    return float(acc.get("step") or (100.0 / acc["samples"] if acc.get("samples") else 0.0))


def mode_file(report: Report, art: dict) -> ModeFile:
    mode = art.get("mode", "")
    checks = file_checks(report.checks, art)
    main = sample_check(checks)
    acc = ((report.accuracy or {}).get("modes") or {}).get(mode)
    problem = ""
    if art.get("status") != "ok":
        problem = str(art.get("error") or "no file")
    elif main is None:
        problem = "not compared with the reference"
    else:
        failed = [c for c in checks if c.get("status") == "failed"]
        if failed:
            problem = f"outside tolerance: {(failed[0].get('failures') or ['?'])[0]}"
        elif acc is not None and acc.get("status") != "passed":
            problem = f"accuracy {acc['accuracy']:.2f}% dropped {acc['drop']:.2f} points (budget {acc['max_drop']})"
    outs = (main or {}).get("outputs") or [{}]
    first = outs[0]
    latency, runtime = _latency(art)
    sel = art.get("selective") or {}
    return ModeFile(
        mode=mode,
        passed=not problem,
        problem=problem,
        path=str(art.get("path", "")),
        sha256=str(art.get("sha256", "")),
        size_bytes=int(art.get("size_bytes") or 0),
        variant=str(art.get("variant", "")),
        family=str(art.get("family", "")),
        latency_ms=latency,
        latency_runtime=runtime,
        accuracy=acc.get("accuracy") if acc else None,
        accuracy_drop=acc.get("drop") if acc else None,
        max_accuracy_drop=acc.get("max_drop") if acc else None,
        agreement=first.get("top1"),
        cosine=min((o["cosine"] for o in outs if o.get("cosine") is not None), default=None),
        max_abs=max((o["max_abs"] for o in outs if o.get("max_abs") is not None), default=None),
        checks=tuple(checks),
        layer_errors=dict(art.get("layer_errors") or {}),
        float_layers=tuple(sel.get("float_layers") or ()),
        selective=dict(sel),
        accuracy_step=accuracy_step(report.accuracy or {}) if acc else None,
    )


def mode_files(report: Report) -> list[ModeFile]:
    """One per artifact, in the order the modes were asked for."""
    return [mode_file(report, a) for a in report.artifacts]
