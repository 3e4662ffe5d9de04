"""What the ladders share during one run, built once by the pipeline and
frozen: the options, the catalog, the runner and comparer, the report being
filled, and the request fields every stage gets. The ladders read it; they
never change it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convertctl.checks import validate
from convertctl.config.catalog import Catalog
from convertctl.config.options import Options
from convertctl.config.tolerance import Tolerance
from convertctl.report.model import Report
from convertctl.run.comparer import Comparer
from convertctl.run.plan import Plan
from convertctl.run.protocol import InputsPart, LoadPart
from convertctl.run.runner import Runner
from convertctl.run.selective import Int8Options

CALIBRATION = "inputs/calibration.npz"


@dataclass(frozen=True)
class Context:
    options: Options
    catalog: Catalog
    plan: Plan
    runner: Runner
    comparer: Comparer
    report: Report
    int8: Int8Options
    specs: tuple  # the resolved InputSpecs
    request: InputsPart  # what every model-facing request carries
    model_request: LoadPart  # how a stage loads the PyTorch model (arch, code_dir...)
    labels: Any = None  # --eval-data's labels (numpy), or None

    @property
    def run_dir(self) -> Path:
        return self.runner.run_dir

    def tolerance(self, mode: str) -> Tolerance:
        return validate.tolerance_for(mode, self.options.tolerances())

    def max_drop(self, mode: str) -> float:
        return self.options.max_drop_for(mode)

    @property
    def input_shapes(self) -> dict:
        return {s.name: list(s.shape) for s in self.specs}

    @property
    def input_dtypes(self) -> dict:
        return {s.name: s.dtype for s in self.specs}

    def quantize_fields(self) -> dict:
        """What every quantize request carries besides the mode."""
        o = self.options
        return {
            "calibration": CALIBRATION,
            "allow_flex": o.allow_flex,
            # LiteRT times the final files (measure.py); the converting TF only where there is no such env
            "latency_runs": 0 if self.plan.measure else o.latency_runs,
            "threads": o.threads,
        }
