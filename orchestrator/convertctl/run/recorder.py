"""What happened, written down: the report's environment and stage rows, and
the manifest's record of each step (its code, environment, request as
hashes, cache key and outputs). Nothing here runs or decides anything."""

from __future__ import annotations

from convertctl.config.catalog import Variant
from convertctl.report.model import Report
from convertctl.run import manifest
from convertctl.runtimes.base import Prepared, Runtime, StageRun, Step


class Recorder:
    def __init__(self, report: Report, runtime: Runtime):
        self.report, self.runtime = report, runtime

    def prepared(self, prepared: Prepared) -> None:
        self.report.environments.append(
            {
                "variant": prepared.variant.name,
                "stage": prepared.variant.stage,
                "location": prepared.location,
                "created": prepared.created,
                "seconds": round(prepared.seconds, 1),
            }
        )

    def environment(self, variant: Variant) -> dict:
        """Identity and `pip freeze` of an environment, once per run."""
        envs = self.report.manifest.setdefault("environments", {})
        if variant.name not in envs:
            envs[variant.name] = manifest.environment(self.runtime, variant)
        return envs[variant.name]

    def stage(self, step: Step, mode: str | None, result: StageRun, saved: float | None) -> None:
        """One row of report.stages; saved: the seconds a cache hit saved (None: it ran)."""
        self.report.stages.append(
            {
                "stage": step.stage,
                "variant": step.variant.name,
                "work": step.work,
                "script": step.script_rel,
                "mode": mode,
                "status": "ok" if result.ok else "failed",
                "seconds": round(result.seconds, 2),
                "cached": saved is not None,
                "saved_seconds": round(saved or 0.0, 2),
                "peak_rss_mb": result.peak_rss_mb,
                "versions": result.result.get("versions", {}),
                "python": result.result.get("python", ""),
                "error": result.error,
                "log_tail": [] if result.ok else result.log_tail,
            }
        )

    def step(self, step: Step, mode: str | None, parts: dict, key: str, cached: bool, env: dict, outputs: dict) -> None:
        """The manifest's record of a step: enough to make its files again."""
        m = self.report.manifest
        m.setdefault("environments", {}).setdefault(step.variant.name, env)
        m.setdefault("stages", []).append(
            {
                "work": step.work,
                "stage": step.stage,
                "variant": step.variant.name,
                "mode": mode,
                "script": step.script_rel,
                "code": parts["code"],
                "environment": step.variant.name,
                "request": parts["request"],
                "key": key,
                "cached": cached,
                "outputs": {rel: f["sha256"] for rel, f in sorted(outputs.items()) if rel not in manifest.NOT_OUTPUTS},
            }
        )
