"""One `convertctl run`: inputs checked, stages run in order through a
runtime, every output compared with PyTorch, the report assembled. Domain
errors are raised as ConvertError; stage and check failures are recorded in
the report, whose exit_code the CLI returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convertctl import inputs, rundir, validate
from convertctl.data import load_calibration, load_eval
from convertctl.errors import EXIT_CONVERSION, EXIT_USAGE, EXIT_VALIDATION, UsageError
from convertctl.report import Report, sha256_file
from convertctl.runtimes.base import Runtime, Say, StageRun
from convertctl.validate import DEFAULT_MAX_DROP

MODES = ("fp32", "dynamic", "int8", "fp16")
SYNTHETIC_CALIB = 200


@dataclass
class RunOptions:
    model: Path
    shapes: list
    modes: list
    out: Path
    opset: int = 11
    calib: Path | None = None
    mean: tuple | None = None
    std: tuple | None = None
    sample_inputs: Path | None = None
    samples: int = inputs.DEFAULT_SAMPLES
    seed: int = 0
    allow_flex: bool = False
    tolerances: dict = field(default_factory=dict)
    eval_data: Path | None = None
    max_drop: dict = field(default_factory=dict)
    latency_runs: int = 10
    threads: int = 1
    keep_run: bool = False

    def check(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise UsageError(f"--quant {', '.join(unknown)}: unknown mode (choose from {', '.join(MODES)})")
        if not self.shapes:
            raise UsageError(
                "--input-shape is required (e.g. --input-shape 1,3,256,256), on the command line or in convertctl.toml"
            )
        if not 7 <= self.opset <= 13:
            raise UsageError(f"--opset {self.opset}: onnx-tf 1.10 reads opsets 7 to 13")
        for mode in list(self.tolerances) + list(self.max_drop):
            if mode not in MODES:
                raise UsageError(f"tolerance for unknown mode {mode!r} (choose from {', '.join(MODES)})")
        for mode in self.tolerances:
            validate.tolerance_for(mode, self.tolerances)  # raises on unknown keys


class Pipeline:
    def __init__(self, opts: RunOptions, runtime: Runtime, variants: dict, say: Say):
        self.opts, self.runtime, self.variants, self.say = opts, runtime, variants, say

    def run(self) -> Report:
        o = self.opts
        o.check()
        export = self.variants["export"]
        if o.opset > export.max_opset:
            raise UsageError(
                f"--opset {o.opset}: the {export.name} export environment exports up to opset {export.max_opset}"
            )
        model = inputs.check_model(o.model)
        names = inputs.input_names(len(o.shapes))
        shapes = dict(zip(names, o.shapes))
        sets, labels, calib, sample_source = self._load_data(shapes)  # bad data fails before any work
        run_dir = rundir.create_run_dir(o.out)
        report = Report(
            model={
                "path": str(model),
                "sha256": sha256_file(model),
                "opset": o.opset,
                "input_shapes": {n: list(s) for n, s in shapes.items()},
            },
            runtime=self.runtime.name,
            modes=list(o.modes),
            run_dir=str(run_dir),
            out_dir=str(o.out),
        )
        report.inputs = self._write_inputs(run_dir, sets, labels, calib)
        report.inputs["samples"]["source"] = sample_source
        if calib is not None and o.calib is None:
            report.notices.append(
                f"int8 calibrated on {SYNTHETIC_CALIB} SYNTHETIC random inputs: no --calib "
                "given. Real int8 accuracy needs 100-500 real samples (--calib DIR|.npz)."
            )
        try:
            self._prepare(report)
            self._stages(run_dir, report, names, {name: f"inputs/{name}.npz" for name in sets})
            if report.exit_code == 0 or report.artifacts:
                self._validate(run_dir, report, labels)
        except BaseException as exc:  # Ctrl-C, a missing environment...: keep the run dir, say why
            code = getattr(exc, "exit_code", EXIT_CONVERSION)
            report.fail(code, getattr(exc, "message", "") or f"interrupted ({type(exc).__name__})")
            self._place(run_dir, report)
            raise
        report.finish()
        self._place(run_dir, report)
        return report

    def _prepare(self, report: Report) -> None:
        for prepared in self.runtime.prepare(list(dict.fromkeys(self.variants.values())), self.say):
            report.environments.append(
                {
                    "variant": prepared.variant.name,
                    "stage": prepared.variant.stage,
                    "location": prepared.location,
                    "created": prepared.created,
                    "seconds": round(prepared.seconds, 1),
                }
            )

    # -- inputs ---------------------------------------------------------
    def _load_data(self, shapes: dict):
        o = self.opts
        sets, labels = {}, None
        if o.eval_data:
            sets["eval"], labels, _ = load_eval(o.eval_data, shapes, o.mean, o.std)
        calib = None
        if "int8" in o.modes:
            calib = (
                load_calibration(o.calib, shapes, o.mean, o.std)
                if o.calib
                else inputs.synthetic(shapes, SYNTHETIC_CALIB, o.seed + 1)
            )
        # The parity checks run on real data whenever the user gave some: an
        # int8 model calibrated on real inputs clips random noise, and would
        # be judged on that instead of on what it will see.
        if o.sample_inputs:
            samples, source = inputs.load_sample_inputs(o.sample_inputs, shapes), str(o.sample_inputs)
        elif o.eval_data or (o.calib and calib is not None):
            samples = _first(sets["eval"] if o.eval_data else calib, o.samples)
            count = len(next(iter(samples.values())))
            source = f"first {count} of {o.eval_data or o.calib}"
        else:
            samples, source = inputs.synthetic(shapes, o.samples, o.seed), f"synthetic (seed {o.seed})"
        sets["samples"] = samples
        return sets, labels, calib, source

    def _write_inputs(self, run_dir: Path, sets: dict, labels, calib) -> dict:
        info = {}
        for name, arrays in sets.items():
            inputs.save_set(run_dir / "inputs" / f"{name}.npz", arrays)
            info[name] = {"count": len(next(iter(arrays.values())))}
        o = self.opts
        if labels is not None:
            info["eval"].update(source=str(o.eval_data), classes=int(labels.max()) + 1)
        if calib is not None:
            inputs.save_set(run_dir / "inputs" / "calibration.npz", calib)
            info["calibration"] = {
                "count": len(next(iter(calib.values()))),
                "synthetic": o.calib is None,
                "source": str(o.calib) if o.calib else "synthetic",
            }
        return info

    # -- stages ---------------------------------------------------------
    def _run(self, report: Report, run_dir: Path, stage: str, request: dict) -> StageRun | None:
        variant = self.variants[stage]
        self.say(f"{stage}: running in {variant.name}")
        result = self.runtime.run_stage(variant, run_dir, request, self.say)
        report.stages.append(
            {
                "stage": stage,
                "variant": variant.name,
                "status": "ok" if result.ok else "failed",
                "seconds": round(result.seconds, 2),
                "versions": result.result.get("versions", {}),
                "python": result.result.get("python", ""),
                "error": result.error,
                "log_tail": [] if result.ok else result.log_tail,
            }
        )
        if not result.ok and stage != "quantize":
            kind = result.result.get("error_kind")
            code = EXIT_USAGE if kind == "input" else EXIT_CONVERSION
            where = f"{stage} stage ({variant.name}): "
            if kind == "input":
                where = "" if str(self.opts.model.resolve()) in result.error else f"{self.opts.model}: "
            report.fail(code, where + result.error)
            return None
        return result

    def _stages(self, run_dir: Path, report: Report, names: list, set_files: dict) -> None:
        o = self.opts
        exp = self._run(
            report,
            run_dir,
            "export",
            {
                "model": str(o.model.resolve()),
                "input_names": names,
                "opset": o.opset,
                "input_shapes": [list(s) for s in o.shapes],
                "input_sets": set_files,
            },
        )
        if exp is None:
            return
        output_names = exp.result["output_names"]
        report.model["outputs"] = exp.result.get("outputs", [])
        report.model["onnx"] = exp.result.get("onnx", {})
        conv = self._run(
            report,
            run_dir,
            "convert",
            {"onnx": "export/model.onnx", "input_names": names, "output_names": output_names, "input_sets": set_files},
        )
        if conv is None:
            return
        quant = self._run(
            report,
            run_dir,
            "quantize",
            {
                "saved_model": "convert/saved_model",
                "modes": o.modes,
                "input_names": names,
                "calibration": "inputs/calibration.npz",
                "allow_flex": o.allow_flex,
                "input_sets": set_files,
                "latency_runs": o.latency_runs,
                "threads": o.threads,
            },
        )
        modes = quant.result.get("modes", {}) if quant else {}
        if not modes:
            report.fail(EXIT_CONVERSION, f"quantize stage ({self.variants['quantize'].name}): {quant.error}")
            return
        for mode in o.modes:
            info = dict(modes.get(mode, {"mode": mode, "status": "failed", "error": "no result"}))
            report.artifacts.append(info)
            if "file" not in info:
                report.fail(EXIT_CONVERSION, f"quantize {mode}: {info.get('error')}")
            elif info.get("problems"):
                report.fail(EXIT_VALIDATION, f"quantize {mode}: {info['error']}")

    # -- checks ---------------------------------------------------------
    def _validate(self, run_dir: Path, report: Report, labels) -> None:
        ref = _npz(run_dir / "export" / "reference_samples.npz")
        fp32 = validate.tolerance_for("fp32", self.opts.tolerances)
        candidates = [
            ("onnx", None, "export/onnx_samples.npz", fp32, None),
            ("savedmodel", None, "convert/outputs_samples.npz", fp32, None),
        ]
        candidates += [
            (
                "tflite",
                a["mode"],
                f"quantize/{a['mode']}_samples.npz",
                validate.tolerance_for(a["mode"], self.opts.tolerances),
                a,
            )
            for a in report.artifacts
            if "file" in a
        ]
        for stage, mode, rel, tol, art in candidates:
            got = _npz(run_dir / rel)
            if ref is None or got is None:
                if stage != "onnx":  # no onnxruntime in an export image is allowed
                    continue
                report.checks.append(
                    validate.Check(
                        stage, mode, "samples", "skipped", note="onnxruntime not in the export environment"
                    ).__dict__
                )
                continue
            check = validate.compare(stage, mode, "samples", ref, got, tol)
            if art is not None:  # a TFLite file: its I/O contract too
                check.failures += validate.io_contract(
                    art, report.model["input_shapes"], report.model.get("outputs", [])
                )
                check.status = "failed" if check.failures else check.status
            report.checks.append(check.__dict__)
            if check.failures:
                report.fail(EXIT_VALIDATION, f"{check.label} outside tolerance: {check.failures[0]}")
        if labels is not None:
            self._accuracy(run_dir, report, labels)

    def _accuracy(self, run_dir: Path, report: Report, labels) -> None:
        ref = _npz(run_dir / "export" / "reference_eval.npz")
        if ref is None:
            return
        base = validate.accuracy(ref, labels)
        acc = {"samples": int(len(labels)), "pytorch": base, "modes": {}}
        for art in report.artifacts:
            got = _npz(run_dir / f"quantize/{art['mode']}_eval.npz")
            if got is None:
                continue
            value = validate.accuracy(got, labels)
            budget = self.opts.max_drop.get(art["mode"], DEFAULT_MAX_DROP[art["mode"]])
            drop = base - value
            status = "passed" if drop <= budget else "failed"
            acc["modes"][art["mode"]] = {"accuracy": value, "drop": drop, "max_drop": budget, "status": status}
            if status == "failed":
                report.fail(
                    EXIT_VALIDATION,
                    f"tflite:{art['mode']} accuracy {value:.2f}% is {drop:.2f} points "
                    f"below PyTorch's {base:.2f}% (budget {budget})",
                )
        report.accuracy = acc

    # -- results --------------------------------------------------------
    def _place(self, run_dir: Path, report: Report) -> None:
        from convertctl.render import markdown

        stem = self.opts.model.stem
        ok = report.status == "passed"
        files = {a["file"]: f"{stem}_{a['mode']}.tflite" for a in report.artifacts if "file" in a}
        for art in report.artifacts:
            if "file" in art:
                path = run_dir / art["file"]
                art["sha256"] = sha256_file(path)
                art["path"] = str(Path(self.opts.out) / files[art["file"]]) if ok else str(path)
        if ok:
            report.run_dir = ""
        report.save(run_dir / "report.json")
        md = markdown(report)
        (run_dir / "report.md").write_text(md)
        if ok:
            rundir.promote(run_dir, self.opts.out, {**files, "report.json": "report.json", "report.md": "report.md"})
            if not self.opts.keep_run:
                rundir.discard(run_dir)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a") as f:
                f.write(md + "\n")


def _first(arrays: dict, count: int) -> dict:
    return {name: arr[:count] for name, arr in arrays.items()}


def _npz(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
