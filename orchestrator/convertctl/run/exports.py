"""The export ladder: the export variants tried in the catalog's order for
the PyTorch reference outputs and for an ONNX file at each opset a converter
asks for. A rung that cannot load the model (the archive says so) is skipped
before anything runs; a rung that fails hands over to the next."""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.checks import validate
from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem, MachineProblem
from convertctl.inputs.modelfile import ModelFacts
from convertctl.run.context import Context
from convertctl.runtimes.base import Step


@dataclass
class Reference:
    variant: Variant
    work: str
    output_names: list
    outputs: list
    source: str = "torch"  # what computed it: torch, onnxruntime for an ONNX file, litert for a .tflite
    model_input_names: list | None = None  # the names forward() gives its inputs, where known
    tflite: str = ""  # a float .tflite model: the copy in the run directory the quantizer reads


@dataclass
class Onnx:
    """An ONNX file (or why there is none) at one opset."""

    opset: int
    file: str = ""
    variant: str = ""
    check: dict | None = None
    error: str = ""
    kind: str = ""  # "input" when the model itself is at fault

    @property
    def ok(self) -> bool:
        return bool(self.file) and not (self.check and self.check["status"] == "failed")


@dataclass
class ExportLadder:
    ctx: Context
    facts: ModelFacts
    entries: list = field(default_factory=list)  # the report's ladder rows for this stage
    reference: Reference | None = None
    error: str = ""
    error_kind: str = ""
    _onnx: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rung in self.ctx.plan.exports:  # the plan's skipped rungs, said once
            if rung.skip:
                self.entries.append(
                    {"stage": "export", "variant": rung.variant.name, "status": "skipped", "reason": rung.skip}
                )

    @property
    def request(self) -> dict:
        """model, input_names, input_shapes, input_sets, and how to load the model."""
        return {**self.ctx.request, **self.ctx.model_request}

    @property
    def tolerance(self) -> validate.Tolerance:
        return self.ctx.tolerance("fp32")

    def usable(self) -> list[Variant]:
        """Rungs that can load this model (the plan's)."""
        return self.ctx.plan.usable_exports()

    def run_reference(self, opset: int | None) -> Reference | None:
        """The PyTorch reference outputs (and ONNX at ``opset`` while at it)."""
        for rung in self.usable():
            work = f"export/{rung.name}"
            want = opset if opset and (opset <= rung.max_opset or self.facts.format == "onnx") else None
            if self.facts.format == "onnx":
                purpose = f"onnxruntime reference on the ONNX model file (opset {self.facts.opset})"
            elif self.facts.format == "tflite":
                purpose = "LiteRT reference on the float .tflite"
            else:
                purpose = "reference" + _and_onnx(want)
            run = self._run(rung, work, {"reference": True, "opset": want}, purpose)
            if run is None and want and self.facts.format != "onnx" and self.error_kind == "stage":
                # The model loads but does not export at this opset (torch's exporter
                # refuses some graphs): the reference alone, so the rungs that read the
                # PyTorch model (litert-torch) still get their chance.
                failed = Onnx(want, variant=rung.name, error=self.entries[-1].get("error", ""), kind="stage")
                work = f"{work}-reference"
                run = self._run(rung, work, {"reference": True, "opset": None}, "reference (no ONNX)")
                if run is not None:  # the ONNX failure now lives in _onnx, for the rungs that need it
                    self._onnx[want], want = failed, None
                    self.error, self.error_kind = "", ""
            if run is None:
                continue
            self.reference = Reference(
                rung,
                work,
                run.result["output_names"],
                run.result.get("outputs", []),
                run.result.get("reference", "torch"),
                run.result.get("model_input_names"),
                run.result.get("tflite", ""),
            )
            bad = self.ctx.runner.bad_path(self.reference.tflite, "float .tflite") if self.reference.tflite else ""
            if bad:
                self.reference, self.error, self.error_kind = None, bad, "stage"
                continue
            if want:
                self._onnx[want] = self._onnx_from(rung, work, want, run)
            return self.reference
        if not self.error:
            self.error = "no export variant can load this model: " + "; ".join(
                f"{e['variant']}: {e['reason']}" for e in self.entries if e["status"] == "skipped"
            )
            self.error_kind = "input"
        return None

    def reference_on(self, set_name: str, rel: str) -> str:
        """The reference outputs on another input set (fresh inputs), made by
        the rung that made the reference: the work folder holding
        reference_<set_name>.npz, or '' when it could not."""
        assert self.reference is not None
        work = f"{self.reference.work}-{set_name}"
        extra = {"input_sets": {set_name: rel}, "reference": True, "opset": None}
        run = self._run(self.reference.variant, work, extra, f"reference on {set_name} inputs")
        return work if run is not None else ""

    def onnx(self, opset: int) -> Onnx:
        """An ONNX file at ``opset``, from the first rung (from the one that
        made the reference on) that exports it."""
        if opset in self._onnx:
            return self._onnx[opset]
        if self.facts.format == "onnx":  # the file is what it is
            return Onnx(opset, error=f"the model is an ONNX file at opset {self.facts.opset}", kind="input")
        assert self.reference is not None
        usable = self.usable()
        start = usable.index(self.reference.variant) if self.reference.variant in usable else 0
        result = Onnx(opset, error=f"no export variant exports opset {opset}")
        for rung in usable[start:]:
            if opset > rung.max_opset:
                continue
            work = f"export/{rung.name}-opset{opset}"
            run = self._run(
                rung,
                work,
                {"reference": False, "opset": opset, "output_names": self.reference.output_names},
                f"ONNX opset {opset}",
            )
            if run is not None:
                result = self._onnx_from(rung, work, opset, run)
                break
            result = Onnx(opset, error=self.entries[-1].get("error", ""), kind=self.error_kind)
        self._onnx[opset] = result
        return result

    def _run(self, rung: Variant, work: str, extra: dict, purpose: str):
        entry: dict = {"stage": "export", "variant": rung.name, "status": "failed", "purpose": purpose}
        self.entries.append(entry)
        try:
            run = self.ctx.runner.run(Step(rung, work, {**self.request, **extra}))
        except MachineProblem:  # a full disk ends the run wherever it is met
            raise
        except EnvironmentProblem as exc:
            entry.update(failed_stage="environment", error=environment_reason(exc), seconds=0.0)
            self.error, self.error_kind = f"{rung.name}: {exc.message}", "environment"
            return None
        entry["seconds"] = round(run.seconds, 1)
        if not run.ok:
            entry.update(failed_stage="export", error=_one_line(run.error))
            self.error, self.error_kind = run.error, run.result.get("error_kind", "stage")
            return None
        entry["status"] = "used"
        return run

    def _onnx_from(self, rung: Variant, work: str, opset: int, run) -> Onnx:
        info = run.result.get("onnx")
        if not info:
            return Onnx(opset, variant=rung.name, error=run.result.get("onnx_error", "no ONNX file written"))
        bad = self.ctx.runner.bad_path(info.get("file"), "ONNX file")
        if bad:
            return Onnx(opset, variant=rung.name, error=bad)
        if self.facts.format == "onnx":  # the model file itself: it is the reference, nothing to compare
            return Onnx(info.get("opset", opset), info["file"], rung.name)
        check = None
        if self.reference:
            ref = f"{self.reference.work}/reference_samples.npz"
            check = self.ctx.comparer.compare("onnx", None, "samples", ref, f"{work}/onnx_samples.npz", self.tolerance)
        if check is None:
            check = validate.Check("onnx", None, "samples", "skipped", note="onnxruntime not in the export environment")
        check.variant, check.opset = rung.name, info.get("opset", opset)
        self.ctx.report.checks.append(check.__dict__)
        return Onnx(opset, info["file"], rung.name, check.__dict__)


def _and_onnx(opset: int | None) -> str:
    return f" + ONNX opset {opset}" if opset else ""


def environment_reason(exc: EnvironmentProblem) -> str:
    """Why an environment could not be made, in one line that says it: what
    failed, the installer's last words, and where its full log is."""
    lines = [ln.strip() for ln in exc.message.splitlines() if ln.strip()]
    said = lines[0] if lines else "the environment could not be made"
    if len(lines) > 1:
        said = f"{said.rstrip(':')}: {lines[-1][:300]}"
    return f"{said} ({exc.hint})" if exc.hint else said


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return (lines[0] if lines else "")[:300]
