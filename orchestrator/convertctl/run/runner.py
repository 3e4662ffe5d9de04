"""Running steps: each environment made ready once per run, the stage cache
asked first (a step whose code, environment, parameters and input bytes were
seen before gets its outputs back), the runtime otherwise. What a stage hands
back is data: a link it left, a result in another contract version or with
fields of the wrong type fail the step. The recorder writes down what
happened; the ladders decide what to run."""

from __future__ import annotations

from pathlib import Path

from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem, MachineProblem
from convertctl.run import manifest, protocol
from convertctl.run.recorder import Recorder
from convertctl.runtimes.base import Runtime, Say, StageRun, Step, machine_problem, read_result, write_request
from convertctl.store import rundir, safefs
from convertctl.store.cache import StageCache, step_key
from convertctl.store.digests import Hasher


class Runner:
    def __init__(
        self,
        runtime: Runtime,
        run_dir: Path,
        say: Say,
        recorder: Recorder,
        cache: StageCache | None = None,
        hasher: Hasher | None = None,
    ):
        self.runtime, self.run_dir, self.say, self.recorder = runtime, run_dir, say, recorder
        self.cache = cache
        self.hasher = hasher or Hasher()
        self._ready: dict = {}  # variant name -> None (ready) or the EnvironmentProblem met

    def prepare(self, variant: Variant) -> None:
        """Make the variant's environment ready once per run; a failure is
        remembered and raised again for every step that needs it."""
        if variant.name not in self._ready:
            try:
                for prepared in self.runtime.prepare([variant], self.say):
                    self.recorder.prepared(prepared)
                self._ready[variant.name] = None
            except EnvironmentProblem as exc:
                self._ready[variant.name] = exc
        if self._ready[variant.name] is not None:
            raise self._ready[variant.name]

    def run(self, step: Step, mode: str | None = None) -> StageRun:
        parts = self.describe(step)
        # A latency measurement is no step verify could reproduce (timings vary), so it
        # stays out of the manifest; the cache may replay it for the same file bytes,
        # environment and settings (this machine's store: --no-cache measures afresh).
        measuring = step.speaks == "measure"  # a timing; LiteRT's run of a file (judge.py) is a step like any other
        key = step_key(parts)
        hit = self.cache.restore(key, step.work, self.hasher, root=self.run_dir) if self.cache else None
        if hit is not None:
            self.say(f"{step.stage}: cached ({step.variant.name}{', ' + mode if mode else ''})")
            write_request(self.run_dir, step.work, step.request)
            result = StageRun(step.stage, step.variant, 0, read_result(self.run_dir, step.work), hit.seconds)
            env, outputs = hit.entry.get("environment", {}), hit.entry["files"]
        else:
            self.prepare(step.variant)
            self.say(f"{step.stage}: running in {step.variant.name}" + (f" ({mode})" if mode else ""))
            self.runtime.stage_in(step, self.run_dir)
            result = self.runtime.run(step, self.run_dir, self.say)
            self.runtime.stage_out(step, self.run_dir)
            self._refuse_what_is_not_data(step, result)
            env = self.recorder.environment(step.variant)
            outputs = self._store(step, key, mode, result, env)
        self.recorder.stage(step, mode, result, hit.entry.get("seconds", 0.0) if hit else None)
        if not measuring:
            self.recorder.step(step, mode, parts, key, hit is not None, env, outputs)
        problem = machine_problem(result)
        if problem:  # the machine, not the model: exit 5, as on the host (the ladders pass it on)
            raise MachineProblem(
                f"{step.stage} stage ({step.variant.name}): {problem} (in {self.run_dir})",
                hint="free some space there and run again",
            )
        return result

    def _refuse_what_is_not_data(self, step: Step, result: StageRun) -> None:
        """A link or special file left in the run directory, a result in
        another contract version or with fields of the wrong type: the step
        failed, and nothing of it is used, stored or followed."""
        why = rundir.left_unsafe(self.run_dir) or protocol.contract_problem(step.speaks, result.result)
        if not why and result.result:
            wrong = protocol.field_problems(step.speaks, result.result)
            why = (
                f"the {step.speaks} stage's result.json does not fit the protocol: {'; '.join(wrong)}" if wrong else ""
            )
        if why:
            result.exit_code, result.result = result.exit_code or 3, {"status": "failed", "error": why}

    def describe(self, step: Step) -> dict:
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

    def _store(self, step: Step, key: str, mode, result: StageRun, env: dict) -> dict:
        """Keep a step that succeeded; {file: {sha256, size}} of what it wrote."""
        if self.cache and result.ok:
            meta = {"stage": step.stage, "variant": step.variant.name, "work": step.work, "mode": mode}
            entry = self.cache.put(
                key,
                self.run_dir / step.work,
                {**meta, "seconds": round(result.seconds, 2), "environment": env, "result": result.result},
            )
            if entry is not None:
                return entry["files"]
        if safefs.kind(self.run_dir, step.work) != "dir":
            return {}
        outputs = manifest.work_outputs(self.run_dir / step.work, self.hasher)
        return {rel: {"sha256": digest} for rel, digest in outputs.items()}

    def bad_path(self, name, what: str = "file") -> str:
        """'' when a stage's result names a regular file (or folder) inside the
        run directory, else why not: such names are data, checked before use."""
        try:
            there = safefs.kind(self.run_dir, safefs.rel(name, f"the stage's {what}"))
        except safefs.Unsafe as exc:
            return str(exc)
        return "" if there else f"the stage's {what} {name!r} does not exist"
