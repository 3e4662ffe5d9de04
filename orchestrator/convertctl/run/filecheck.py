"""The checks a made file goes through, after its rung made it: the
reference's tolerance per sample, the I/O contract, the signature its mode
must carry, fresh inputs when a file passes after another of its mode
missed, a batch-N run under --dynamic-batch, and accuracy on labelled data.
Every check is recorded in the report whether it passes or not."""

from __future__ import annotations

from dataclasses import dataclass

from convertctl.checks import signature, validate
from convertctl.config import modes
from convertctl.inputs import inputspec
from convertctl.inputs.arrays import save_set
from convertctl.run import selective
from convertctl.run.context import Context
from convertctl.run.exports import ExportLadder
from convertctl.runtimes.base import Step

JUDGE = "measure/judge.py"  # runs a made file in LiteRT, in the measure environment


@dataclass
class Attempt:
    """One mode made (or not) on one rung, with what its checks said."""

    mode: str
    variant: str
    artifact: dict
    check: dict | None = None
    accuracy: dict | None = None

    @property
    def made_file(self) -> bool:
        return "file" in self.artifact

    @property
    def ok(self) -> bool:
        return (
            self.artifact.get("status") == "ok"
            and self.check is not None
            and self.check["status"] != "failed"
            and (self.accuracy is None or self.accuracy["status"] == "passed")
        )

    def problem(self) -> str:
        if not self.made_file or self.artifact.get("problems"):
            return self.artifact.get("error", "no file")
        if self.check is not None and self.check["failures"]:
            return f"tflite:{self.mode} outside tolerance: {self.check['failures'][0]}"
        if self.accuracy is not None and self.accuracy["status"] != "passed":
            return self.accuracy["message"]
        return ""


@dataclass
class FileChecks:
    ctx: Context
    exports: ExportLadder

    def check(self, attempt: Attempt, work: str, missed_before: bool) -> None:
        """The file of an attempt against the reference: tolerance, I/O contract,
        the mode's signature; fresh inputs after a miss; accuracy where labelled."""
        mode, art = attempt.mode, attempt.artifact
        assert self.exports.reference is not None
        ref = f"{self.exports.reference.work}/reference_samples.npz"
        check = self.ctx.comparer.compare(
            "tflite", mode, "samples", ref, f"{work}/outputs_samples.npz", self.ctx.tolerance(mode)
        )
        if check is None:
            return
        check.variant, check.file = attempt.variant, art.get("file", "")
        check.failures += validate.io_contract(
            art,
            self.ctx.input_shapes,
            self.exports.reference.outputs,
            art.get("layout"),
            self.ctx.options.layout,
            input_dtypes=self.ctx.input_dtypes,
            dynamic_batch=self.ctx.options.dynamic_batch,
        )
        check.failures += signature.problems(modes.get(mode), art)
        check.method["runtime"] = art.get("judged_by") or "the interpreter of the environment that made the file"
        if self.ctx.options.dynamic_batch:
            check.failures += self._batch(attempt, work)
        if not check.failures and missed_before:
            check.failures += self._fresh(attempt)
        check.status = "failed" if check.failures else check.status
        self.ctx.report.checks.append(check.__dict__)
        attempt.check = check.__dict__
        labels = self.ctx.labels
        if labels is not None:
            attempt.accuracy = self._accuracy(mode, work, labels)
        elif (art.get("selective") or {}).get("set") == "holdout":  # judged by PyTorch's own top-1
            attempt.accuracy = self._accuracy(mode, work, None, "holdout")

    def _fresh(self, attempt: Attempt) -> list:
        """A file that passes after another file of its mode missed was picked
        by the inputs the other missed on: it must pass on fresh inputs too
        (four passes of a 20-model zoo came from the next rung after one sample
        tipped the first, and two of them failed on fresh inputs)."""
        measurer = self.ctx.plan.measure
        if measurer is None:
            return []  # no LiteRT to run it: the sample inputs' verdict stands
        rel = self._fresh_inputs()
        ref_work = self.exports.reference_on("fresh", rel)
        if not ref_work:
            return [f"fresh inputs: no reference outputs on them ({self.exports.error})"]
        art = attempt.artifact
        ask: dict = {**self.ctx.request, "input_sets": {"fresh": rel}, "tflite": art["file"], "mode": attempt.mode}
        ask.update(mode_spec=modes.get(attempt.mode).spec(), layout=art.get("layout") or {})
        ask.update(allow_flex=self.ctx.options.allow_flex, int8_io=art.get("io") or self.ctx.int8.io)
        kept = (art.get("selective") or {}).get("float_layers")
        if kept:
            ask["float_layers"] = list(kept)
        where = f"{art['file'].rsplit('/', 1)[0]}/litert-fresh"
        run = self.ctx.runner.run(Step(measurer, where, ask, script=JUDGE, protocol="quantize"), mode=attempt.mode)
        tol = self.ctx.tolerance(attempt.mode)
        check = self.ctx.comparer.compare(
            "tflite", attempt.mode, "fresh", f"{ref_work}/reference_fresh.npz", f"{where}/outputs_fresh.npz", tol
        )
        if check is None:
            return [f"fresh inputs: the file did not run on them ({run.error})"]
        check.variant, check.note = attempt.variant, f"fresh inputs (seed {self.ctx.options.seed + 2})"
        check.file = art.get("file", "")
        check.method["runtime"] = (run.result.get("artifact") or {}).get("judged_by", "")
        self.ctx.report.checks.append(check.__dict__)
        return [f"fresh inputs: {f}" for f in check.failures]

    def _fresh_inputs(self) -> str:
        """inputs/fresh.npz: as many seeded samples as the sample set, another seed."""
        rel = "inputs/fresh.npz"
        if not (self.ctx.run_dir / rel).is_file():
            o = self.ctx.options
            save_set(self.ctx.run_dir / rel, inputspec.synthetic(list(self.ctx.specs), o.samples, o.seed + 2))
        return rel

    def _batch(self, attempt: Attempt, work: str) -> list:
        """--dynamic-batch: the file run at batch N against the reference at
        batch N, recorded as its own check; its failures fail the mode."""
        assert self.exports.reference is not None
        ref = f"{self.exports.reference.work}/reference_batch.npz"
        got = f"{work}/outputs_batch.npz"
        if not (self.ctx.run_dir / ref).is_file():
            return []
        batch = self.ctx.report.inputs.get("batch", {}).get("batch", "N")
        check = self.ctx.comparer.compare("tflite", attempt.mode, "batch", ref, got, self.ctx.tolerance(attempt.mode))
        if check is None:
            return [f"batch {batch}: the file did not run at batch {batch}"]
        check.variant, check.note = attempt.variant, f"batch {batch}"
        check.file = attempt.artifact.get("file", "")
        self.ctx.report.checks.append(check.__dict__)
        return [f"batch {batch}: {f}" for f in check.failures]

    def _accuracy(self, mode: str, work: str, labels, set_name: str = "eval") -> dict | None:
        assert self.exports.reference is not None
        ref = self.ctx.comparer.outputs(f"{self.exports.reference.work}/reference_{set_name}.npz")
        got = self.ctx.comparer.outputs(f"{work}/outputs_{set_name}.npz")
        if ref is None or got is None:
            return None
        if labels is None:
            labels = selective.top1(ref)
        base, value = validate.accuracy(ref, labels), validate.accuracy(got, labels)
        budget = self.ctx.max_drop(mode)
        drop = base - value
        status = "passed" if drop <= budget else "failed"
        message = (
            f"tflite:{mode} accuracy {value:.2f}% is {drop:.2f} points below PyTorch's {base:.2f}% (budget {budget})"
        )
        return {
            "accuracy": value,
            "pytorch": base,
            "drop": drop,
            "max_drop": budget,
            "status": status,
            "message": message,
            "set": set_name,
            "samples": int(len(labels)),
        }
