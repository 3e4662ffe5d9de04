"""Running steps through a runtime and writing down what happened: each
environment once (created or found), each step's status, time, versions and
last log lines. The ladders decide what to run; this only runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.catalog import Variant
from convertctl.errors import EnvironmentProblem
from convertctl.report import Report
from convertctl.runtimes.base import Runtime, Say, StageRun, Step


class Steps:
    def __init__(self, runtime: Runtime, run_dir: Path, report: Report, say: Say):
        self.runtime, self.run_dir, self.report, self.say = runtime, run_dir, report, say
        self._ready: dict = {}  # variant name -> None (ready) or the EnvironmentProblem met

    def prepare(self, variant: Variant) -> None:
        """Make the variant's environment ready once per run; a failure is
        remembered and raised again for every step that needs it."""
        if variant.name not in self._ready:
            try:
                for prepared in self.runtime.prepare([variant], self.say):
                    self.report.environments.append(
                        {
                            "variant": prepared.variant.name,
                            "stage": prepared.variant.stage,
                            "location": prepared.location,
                            "created": prepared.created,
                            "seconds": round(prepared.seconds, 1),
                        }
                    )
                self._ready[variant.name] = None
            except EnvironmentProblem as exc:
                self._ready[variant.name] = exc
        if self._ready[variant.name] is not None:
            raise self._ready[variant.name]

    def run(self, step: Step, mode: str | None = None) -> StageRun:
        self.prepare(step.variant)
        label = f"{step.stage}: running in {step.variant.name}" + (f" ({mode})" if mode else "")
        self.say(label)
        result = self.runtime.run(step, self.run_dir, self.say)
        self.report.stages.append(
            {
                "stage": step.stage,
                "variant": step.variant.name,
                "work": step.work,
                "script": step.script_rel,
                "mode": mode,
                "status": "ok" if result.ok else "failed",
                "seconds": round(result.seconds, 2),
                "versions": result.result.get("versions", {}),
                "python": result.result.get("python", ""),
                "error": result.error,
                "log_tail": [] if result.ok else result.log_tail,
            }
        )
        return result

    def outputs(self, rel: str) -> dict | None:
        """An npz of stacked outputs in the run directory, or None."""
        path = self.run_dir / rel
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
