"""The convert ladder: converter variants tried in the catalog's order until
every mode asked for has a file that converts and validates. A rung that
fails, or a mode that fails on one rung, hands over to the next rung; the
report lists every rung tried, and which rung made each file."""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.checks import validate
from convertctl.config import modes
from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem, MachineProblem
from convertctl.run import measure, selective
from convertctl.run.context import Context
from convertctl.run.exports import ExportLadder, _one_line, environment_reason
from convertctl.run.filecheck import JUDGE, Attempt, FileChecks
from convertctl.run.plan import ConvertRung
from convertctl.runtimes.base import Step

CURVE_RUNS = 30


@dataclass
class ConvertLadder:
    ctx: Context
    exports: ExportLadder
    entries: list = field(default_factory=list)
    attempts: dict = field(default_factory=dict)  # mode -> [Attempt]
    floats: dict = field(default_factory=dict)  # rung name -> its fp32 .tflite, for quantizers that read one
    layout: str | None = None  # the I/O layout the run's files have: --layout, else the first file's
    checks: FileChecks = field(init=False)

    def __post_init__(self) -> None:
        self.layout = self.ctx.options.layout
        self.checks = FileChecks(self.ctx, self.exports)

    def run(self, modes: list) -> None:
        """The plan's rungs in order until every mode has a file that validates."""
        if self.ctx.plan.tflite is not None:
            self._quantize_as_it_is(self.ctx.plan.tflite, modes)
            return
        remaining = list(modes)
        for planned in self.ctx.plan.converts:
            if not remaining:
                break
            rung = planned.variant
            entry: dict = {"stage": "convert", "variant": rung.name, "family": rung.family, "status": "skipped"}
            self.entries.append(entry)
            todo = [m for m in remaining if m in planned.quantizers]
            why = planned.skip or ("" if todo else "; ".join(dict.fromkeys(planned.cannot[m] for m in remaining)))
            if why:
                entry["reason"] = why
                continue
            entry.update(status="failed", modes={}, seconds=0.0)
            for mode in remaining:
                if mode in planned.cannot:
                    entry["modes"][mode] = planned.cannot[mode]
            try:
                converted = self._convert(planned, entry)
                if converted is not None:
                    for mode in todo:
                        if self._each_quantizer(planned, converted, mode, entry):
                            remaining.remove(mode)
            except MachineProblem:  # a full disk ends the run wherever it is met
                raise
            except EnvironmentProblem as exc:
                entry.update(failed_stage="environment", error=environment_reason(exc))
            if any(v == "ok" for v in entry["modes"].values()):
                entry["status"] = "used"

    def _quantize_as_it_is(self, planned: ConvertRung, modes: list) -> None:
        """A float .tflite (convertctl quantize): no convert step; each mode
        made from the file by the quantizer that reads a .tflite."""
        assert self.exports.reference is not None
        entry: dict = {"stage": "convert", "variant": "float .tflite", "family": "tflite", "status": "failed"}
        entry.update(modes={m: why for m, why in planned.cannot.items() if m in modes}, seconds=0.0)
        self.entries.append(entry)
        converted = {"tflite": self.exports.reference.tflite, "layout": {}, "work": self.exports.reference.work}
        try:
            for mode in modes:
                if mode in planned.quantizers:
                    self._each_quantizer(planned, converted, mode, entry)
        except MachineProblem:  # a full disk ends the run wherever it is met
            raise
        except EnvironmentProblem as exc:
            entry.update(failed_stage="environment", error=environment_reason(exc))
        if any(v == "ok" for v in entry["modes"].values()):
            entry["status"] = "used"

    def _each_quantizer(self, planned: ConvertRung, converted: dict, mode: str, entry: dict) -> bool:
        """The rung's quantizers for the mode in the catalog's order, until one
        makes a file that passes its checks (TFLiteConverter's "dynamic" file
        of a small model keeps float weights; LiteRT Quantizer's does not)."""
        for quantizer in planned.quantizers[mode]:
            if self._mode(planned, quantizer, converted, mode, entry).ok:
                return True
        return False

    def _convert(self, planned: ConvertRung, entry: dict) -> dict | None:
        rung = planned.variant
        assert self.exports.reference is not None  # the pipeline ran the reference first
        # layout: --layout, else the layout the run's first file has, so that one folder holds files an app
        # feeds one way (None: the converter's own, for a family that cannot give it).
        request: dict = {
            **self.ctx.request,
            "output_names": self.exports.reference.output_names,
            "layout": self.layout if self.layout in rung.layouts else self.ctx.options.layout,
        }
        if rung.input == "onnx":
            assert planned.opset is not None  # the plan skips ONNX rungs without one
            onnx = self.exports.onnx(planned.opset)
            entry["opset"] = onnx.opset
            if not onnx.ok:
                failure = onnx.error or (onnx.check or {}).get("failures", ["ONNX check failed"])[0]
                entry.update(failed_stage="export", error=_one_line(f"ONNX opset {onnx.opset}: {failure}"))
                return None
            request["onnx"] = onnx.file
        else:
            request.update(self.ctx.model_request)  # how to load it: arch, code_dir...
        work = f"convert/{rung.name}"
        run = self.ctx.runner.run(Step(rung, work, request))
        entry["seconds"] += run.seconds
        for key in ("reason_code", "op_coverage"):  # a converter's own words on what it could not do (onnx2tf 2.x)
            if run.result.get(key):
                entry[key] = run.result[key]
        if not run.ok:
            entry.update(failed_stage="convert", error=_one_line(run.error))
            return None
        converted = dict(run.result)
        converted["work"] = work
        named = [converted[k] for k in ("saved_model", "tflite", "modules") if k in converted]
        bad = next(filter(None, (self.ctx.runner.bad_path(n, "output") for n in named)), "")
        if bad:
            entry.update(failed_stage="convert", error=_one_line(bad))
            return None
        ref = f"{self.exports.reference.work}/reference_samples.npz"
        tol = self.ctx.tolerance("fp32")
        check = self.ctx.comparer.compare("savedmodel", None, "samples", ref, f"{work}/outputs_samples.npz", tol)
        if check is not None:  # families with an intermediate model (a SavedModel) check it too
            check.variant = rung.name
            self.ctx.report.checks.append(check.__dict__)
            if check.failures:
                entry.update(failed_stage="convert", error=f"savedmodel outside tolerance: {check.failures[0]}")
                return None
        return converted

    def _mode(self, planned: ConvertRung, quantizer: Variant, converted: dict, mode: str, entry: dict) -> Attempt:
        rung, int8 = planned.variant, self.ctx.int8
        assert self.exports.reference is not None
        request: dict = {
            **self.ctx.request,
            **self.ctx.quantize_fields(),
            **selective.request_fields(int8, mode),
            "mode": mode,
            "mode_spec": modes.get(mode).spec(),
            "output_names": self.exports.reference.output_names,
            "layout": converted.get("layout") or {},
        }
        reads = modes.QUANTIZER_INPUT[quantizer.kind]
        source = converted.get(reads) or (self._float_file(planned, converted, entry) if reads == "tflite" else "")
        if not source:
            return self._record(
                rung, mode, {"mode": mode, "status": "failed", "error": f"no {reads} to quantize"}, entry
            )
        request[reads] = source
        if converted.get("modules") and "debug_samples" in request:  # layers it names, by PyTorch module path
            request["modules"] = converted["modules"]
        if self.ctx.plan.measure is not None:  # LiteRT judges the file (the runtime phones use): see _judge
            request["judge"] = "litert"
        if not modes.get(mode).calibrated:  # only calibrated modes read it; the others' cache keys must not
            request.pop("calibration", None)
        if request.get("float_layers") == "auto":
            request["search"] = self._search_spec(mode)
        # One folder per (rung, mode); a second quantizer of the rung gets its own.
        first = planned.quantizers[mode][0] == quantizer
        work = f"quantize/{rung.name}/{mode}" if first else f"quantize/{rung.name}/{mode}-{quantizer.name}"
        artifact, seconds = self._quantize(quantizer, work, request, mode)
        if (artifact.get("selective") or {}).get("curve"):
            work, extra = self._time_curve(quantizer, work, request, artifact, int8.max_latency_cost)
            artifact, seconds = extra or artifact, seconds + (extra or {}).pop("seconds", 0.0)
        if request.get("judge") and "file" in artifact:
            work, judged = self._judge(work, request, artifact, mode)
            artifact, seconds = judged, seconds + judged.pop("seconds", 0.0)
        entry["seconds"] += seconds
        family = rung.family or ("tflite" if self.ctx.plan.tflite is not None else "")
        artifact.update(variant=rung.name, family=family, layout=converted.get("layout") or {})
        return self._record(rung, mode, artifact, entry, work)

    def _judge(self, work: str, request: dict, artifact: dict, mode: str) -> tuple[str, dict]:
        """The file run by LiteRT in the measure environment on every input
        set, and held to its mode there: its I/O, ops, problems and outputs
        are LiteRT's. (work where its outputs are, the artifact.)"""
        measurer = self.ctx.plan.measure
        assert measurer is not None
        fields = ("layout", "allow_flex", "int8_io", "mode", "mode_spec")
        ask: dict = {**self.ctx.request, **{k: request[k] for k in fields if k in request}}
        ask["tflite"] = artifact["file"]
        ask["int8_io"] = artifact.get("io") or request.get("int8_io") or "int8"
        kept = (artifact.get("selective") or {}).get("float_layers")
        if kept:
            ask["float_layers"] = list(kept)
        where = f"{work}/litert"
        try:
            run = self.ctx.runner.run(Step(measurer, where, ask, script=JUDGE, protocol="quantize"), mode=mode)
        except MachineProblem:  # a full disk ends the run wherever it is met
            raise
        except EnvironmentProblem as exc:  # no LiteRT here: the maker's interpreter had to do (it did not run it)
            return work, {**artifact, "status": "failed", "error": f"no LiteRT to judge the file: {exc.message}"}
        judged = run.result.get("artifact") or {"status": "failed", "error": run.error or "the judge wrote nothing"}
        merged = {k: v for k, v in artifact.items() if k not in ("problems", "error", "status", "judged_by")}
        for key in ("inputs", "outputs", "ops", "float_ops", "tensors", "problems", "error", "status", "judged_by"):
            if key in judged:
                merged[key] = judged[key]
        merged["seconds"] = run.seconds
        return where, merged

    def _record(self, rung: Variant, mode: str, artifact: dict, entry: dict, work: str = "") -> Attempt:
        attempt = Attempt(mode, rung.name, artifact)
        if attempt.made_file:
            self.checks.check(attempt, work, self._missed_before(mode))
        if attempt.ok and self.layout is None and validate.layout_name(artifact.get("layout")) != "mixed":
            self.layout = validate.layout_name(artifact.get("layout"))
        entry["modes"][mode] = "ok" if attempt.ok else _one_line(attempt.problem())
        self.attempts.setdefault(mode, []).append(attempt)
        return attempt

    def _float_file(self, planned: ConvertRung, converted: dict, entry: dict) -> str:
        """The rung's fp32 .tflite, for a quantizer that reads one (LiteRT
        Quantizer after a family that writes a SavedModel): the fp32 mode's
        file when it was made, else made now by the rung's first quantizer."""
        rung = planned.variant
        made = next((a for a in self.attempts.get("fp32", []) if a.variant == rung.name and a.made_file), None)
        if made is not None:
            return made.artifact["file"]
        if rung.name in self.floats:
            return self.floats[rung.name]
        first = next(
            (q for q in self.ctx.catalog.quantizers(rung) if modes.QUANTIZER_INPUT[q.kind] == "saved_model"), None
        )
        if first is None or not converted.get("saved_model"):
            return ""
        assert self.exports.reference is not None
        request: dict = {
            **self.ctx.request,
            **self.ctx.quantize_fields(),
            "mode": "fp32",
            "mode_spec": modes.get("fp32").spec(),
            "output_names": self.exports.reference.output_names,
            "layout": converted.get("layout") or {},
            "saved_model": converted["saved_model"],
        }
        request.pop("calibration", None)
        artifact, seconds = self._quantize(first, f"quantize/{rung.name}/fp32", request, "fp32")
        entry["seconds"] += seconds
        self.floats[rung.name] = artifact.get("file", "") if artifact.get("status") == "ok" else ""
        return self.floats[rung.name]

    def _quantize(self, quantizer: Variant, work: str, request: dict, mode: str) -> tuple[dict, float]:
        run = self.ctx.runner.run(Step(quantizer, work, request), mode=mode)
        artifact = dict(run.result.get("artifact") or {"mode": mode, "status": "failed", "error": run.error})
        if "error" not in artifact and run.error:
            artifact["error"] = run.error
        named = [artifact["file"]] if "file" in artifact else []
        named += [p.get("file") for p in (artifact.get("selective") or {}).get("curve") or []]
        bad = next(filter(None, (self.ctx.runner.bad_path(n, "artifact") for n in named)), "")
        if bad:  # nothing of it is read, timed or placed
            artifact = {"mode": mode, "status": "failed", "error": bad}
        return artifact, run.seconds

    def _search_spec(self, mode: str) -> dict:
        """Labels and target of the auto search, on --eval-data or the hold-out."""
        assert self.exports.reference is not None
        sets = ("eval", "holdout")
        ref = {s: self.ctx.comparer.outputs(f"{self.exports.reference.work}/reference_{s}.npz") for s in sets}
        return selective.search_spec(
            self.ctx.run_dir,
            {k: v for k, v in ref.items() if v is not None},
            self.ctx.labels,
            self.ctx.max_drop(mode),
        )

    def _time_curve(self, quantizer: Variant, work: str, request: dict, artifact: dict, cap: float | None):
        """Every file of the trade-off curve timed by LiteRT (XNNPACK, 1
        thread); over the latency cap, the file is made again with the
        float layers of the best point within it."""
        sel = artifact["selective"]
        files = {f"p{i}": p["file"] for i, p in enumerate(sel["curve"])}
        runs = self.ctx.options.latency_runs
        if runs <= 0 and cap is None:  # --latency-runs 0 and no cap to hold: no timing asked for
            return work, None
        # Files compared with each other: 3 interleaved rounds, at least 30 runs each (a few ms apiece).
        timed = measure.measure(self.ctx, files, f"{work}/measure", max(CURVE_RUNS, runs), full=False, rounds=3)
        for i, point in enumerate(sel["curve"]):
            config = measure.pick(timed.get(f"p{i}"))
            if config:
                point["latency_ms"], point["latency_min_ms"] = config["median_ms"], config["min_ms"]
        if timed:
            sel["latency_runtime"] = next(iter(timed.values())).get("runtime", "")
        sel["chosen"] = next(p for p in sel["curve"] if p["file"] == sel["chosen"]["file"])
        fallback = selective.over_cap(sel, cap)
        if fallback is None:
            return work, None
        names = fallback.get("names", sel["float_layers"][: fallback["float_layers"]])
        again, seconds = self._quantize(
            quantizer, f"{work}-capped", {**request, "float_layers": names, "search": None}, "int8"
        )
        again["selective"] = {
            **sel,
            "float_layers": names,
            "chosen": fallback,
            "met": fallback["accuracy"] >= sel["target"],
            "stopped": f"latency cap {cap:.0%} over full int8: {len(names)} float layer(s) instead of "
            f"{len(sel['float_layers'])}",
        }
        again["seconds"] = seconds
        return f"{work}-capped", again

    def _missed_before(self, mode: str) -> bool:
        """An earlier file of this mode missed its checks on the sample inputs
        (synthetic ones: real data is what the app sees, and is judged as it is)."""
        synthetic = str(self.ctx.report.inputs.get("samples", {}).get("source", "")).startswith("synthetic")
        earlier = self.attempts.get(mode, [])
        return synthetic and any(a.made_file and a.check is not None and a.check["status"] == "failed" for a in earlier)

    def best(self, mode: str) -> Attempt | None:
        """The attempt that made the mode's file: the first that validated,
        else the first that made a file at all, else the last one tried."""
        tries = self.attempts.get(mode, [])
        return (
            next((a for a in tries if a.ok), None)
            or next((a for a in tries if a.made_file), None)
            or (tries[-1] if tries else None)
        )
