"""One `convertctl run`: inputs checked, the export and convert ladders run
through a runtime, every output compared with PyTorch, the report
assembled. Domain errors are raised as ConvertError; stage and check
failures are recorded in the report, whose exit_code the CLI returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from convertctl.checks import validate
from convertctl.config import settings
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
from convertctl.inputs import inputspec, modelfile, modelflags, referencerun
from convertctl.inputs.data import calibration_notes, labels_fit
from convertctl.report.model import Report
from convertctl.run import inputsets, manifest, metadata, placement, selective
from convertctl.run.comparer import Comparer
from convertctl.run.context import Context
from convertctl.run.converts import ConvertLadder
from convertctl.run.exports import ExportLadder
from convertctl.run.measure import measure_artifacts
from convertctl.run.plan import Plan, make_plan
from convertctl.run.protocol import InputsPart
from convertctl.run.recorder import Recorder
from convertctl.run.runner import Runner
from convertctl.runtimes.base import Runtime, Say
from convertctl.store import procs, rundir
from convertctl.store.cache import StageCache, open_cache
from convertctl.store.digests import Hasher


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


@dataclass(frozen=True)
class Prepared:
    """What a run knows before anything runs: the model, its inputs, the plan."""

    facts: modelfile.ModelFacts
    specs: list
    plan: Plan
    cache: StageCache | None
    hasher: Hasher
    notices: list  # what the user must know before anything runs (a cache that cannot be used)


class Pipeline:
    def __init__(self, opts: Options, runtime: Runtime, catalog: Catalog, say: Say):
        self.opts, self.runtime, self.catalog, self.say = opts, runtime, catalog, say
        self.model, self.out = Path(opts.model), Path(opts.out)
        self.int8 = selective.Int8Options.of(opts)
        self.placed = False  # its files are in --out (or its run dir, failed): the run has ended

    def prepare(self) -> Prepared:
        """Everything checked and planned, nothing run (--dry-run stops here)."""
        o = self.opts
        check_options(o)
        cache, cache_notice = open_cache(o.no_cache)
        hasher = Hasher(cache.file_state() if cache else None)
        facts = modelfile.read_model(self.model, hasher.state)
        modelflags.check_format(facts, o, self.runtime)
        specs = inputspec.resolve(input_specs(o), facts, o.dynamic_batch)
        if o.dynamic_batch:
            inputspec.check_dynamic_batch(specs)
        plan = make_plan(o, facts, self.catalog, self.runtime.name, bool(self.int8.float_layers))
        return Prepared(facts, specs, plan, cache, hasher, [cache_notice] if cache_notice else [])

    def run(self) -> Report:
        o = self.opts
        ready = self.prepare()
        facts, specs, hasher = ready.facts, ready.specs, ready.hasher
        shapes = {s.name: s.shape for s in specs}
        earlier = inputsets.reference_run(o, facts, shapes)
        data = inputsets.load(o, self.int8, specs, earlier)  # bad data fails before any work
        sets, labels, calib, sample_source = data.sets, data.labels, data.calib, data.source
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
        report.notices += self.runtime.notices + killed + ready.notices
        if calib is not None and o.calib is None:
            report.notices.append(
                f"int8 calibrated on {SYNTHETIC_CALIB} SYNTHETIC random inputs: no --calib "
                "given. Real int8 accuracy needs 100-500 real samples (--calib DIR|.npz)."
            )
        if isinstance(calib, dict):  # the user's calibration data (synthetic sets are what they are)
            report.notices += calibration_notes(o.path("calib"), calib)
        report.manifest = manifest.new(o, self.runtime.name)
        recorder = Recorder(report, self.runtime)
        runner = Runner(self.runtime, run_dir, self.say, recorder, cache=ready.cache, hasher=hasher)
        comparer = Comparer(run_dir, hasher, ready.cache.memo if ready.cache else None)
        ctx = Context(
            options=o,
            catalog=self.catalog,
            plan=ready.plan,
            runner=runner,
            comparer=comparer,
            report=report,
            int8=self.int8,
            specs=tuple(specs),
            request=self._request(facts, specs, sets),
            model_request=modelflags.load_fields(facts, o),  # how to load the model: export, torch families
            labels=labels,
        )
        try:
            report.inputs = inputsets.write(runner, data, o)
            report.inputs["samples"]["source"] = sample_source
            report.manifest["inputs"] = manifest.input_hashes(o, run_dir, hasher)
            self._ladders(ctx, facts, earlier)
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
        # Placing is the run's last step: once files move into --out the run has passed (procs.held_interrupt).
        with procs.held_interrupt() as held:
            self._place(run_dir, report, hasher)
            self.placed = True
        if held:
            self.say("Ctrl-C came while the files were being placed: the run had ended, and its files are all in place")
        return report

    def _request(self, facts, specs: list, sets: dict) -> InputsPart:
        return {
            "model": str(facts.path),
            "model_format": facts.format,
            "input_names": [s.name for s in specs],
            "input_shapes": [list(s.shape) for s in specs],
            "input_dtypes": [s.dtype for s in specs],
            "dynamic_batch": self.opts.dynamic_batch,
            "input_sets": {name: f"inputs/{name}.npz" for name in sets},
        }

    def _ladders(self, ctx: Context, facts, earlier: referencerun.ReferenceRun | None) -> None:
        o, report = self.opts, ctx.report
        exports = ExportLadder(ctx, facts)
        ladder = ConvertLadder(ctx, exports)
        try:
            if exports.run_reference(ctx.plan.first_opset()) is None:
                code = {"input": EXIT_USAGE, "environment": EXIT_ENVIRONMENT}.get(exports.error_kind, EXIT_CONVERSION)
                report.fail(code, self._export_failure(exports))
                return
            assert exports.reference is not None
            report.model["outputs"] = exports.reference.outputs
            if earlier is not None:
                exports.reference = inputsets.pytorch_reference(ctx, exports.reference, earlier)
            labels = ctx.labels
            misfit = labels_fit(o.path("eval_data"), labels, exports.reference.outputs) if labels is not None else ""
            if misfit:
                report.fail(EXIT_USAGE, misfit)
                return
            report.model["reference"] = exports.reference.source
            notice = inputspec.naming_notice(list(ctx.specs), exports.reference.model_input_names)
            if notice:
                report.notices.append(notice)
            ladder.run(o.modes)
            finals = [a.artifact for a in map(ladder.best, o.modes) if a is not None and a.ok]
            measure_artifacts(ctx, finals, o.latency_runs)
            metadata.write_all(ctx, finals)  # --labels: TFLite metadata into each file that passed
        finally:
            report.ladder = exports.entries + ladder.entries
        self._collect(report, ladder)

    def _export_failure(self, exports: ExportLadder) -> str:
        if exports.error_kind == "input":
            model = str(self.model.resolve())
            return exports.error if model in exports.error else f"{self.model}: {exports.error}"
        rung = next((e["variant"] for e in reversed(exports.entries) if e["status"] == "failed"), "")
        return f"export stage ({rung}): {exports.error}" if rung else exports.error

    def _collect(self, report: Report, ladder: ConvertLadder) -> None:
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
                "step": 100.0 / first["samples"],
                "modes": {
                    m: {k: a[k] for k in ("accuracy", "drop", "max_drop", "status", "variant")}
                    for m, a in accuracy.items()
                },
            }
            self._question_the_accuracy(report)
        self._question_the_layouts(report)

    def _warn(self, report: Report, message: str, code: int = EXIT_USAGE) -> None:
        """A check that cannot mean what it says: a loud notice, a failure under --strict."""
        report.notices.append("WARNING: " + message)
        if self.opts.strict:
            report.fail(code, message + " (--strict)")

    def _question_the_accuracy(self, report: Report) -> None:
        acc = report.accuracy or {}
        step = acc["step"]
        for mode, m in acc["modes"].items():
            if m["max_drop"] < step and acc["set"] == "eval":
                self._warn(
                    report,
                    f"{mode}'s accuracy budget ({m['max_drop']:g} points) is smaller than one sample of "
                    f"--eval-data ({acc['samples']} samples: {step:.3g} points each): one sample flipping fails it; "
                    "give more labelled samples or a larger --max-accuracy-drop",
                    EXIT_VALIDATION,
                )
        classes = _classes(report.model.get("outputs") or [])
        if acc["set"] == "eval" and classes >= 2 and acc["pytorch"] < 2 * 100.0 / classes:
            self._warn(
                report,
                f"PyTorch's own accuracy on --eval-data is {acc['pytorch']:.1f}%, near chance ({100.0 / classes:.1f}% "
                f"for {classes} classes): the labels most likely do not follow the model's class order; give "
                "--labels FILE (one class name per line, in the model's order). Every accuracy check of this run "
                "measures nothing",
            )

    def _question_the_layouts(self, report: Report) -> None:
        made = [a for a in report.artifacts if "file" in a]
        layouts = {a["mode"]: validate.layout_name(a.get("layout")) for a in made}
        if len(set(layouts.values())) > 1:
            listed = ", ".join(
                f"{m}: {lay.upper()} I/O ({next(a['variant'] for a in made if a['mode'] == m)})"
                for m, lay in layouts.items()
            )
            self._warn(
                report,
                f"the files have different I/O layouts ({listed}): an app feeds each its own way",
                EXIT_VALIDATION,
            )

    # -- results --------------------------------------------------------
    def _place(self, run_dir: Path, report: Report, hasher: Hasher | None = None) -> None:
        with rundir.out_lock(self.out, self.say):  # concurrent runs on one --out take turns
            placement.place(self.opts, run_dir, report, hasher)


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


def _classes(outputs: list) -> int:
    """The class count of the first output that looks like class scores, or 0."""
    for out in sorted(outputs, key=lambda o: o["name"]):
        if validate.looks_like_scores(tuple(out["shape"])):
            return int(math.prod(d for d in out["shape"] if d != 1))
    return 0
