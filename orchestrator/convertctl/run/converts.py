"""The convert ladder: converter variants tried in the catalog's order until
every mode asked for has a file that converts and validates. A rung that
fails, or a mode that fails on one rung, hands over to the next rung; the
report lists every rung tried, and which rung made each file."""

from __future__ import annotations

from dataclasses import dataclass, field

from convertctl.checks import validate
from convertctl.config import modes
from convertctl.config.catalog import Catalog, Variant
from convertctl.errors import EnvironmentProblem
from convertctl.run import measure, selective
from convertctl.run.exports import ExportLadder, _one_line
from convertctl.run.steps import Steps
from convertctl.runtimes.base import Step

CURVE_RUNS = 30


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
class ConvertLadder:
    steps: Steps
    catalog: Catalog
    rungs: list
    exports: ExportLadder
    ctx: dict  # requests' common fields, the run's settings (see Pipeline._context)
    entries: list = field(default_factory=list)
    attempts: dict = field(default_factory=dict)  # mode -> [Attempt]

    def run(self, modes: list) -> None:
        remaining = list(modes)
        for rung in self.rungs:
            if not remaining:
                break
            entry = {"stage": "convert", "variant": rung.name, "family": rung.family, "status": "skipped"}
            self.entries.append(entry)
            why = self.skip_reason(rung)
            cannot = {m: self._cannot(rung, m) for m in remaining}
            todo = [m for m in remaining if not cannot[m]]
            if not why and not todo:
                why = "; ".join(dict.fromkeys(cannot.values()))
            if why:
                entry["reason"] = why
                continue
            entry.update(status="failed", modes={}, seconds=0.0)
            for mode in remaining:
                if cannot[mode]:
                    entry["modes"][mode] = cannot[mode]
            try:
                converted = self._convert(rung, entry)
                if converted is not None:
                    for mode in todo:
                        attempt = self._mode(rung, converted, mode, entry)
                        if attempt.ok:
                            remaining.remove(mode)
            except EnvironmentProblem as exc:
                entry.update(failed_stage="environment", error=_one_line(exc.message))
            if any(v == "ok" for v in entry["modes"].values()):
                entry["status"] = "used"

    def _cannot(self, rung: Variant, mode: str) -> str:
        """Why this rung cannot make the mode as asked, or ''."""
        quantizer, why = self.catalog.quantizer_for(rung, mode)
        if quantizer is None:
            return why
        int8 = self.ctx.get("int8")
        if mode == "int8" and int8 is not None and int8.float_layers and not quantizer.float_layers:
            return f"the {rung.family} family cannot keep int8 layers float (--int8-float-layers)"
        return ""

    def skip_reason(self, rung: Variant) -> str:
        if rung.input == "torch" and self.exports.facts.format == "onnx":
            return f"{rung.family} converts PyTorch models, and this model is an ONNX file"
        layout = self.ctx.get("layout")
        if layout and layout not in rung.layouts:
            return f"{rung.family} gives {'/'.join(rung.layouts).upper()} I/O only, --layout {layout} asked for"
        if rung.input == "onnx" and self.opset_for(rung) is None:
            lo, hi = rung.opsets
            asked = self.ctx.get("opset")
            if self.exports.facts.format == "onnx":
                return f"{rung.name} reads opsets {lo}-{hi}; this ONNX file is opset {self.exports.facts.opset}"
            if asked:
                return f"{rung.name} reads opsets {lo}-{hi}, --opset {asked} given"
            return f"{rung.name} reads opsets {lo}-{hi}, which no usable export variant writes"
        return ""

    def opset_for(self, rung: Variant) -> int | None:
        """The highest opset both the converter and an export variant accept
        (the converter's preferred one unless --opset says otherwise)."""
        lo, hi = rung.opsets or (7, 13)
        if self.exports.facts.format == "onnx":  # the file's own opset, as given
            have = self.exports.facts.opset or 0
            return have if lo <= have <= hi else None
        asked = self.ctx.get("opset")
        if asked:
            return asked if lo <= asked <= hi else None
        top = max((v.max_opset for v in self.exports.usable()), default=0)
        want = min(rung.opset or hi, top)
        return want if want >= lo else None

    def _convert(self, rung: Variant, entry: dict) -> dict | None:
        # layout: the --layout asked for (None: the converter's own), for families that can give either.
        request = {
            **self.ctx["request"],
            "output_names": self.exports.reference.output_names,
            "layout": self.ctx.get("layout"),
        }
        if rung.input == "onnx":
            onnx = self.exports.onnx(self.opset_for(rung))
            entry["opset"] = onnx.opset
            if not onnx.ok:
                failure = onnx.error or (onnx.check or {}).get("failures", ["ONNX check failed"])[0]
                entry.update(failed_stage="export", error=_one_line(f"ONNX opset {onnx.opset}: {failure}"))
                return None
            request["onnx"] = onnx.file
        else:
            request["model"] = self.ctx["model"]
            request.update(self.ctx.get("model_request") or {})  # how to load it: arch, code_dir...
        work = f"convert/{rung.name}"
        run = self.steps.run(Step(rung, work, request))
        entry["seconds"] += run.seconds
        if not run.ok:
            entry.update(failed_stage="convert", error=_one_line(run.error))
            return None
        converted = dict(run.result)
        converted["work"] = work
        bad = next(
            filter(None, (self.steps.bad_path(converted[k], k) for k in ("saved_model", "tflite") if k in converted)),
            "",
        )
        if bad:
            entry.update(failed_stage="convert", error=_one_line(bad))
            return None
        ref = f"{self.exports.reference.work}/reference_samples.npz"
        tol = self.ctx["tolerance"]("fp32")
        check = self.steps.compare("savedmodel", None, "samples", ref, f"{work}/outputs_samples.npz", tol)
        if check is not None:  # families with an intermediate model (a SavedModel) check it too
            check.variant = rung.name
            self.steps.report.checks.append(check.__dict__)
            if check.failures:
                entry.update(failed_stage="convert", error=f"savedmodel outside tolerance: {check.failures[0]}")
                return None
        return converted

    def _mode(self, rung: Variant, converted: dict, mode: str, entry: dict) -> Attempt:
        int8 = self.ctx.get("int8") or selective.Int8Options()
        quantizer, _ = self.catalog.quantizer_for(rung, mode)
        assert quantizer is not None  # _cannot said so before
        request = {
            **self.ctx["request"],
            **self.ctx["quantize"],
            **selective.request_fields(int8, mode),
            "mode": mode,
            "mode_spec": modes.get(mode).spec(),
            "output_names": self.exports.reference.output_names,
            "layout": converted.get("layout") or {},
        }
        reads = modes.QUANTIZER_INPUT[quantizer.kind]
        source = converted.get(reads) or (self._float_file(rung, converted, entry) if reads == "tflite" else "")
        if not source:
            return self._record(
                rung, mode, {"mode": mode, "status": "failed", "error": f"no {reads} to quantize"}, entry
            )
        request[reads] = source
        if not modes.get(mode).calibrated:  # only calibrated modes read it; the others' cache keys must not
            request.pop("calibration", None)
        if request.get("float_layers") == "auto":
            request["search"] = self._search_spec(mode)
        work = f"quantize/{rung.name}/{mode}"
        artifact, seconds = self._quantize(quantizer, work, request, mode)
        if (artifact.get("selective") or {}).get("curve"):
            work, extra = self._time_curve(quantizer, work, request, artifact, int8.max_latency_cost)
            artifact, seconds = extra or artifact, seconds + (extra or {}).pop("seconds", 0.0)
        entry["seconds"] += seconds
        artifact.update(variant=rung.name, family=rung.family, layout=converted.get("layout") or {})
        return self._record(rung, mode, artifact, entry, work)

    def _record(self, rung: Variant, mode: str, artifact: dict, entry: dict, work: str = "") -> Attempt:
        attempt = Attempt(mode, rung.name, artifact)
        if attempt.made_file:
            self._check(attempt, work)
        entry["modes"][mode] = "ok" if attempt.ok else _one_line(attempt.problem())
        self.attempts.setdefault(mode, []).append(attempt)
        return attempt

    def _float_file(self, rung: Variant, converted: dict, entry: dict) -> str:
        """The rung's fp32 .tflite, for a quantizer that reads one (LiteRT
        Quantizer after a family that writes a SavedModel): the fp32 mode's
        file when it was made, else made now by the rung's first quantizer."""
        made = next((a for a in self.attempts.get("fp32", []) if a.variant == rung.name and a.made_file), None)
        if made is not None:
            return made.artifact["file"]
        first = self.catalog.quantizers(rung)[0]
        if modes.QUANTIZER_INPUT[first.kind] != "saved_model" or not converted.get("saved_model"):
            return ""
        request = {
            **self.ctx["request"],
            **self.ctx["quantize"],
            "mode": "fp32",
            "mode_spec": modes.get("fp32").spec(),
            "output_names": self.exports.reference.output_names,
            "layout": converted.get("layout") or {},
            "saved_model": converted["saved_model"],
        }
        request.pop("calibration", None)
        artifact, seconds = self._quantize(first, f"quantize/{rung.name}/fp32", request, "fp32")
        entry["seconds"] += seconds
        return artifact.get("file", "") if artifact.get("status") == "ok" else ""

    def _quantize(self, quantizer: Variant, work: str, request: dict, mode: str) -> tuple[dict, float]:
        run = self.steps.run(Step(quantizer, work, request), mode=mode)
        artifact = dict(run.result.get("artifact") or {"mode": mode, "status": "failed", "error": run.error})
        if "error" not in artifact and run.error:
            artifact["error"] = run.error
        named = [artifact["file"]] if "file" in artifact else []
        named += [p.get("file") for p in (artifact.get("selective") or {}).get("curve") or []]
        bad = next(filter(None, (self.steps.bad_path(n, "artifact") for n in named)), "")
        if bad:  # nothing of it is read, timed or placed
            artifact = {"mode": mode, "status": "failed", "error": bad}
        return artifact, run.seconds

    def _search_spec(self, mode: str) -> dict:
        """Labels and target of the auto search, on --eval-data or the hold-out."""
        sets = ("eval", "holdout")
        ref = {s: self.steps.outputs(f"{self.exports.reference.work}/reference_{s}.npz") for s in sets}
        return selective.search_spec(
            self.steps.run_dir,
            {k: v for k, v in ref.items() if v is not None},
            self.ctx.get("labels"),
            self.ctx["max_drop"](mode),
        )

    def _time_curve(self, quantizer: Variant, work: str, request: dict, artifact: dict, cap: float | None):
        """Every file of the trade-off curve timed by LiteRT (XNNPACK, 1
        thread); over the latency cap, the file is made again with the
        float layers of the best point within it."""
        sel = artifact["selective"]
        files = {f"p{i}": p["file"] for i, p in enumerate(sel["curve"])}
        runs = int(self.ctx.get("measure_runs", 10))
        if runs <= 0 and cap is None:  # --latency-runs 0 and no cap to hold: no timing asked for
            return work, None
        # Files compared with each other: 3 interleaved rounds, at least 30 runs each (a few ms apiece).
        timed = measure.measure(
            self.steps, self.catalog, files, f"{work}/measure", max(CURVE_RUNS, runs), full=False, rounds=3
        )
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

    def _check(self, attempt: Attempt, work: str) -> None:
        mode, art = attempt.mode, attempt.artifact
        ref = f"{self.exports.reference.work}/reference_samples.npz"
        check = self.steps.compare(
            "tflite", mode, "samples", ref, f"{work}/outputs_samples.npz", self.ctx["tolerance"](mode)
        )
        if check is None:
            return
        check.variant = attempt.variant
        check.failures += validate.io_contract(
            art,
            self.ctx["input_shapes"],
            self.exports.reference.outputs,
            art.get("layout"),
            self.ctx.get("layout"),
            input_dtypes=self.ctx.get("input_dtypes"),
            dynamic_batch=bool(self.ctx.get("dynamic_batch")),
        )
        if self.ctx.get("dynamic_batch"):
            check.failures += self._batch_check(attempt, work)
        check.status = "failed" if check.failures else check.status
        self.steps.report.checks.append(check.__dict__)
        attempt.check = check.__dict__
        labels = self.ctx.get("labels")
        if labels is not None:
            attempt.accuracy = self._accuracy(mode, work, labels)
        elif (art.get("selective") or {}).get("set") == "holdout":  # judged by PyTorch's own top-1
            attempt.accuracy = self._accuracy(mode, work, None, "holdout")

    def _batch_check(self, attempt: Attempt, work: str) -> list:
        """--dynamic-batch: the file run at batch N against the reference at
        batch N, recorded as its own check; its failures fail the mode."""
        ref = f"{self.exports.reference.work}/reference_batch.npz"
        got = f"{work}/outputs_batch.npz"
        if not (self.steps.run_dir / ref).is_file():
            return []
        batch = self.steps.report.inputs.get("batch", {}).get("batch", "N")
        check = self.steps.compare("tflite", attempt.mode, "batch", ref, got, self.ctx["tolerance"](attempt.mode))
        if check is None:
            return [f"batch {batch}: the file did not run at batch {batch}"]
        check.variant, check.note = attempt.variant, f"batch {batch}"
        self.steps.report.checks.append(check.__dict__)
        return [f"batch {batch}: {f}" for f in check.failures]

    def _accuracy(self, mode: str, work: str, labels, set_name: str = "eval") -> dict | None:
        ref = self.steps.outputs(f"{self.exports.reference.work}/reference_{set_name}.npz")
        got = self.steps.outputs(f"{work}/outputs_{set_name}.npz")
        if ref is None or got is None:
            return None
        if labels is None:
            labels = selective.top1(ref)
        base, value = validate.accuracy(ref, labels), validate.accuracy(got, labels)
        budget = self.ctx["max_drop"](mode)
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

    def best(self, mode: str) -> Attempt | None:
        """The attempt that made the mode's file: the first that validated,
        else the first that made a file at all, else the last one tried."""
        tries = self.attempts.get(mode, [])
        return (
            next((a for a in tries if a.ok), None)
            or next((a for a in tries if a.made_file), None)
            or (tries[-1] if tries else None)
        )
