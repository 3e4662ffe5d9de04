"""One `convertctl run`: inputs checked, the export and convert ladders run
through a runtime, every output compared with PyTorch, the report
assembled. Domain errors are raised as ConvertError; stage and check
failures are recorded in the report, whose exit_code the CLI returns."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from convertctl.checks import validate
from convertctl.config import modes, settings
from convertctl.config.catalog import Catalog
from convertctl.config.options import Options
from convertctl.config.settings import SYNTHETIC_CALIB
from convertctl.errors import (
    EXIT_CONVERSION,
    EXIT_ENVIRONMENT,
    EXIT_USAGE,
    EXIT_VALIDATION,
    UsageError,
)
from convertctl.inputs import arrays as inputs
from convertctl.inputs import inputspec, modelfile, modelflags
from convertctl.inputs.data import calibration_notes, labels_fit, load_calibration, load_eval
from convertctl.report.model import Report
from convertctl.run import manifest, placement, selective
from convertctl.run.converts import ConvertLadder
from convertctl.run.exports import ExportLadder
from convertctl.run.measure import measure_artifacts
from convertctl.run.steps import Steps
from convertctl.runtimes.base import Runtime, Say
from convertctl.store import rundir
from convertctl.store.cache import open_cache
from convertctl.store.digests import Hasher

# With real data the parity checks take at least this many samples: "top-1
# 88 %" on 8 samples is 7 of 8.
MIN_REAL_SAMPLES = 64


def check_options(o: Options) -> None:
    """The option table's rules, on Options however they were made (flags,
    a file, the Python API, a report), then what no single option's rule can
    say: how options fit together."""
    settings.validate({f.name: getattr(o, f.name) for f in fields(o)})
    if o.input and o.input_shape:
        raise UsageError("--input and --input-shape both given: use --input NAME:SHAPE[:DTYPE] for every input")
    for text in o.input:
        inputspec.parse_input(text)
    modelflags.check_model_flags(o)
    int8 = selective.Int8Options.of(o)
    if int8.float_layers and "int8" not in o.modes:
        raise UsageError("--int8-float-layers applies to int8: add --quant int8")


def input_specs(o: Options) -> list:
    """What the user said about the inputs: --input, or --input-shape's unnamed ones."""
    return [inputspec.parse_input(t) for t in o.input] or inputspec.from_shapes(o.input_shape)


class Pipeline:
    def __init__(self, opts: Options, runtime: Runtime, catalog: Catalog, say: Say):
        self.opts, self.runtime, self.catalog, self.say = opts, runtime, catalog, say
        self.model, self.out = Path(opts.model), Path(opts.out)
        self.int8 = selective.Int8Options.of(opts)

    def run(self) -> Report:
        o = self.opts
        check_options(o)
        export_rungs = self.catalog.pick(self.runtime.name, "export", o.export_image)
        convert_rungs = self.catalog.pick(self.runtime.name, "convert", o.converter)
        if not export_rungs or not convert_rungs:
            raise UsageError(f"the catalog has no export or convert variant for the {self.runtime.name} runtime")
        cache, cache_notice = open_cache(o.no_cache)
        hasher = Hasher(cache.file_state() if cache else None)
        facts = modelfile.read_model(self.model, hasher.state)
        modelflags.check_format(facts, o, self.runtime)
        specs = inputspec.resolve(input_specs(o), facts, o.dynamic_batch)
        if o.dynamic_batch:
            inputspec.check_dynamic_batch(specs)
        self._applicable(facts, export_rungs, convert_rungs)
        shapes = {s.name: s.shape for s in specs}
        sets, labels, calib, sample_source = self._load_data(specs)  # bad data fails before any work
        killed = rundir.killed_runs(self.out)
        run_dir = rundir.create_run_dir(self.out)
        report = Report(
            model={
                "path": str(facts.path),
                "sha256": hasher.file(facts.path, remember=True),
                "opset": o.opset,
                "input_shapes": {n: list(s) for n, s in shapes.items()},
                "inputs": [s.to_dict() for s in specs],
                "dynamic_batch": o.dynamic_batch,
                "file": facts.to_dict(),
            },
            runtime=self.runtime.name,
            modes=list(o.modes),
            run_dir=str(run_dir),
            out_dir=str(self.out),
        )
        report.notices += self.runtime.notices + killed + ([cache_notice] if cache_notice else [])
        if calib is not None and o.calib is None:
            report.notices.append(
                f"int8 calibrated on {SYNTHETIC_CALIB} SYNTHETIC random inputs: no --calib "
                "given. Real int8 accuracy needs 100-500 real samples (--calib DIR|.npz)."
            )
        if calib is not None:
            report.notices += calibration_notes(o.path("calib"), calib)
        report.manifest = manifest.new(o, self.runtime.name)
        steps = Steps(self.runtime, run_dir, report, self.say, cache=cache, hasher=hasher)
        try:
            report.inputs = self._write_inputs(steps, sets, labels, calib)
            report.inputs["samples"]["source"] = sample_source
            report.manifest["inputs"] = manifest.input_hashes(o, run_dir, steps.hasher)
            self._ladders(steps, facts, export_rungs, convert_rungs, specs, sets, labels)
        except BaseException as exc:  # Ctrl-C, a full disk, a bug...: keep the run dir, say why
            mapped = rundir.os_error(exc, run_dir)
            code = 130 if isinstance(exc, KeyboardInterrupt) else getattr(mapped, "exit_code", EXIT_CONVERSION)
            report.fail(code, getattr(mapped, "message", "") or f"interrupted ({type(exc).__name__})")
            try:
                self._place(run_dir, report, hasher)
            except OSError:
                pass  # no room even for the report: the message still names the run directory
            exc.run_dir = str(run_dir)  # type: ignore[attr-defined]  # for the CLI's message
            raise
        finally:
            if hasher.state:
                hasher.state.save()
        report.finish()
        self._place(run_dir, report, hasher)
        return report

    def _applicable(self, facts, export_rungs: list, convert_rungs: list) -> None:
        """Refuse, before any work, a run no rung can take: the model no
        export variant loads, or flags (--opset, --layout) no converter meets."""
        exports = ExportLadder(None, export_rungs, facts, {}, None)
        if self.opts.opset is not None and facts.format == "onnx" and self.opts.opset != facts.opset:
            raise UsageError(f"--opset {self.opts.opset}: {self.model} is an ONNX file at opset {facts.opset}")
        if not exports.usable():
            reasons = "; ".join(f"{e['variant']}: {e['reason']}" for e in exports.entries)
            raise UsageError(f"{self.model}: no export variant can load this model ({reasons})")
        ladder = ConvertLadder(
            None, self.catalog, convert_rungs, exports, {"opset": self.opts.opset, "layout": self.opts.layout}
        )
        reasons = [f"{r.name}: {ladder.skip_reason(r)}" for r in convert_rungs]
        if all(ladder.skip_reason(r) for r in convert_rungs):
            raise UsageError("no converter variant applies: " + "; ".join(reasons))

    def _ladders(self, steps: Steps, facts, export_rungs, convert_rungs, specs, sets, labels) -> None:
        o, report = self.opts, steps.report
        request = {
            "model": str(facts.path),
            "model_format": facts.format,
            "input_names": [s.name for s in specs],
            "input_shapes": [list(s.shape) for s in specs],
            "input_dtypes": [s.dtype for s in specs],
            "dynamic_batch": o.dynamic_batch,
            "input_sets": {name: f"inputs/{name}.npz" for name in sets},
        }
        # How to load the model: for the export stage, and for converters
        # that start from the torch model; --code is mounted for those only.
        model_request = modelflags.load_fields(facts, o)
        exports = ExportLadder(
            steps, export_rungs, facts, {**request, **model_request}, validate.tolerance_for("fp32", o.tolerances())
        )
        ctx = {
            "request": request,
            "model_request": model_request,
            "model": str(facts.path),
            "opset": o.opset,
            "layout": o.layout,
            "input_shapes": {s.name: list(s.shape) for s in specs},
            "input_dtypes": {s.name: s.dtype for s in specs},
            "dynamic_batch": o.dynamic_batch,
            "labels": labels,
            "tolerance": lambda mode: validate.tolerance_for(mode, o.tolerances()),
            "max_drop": o.max_drop_for,
            "quantize": {
                "calibration": "inputs/calibration.npz",
                "allow_flex": o.allow_flex,
                # LiteRT times the final files (measure.py); the converting TF only where there is no such env
                "latency_runs": 0 if self.catalog.measurer(self.runtime.name) else o.latency_runs,
                "threads": o.threads,
            },
            "int8": self.int8,
            "measure_runs": o.latency_runs,
        }
        ladder = ConvertLadder(steps, self.catalog, convert_rungs, exports, ctx)
        first = next((r for r in convert_rungs if not ladder.skip_reason(r)), None)
        opset = ladder.opset_for(first) if first is not None and first.input == "onnx" else None
        try:
            if exports.run_reference(opset) is None:
                code = {"input": EXIT_USAGE, "environment": EXIT_ENVIRONMENT}.get(exports.error_kind, EXIT_CONVERSION)
                report.fail(code, self._export_failure(exports))
                return
            report.model["outputs"] = exports.reference.outputs
            misfit = labels_fit(o.path("eval_data"), labels, exports.reference.outputs) if labels is not None else ""
            if misfit:
                report.fail(EXIT_USAGE, misfit)
                return
            report.model["reference"] = exports.reference.source
            notice = inputspec.naming_notice(specs, exports.reference.model_input_names)
            if notice:
                report.notices.append(notice)
            ladder.run(o.modes)
            finals = [a.artifact for a in map(ladder.best, o.modes) if a is not None and a.ok]
            measure_artifacts(steps, self.catalog, finals, o.latency_runs)
        finally:
            report.ladder = exports.entries + ladder.entries
        self._collect(report, ladder, labels)

    def _export_failure(self, exports: ExportLadder) -> str:
        if exports.error_kind == "input":
            model = str(self.model.resolve())
            return exports.error if model in exports.error else f"{self.model}: {exports.error}"
        rung = next((e["variant"] for e in reversed(exports.entries) if e["status"] == "failed"), "")
        return f"export stage ({rung}): {exports.error}" if rung else exports.error

    def _collect(self, report: Report, ladder: ConvertLadder, labels) -> None:
        """One artifact per mode: the file that validated, else the closest
        attempt; every mode without a validated file is a failure."""
        accuracy = {}
        for mode in self.opts.modes:
            attempt = ladder.best(mode)
            if attempt is None:
                code, why = _ladder_failure(ladder.entries, mode)
                report.fail(code, f"{mode}: {why}")
                continue
            report.artifacts.append(attempt.artifact)
            if attempt.accuracy is not None:
                accuracy[mode] = {**attempt.accuracy, "variant": attempt.variant}
            if not attempt.ok:
                code = EXIT_VALIDATION if attempt.made_file else EXIT_CONVERSION
                report.fail(code, f"{attempt.variant}: {attempt.problem()}")
        if accuracy:
            first = next(iter(accuracy.values()))
            report.accuracy = {
                "samples": first["samples"],
                "set": first["set"],
                "pytorch": first["pytorch"],
                "modes": {
                    m: {k: a[k] for k in ("accuracy", "drop", "max_drop", "status", "variant")}
                    for m, a in accuracy.items()
                },
            }

    # -- inputs ---------------------------------------------------------
    def _load_data(self, specs: list):
        o = self.opts
        shapes = {s.name: s.shape for s in specs}
        sets, labels = {}, None
        eval_data, calib_path, sample_path = o.path("eval_data"), o.path("calib"), o.path("sample_inputs")
        if eval_data:
            sets["eval"], labels, _ = load_eval(eval_data, shapes, o.mean, o.std, o.resize)
            sets["eval"] = inputspec.typed(sets["eval"], specs, eval_data)
        calib = None
        if modes.calibrated(o.modes):
            calib = (
                inputspec.typed(load_calibration(calib_path, shapes, o.mean, o.std, resize=o.resize), specs, calib_path)
                if calib_path
                else inputspec.Synthetic(tuple(specs), SYNTHETIC_CALIB, o.seed + 1)
            )
            if self.int8.auto and labels is None:  # judged on data it was not calibrated on
                calib, sets["holdout"] = selective.split_holdout(inputspec.as_arrays(calib))
        # The parity checks run on real data whenever the user gave some: an
        # int8 model calibrated on real inputs clips random noise, and would
        # be judged on that instead of on what it will see.
        if sample_path:
            samples = inputspec.typed(inputs.load_sample_inputs(sample_path, shapes), specs, sample_path)
            source = str(sample_path)
        elif eval_data or (calib_path and calib is not None):
            samples = _first(sets["eval"] if eval_data else calib, max(o.samples, MIN_REAL_SAMPLES))
            count = len(next(iter(samples.values())))
            source = f"first {count} of {eval_data or calib_path}"
        else:
            samples, source = inputspec.Synthetic(tuple(specs), o.samples, o.seed), f"synthetic (seed {o.seed})"
        sets["samples"] = samples
        if o.dynamic_batch:  # one sample of batch N, checked next to the batch-1 samples
            sets["batch"] = inputspec.batched(inputspec.as_arrays(samples), inputspec.BATCH_CHECK)
        return sets, labels, calib, source

    def _write_inputs(self, steps: Steps, sets: dict, labels, calib) -> dict:
        run_dir = steps.run_dir
        info = {}
        for name, arrays in sets.items():
            _save(steps, run_dir / "inputs" / f"{name}.npz", arrays)
            info[name] = {"count": _count(arrays)}
        if "batch" in info:
            info["batch"]["batch"] = inputspec.BATCH_CHECK
        o = self.opts
        if labels is not None:
            info["eval"].update(source=str(o.eval_data), classes=int(labels.max()) + 1)
        if calib is not None:
            _save(steps, run_dir / "inputs" / "calibration.npz", calib)
            info["calibration"] = {
                "count": _count(calib),
                "synthetic": o.calib is None,
                "source": str(o.calib) if o.calib else "synthetic",
            }
        return info

    # -- results --------------------------------------------------------
    def _place(self, run_dir: Path, report: Report, hasher: Hasher | None = None) -> None:
        with rundir.out_lock(self.out, self.say):  # concurrent runs on one --out take turns
            placement.place(self.opts, run_dir, report, hasher)


def _count(data) -> int:
    return data.count if isinstance(data, inputspec.Synthetic) else len(next(iter(data.values())))


def _save(steps: Steps, path: Path, data) -> None:
    """A set's npz; synthetic sets are taken from the cache when it holds
    them (generating and writing them is the rerun's biggest host cost)."""
    if not isinstance(data, inputspec.Synthetic):
        inputs.save_set(path, data)
        return
    memo = steps.cache.memo if steps.cache else None
    key = data.key() if memo is not None else ""
    if memo is not None and memo.recall_file("inputs", key, path, steps.hasher):
        return
    inputs.save_set(path, data.arrays())
    if memo is not None:
        memo.keep_file("inputs", key, path, steps.hasher)


def _first(arrays: dict, count: int) -> dict:
    return {name: arr[:count] for name, arr in arrays.items()}


def _ladder_failure(entries: list, mode: str = "") -> tuple[int, str]:
    """Why no rung made a mode's file, and the exit code that says it."""
    tried = [e for e in entries if e["stage"] == "convert"]
    said = [f"{e['variant']}: {e['modes'][mode]}" for e in tried if mode in e.get("modes", {})]
    if said and all(e["status"] != "failed" for e in tried if mode in e.get("modes", {})):
        return EXIT_CONVERSION, "; ".join(said)  # rungs that converted, but not this mode
    failed = [e for e in tried if e["status"] != "skipped"]
    if not failed:
        reasons = "; ".join(f"{e['variant']}: {e['reason']}" for e in tried) or "the ladder is empty"
        return EXIT_USAGE, f"no converter variant applies ({reasons})"
    envs = all(e.get("failed_stage") == "environment" for e in failed)
    reasons = "; ".join(f"{e['variant']} ({e.get('failed_stage', '?')}): {e.get('error', '')}" for e in failed)
    return (EXIT_ENVIRONMENT if envs else EXIT_CONVERSION), f"no converter variant converted the model: {reasons}"
