"""Running steps through a runtime and writing down what happened: each
environment once (created or found), each step's status, time, versions and
last log lines, and its manifest record. The ladders decide what to run;
this only runs it, or takes its outputs from the stage cache when the same
step (same code, environment, parameters and input bytes) ran before."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy
from convertctl.checks import validate
from convertctl.checks.validate import Check, Tolerance
from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem
from convertctl.report.model import Report
from convertctl.run import manifest
from convertctl.runtimes.base import Runtime, Say, StageRun, Step, read_result, write_request
from convertctl.store import rundir, safefs
from convertctl.store.cache import StageCache, step_key
from convertctl.store.digests import Hasher, sha256_json

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy


class Steps:
    def __init__(
        self,
        runtime: Runtime,
        run_dir: Path,
        report: Report,
        say: Say,
        cache: StageCache | None = None,
        hasher: Hasher | None = None,
    ):
        self.runtime, self.run_dir, self.report, self.say = runtime, run_dir, report, say
        self.cache = cache
        self.hasher = hasher or Hasher()
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
        parts = self._describe(step)
        # A latency measurement is no step verify could reproduce (timings vary), so it
        # stays out of the manifest; the cache may replay it for the same file bytes,
        # environment and settings (this machine's store: --no-cache measures afresh).
        measuring = step.stage == "measure"
        key = step_key(parts)
        hit = self.cache.restore(key, step.work, self.hasher, root=self.run_dir) if self.cache and key else None
        if hit is not None:
            self.say(f"{step.stage}: cached ({step.variant.name}{', ' + mode if mode else ''})")
            write_request(self.run_dir, step.work, step.request)
            result = StageRun(step.stage, step.variant, 0, read_result(self.run_dir, step.work), hit.seconds)
            env, outputs = hit.entry.get("environment", {}), hit.entry["files"]
        else:
            self.prepare(step.variant)
            label = f"{step.stage}: running in {step.variant.name}" + (f" ({mode})" if mode else "")
            self.say(label)
            result = self.runtime.run(step, self.run_dir, self.say)
            unsafe = rundir.left_unsafe(self.run_dir)
            if unsafe:  # nothing of this step is used, stored or followed
                result.exit_code, result.result = result.exit_code or 3, {"status": "failed", "error": unsafe}
            env = self._environment(step.variant)
            outputs = self._store(step, key, mode, result, env)
        self.report.stages.append(
            {
                "stage": step.stage,
                "variant": step.variant.name,
                "work": step.work,
                "script": step.script_rel,
                "mode": mode,
                "status": "ok" if result.ok else "failed",
                "seconds": round(result.seconds, 2),
                "cached": hit is not None,
                "saved_seconds": round(hit.entry.get("seconds", 0.0), 2) if hit else 0.0,
                "peak_rss_mb": result.peak_rss_mb,
                "versions": result.result.get("versions", {}),
                "python": result.result.get("python", ""),
                "error": result.error,
                "log_tail": [] if result.ok else result.log_tail,
            }
        )
        if not measuring:
            self._record(step, mode, parts, key, hit is not None, env, outputs)
        return result

    # -- cache and manifest -------------------------------------------------
    def _describe(self, step: Step) -> dict:
        """What the cache key is made of: the step's code, its environment's
        identity, and its request with every file it names as a sha256."""
        return {
            "stage": step.stage,
            "variant": step.variant.name,
            "script": step.script_rel,
            "work": step.work,
            "code": manifest.code_hash(step),
            "environment": self.runtime.identity(step.variant),
            "request": manifest.request_params(step.request, self.run_dir, self.hasher),
        }

    def _environment(self, variant: Variant) -> dict:
        """Identity and `pip freeze` of an environment, once per run."""
        envs = self.report.manifest.setdefault("environments", {})
        if variant.name not in envs:
            envs[variant.name] = manifest.environment(self.runtime, variant)
        return envs[variant.name]

    def _store(self, step: Step, key: str, mode, result: StageRun, env: dict) -> dict:
        """Keep a step that succeeded; {file: {sha256, size}} of what it wrote."""
        work_dir = self.run_dir / step.work
        if self.cache and key and result.ok:
            meta = {"stage": step.stage, "variant": step.variant.name, "work": step.work, "mode": mode}
            entry = self.cache.put(
                key,
                work_dir,
                {**meta, "seconds": round(result.seconds, 2), "environment": env, "result": result.result},
            )
            if entry is not None:
                return entry["files"]
        if not work_dir.is_dir():
            return {}
        return {rel: {"sha256": digest} for rel, digest in manifest.work_outputs(work_dir, self.hasher).items()}

    def _record(self, step: Step, mode, parts: dict, key: str, cached: bool, env: dict, outputs: dict) -> None:
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

    def compare(self, stage: str, mode, input_set: str, ref_rel: str, got_rel: str, tol: Tolerance) -> Check | None:
        """validate.compare of two npz files of the run directory (None when
        either is missing), remembered by their bytes, the tolerance and the
        comparing code: a rerun whose steps all come from the cache compares
        (and loads) nothing again."""
        if not (safefs.is_file(self.run_dir, ref_rel) and safefs.is_file(self.run_dir, got_rel)):
            return None
        ref, got = self.run_dir / ref_rel, self.run_dir / got_rel
        memo = self.cache.memo if self.cache else None
        key = ""
        if memo is not None:
            key = sha256_json(
                {
                    "compare": [stage, mode, input_set],
                    "ref": self.hasher.file(ref),
                    "got": self.hasher.file(got),
                    "tolerance": asdict(tol),
                    "code": validate.code_hash(),
                }
            )
            known = memo.recall("compare", key)
            if known is not None:
                try:
                    return Check(**known)
                except TypeError:  # written by another version of Check
                    pass
        check = validate.compare(stage, mode, input_set, self.outputs(ref_rel) or {}, self.outputs(got_rel) or {}, tol)
        if memo is not None:
            memo.keep("compare", key, check.__dict__)
        return check

    def bad_path(self, name, what: str = "file") -> str:
        """'' when a stage's result names a regular file (or folder) inside the
        run directory, else why not: such names are data, checked before use."""
        try:
            there = safefs.kind(self.run_dir, safefs.rel(name, f"the stage's {what}"))
        except safefs.Unsafe as exc:
            return str(exc)
        return "" if there else f"the stage's {what} {name!r} does not exist"

    def outputs(self, rel: str) -> dict | None:
        """An npz of stacked outputs in the run directory, or None."""
        if not safefs.is_file(self.run_dir, rel):
            return None
        with safefs.open_read(self.run_dir, rel) as f, np.load(f, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
