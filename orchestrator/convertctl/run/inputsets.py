"""The inputs a run compares, calibrates and evaluates on: --sample-inputs,
--eval-data (numbered by --labels), --calib or seeded synthetic sets, an
earlier run's inputs for --reference-run; all read and checked before
anything runs, then written into the run directory's inputs/."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

from convertctl.config import modes
from convertctl.config.options import Options
from convertctl.config.settings import SYNTHETIC_CALIB
from convertctl.errors import UsageError
from convertctl.inputs import arrays as inputs
from convertctl.inputs import inputspec, referencerun
from convertctl.inputs.data import load_calibration, load_eval, read_labels
from convertctl.run import selective
from convertctl.run.context import CALIBRATION, Context
from convertctl.run.exports import Reference
from convertctl.run.runner import Runner
from convertctl.store.digests import Hasher

# With real data the parity checks take at least this many samples: "top-1
# 88 %" on 8 samples is 7 of 8.
MIN_REAL_SAMPLES = 64


@dataclass(frozen=True)
class InputSets:
    sets: dict  # name -> arrays or a Synthetic set: samples, eval, holdout, batch
    labels: Any  # --eval-data's labels (an int numpy array), or None
    calib: dict | inputspec.Synthetic | None  # the calibration set; None when no mode is calibrated
    source: str  # where the sample inputs came from, as the report says it
    classes: int = 0  # how many classes --eval-data (or --labels) names


def reference_run(o: Options, facts, shapes: dict) -> referencerun.ReferenceRun | None:
    """--reference-run's folder read, for a float .tflite only."""
    folder = o.path("reference_run")
    if folder is None:
        return None
    if facts.format != "tflite":
        raise UsageError(
            f"--reference-run is for a float .tflite (convertctl quantize); {facts.path} is a {facts.format} "
            "model, whose run computes PyTorch's outputs itself"
        )
    return referencerun.read(folder, shapes, Hasher().file(facts.path))


def load(o: Options, int8: selective.Int8Options, specs: list, earlier: referencerun.ReferenceRun | None) -> InputSets:
    """Every input set a run needs, read and checked before anything runs:
    bad data fails before any work."""
    shapes = {s.name: s.shape for s in specs}
    sets: dict = {}
    labels = None
    class_names: list = []
    eval_data, calib_path, sample_path = o.path("eval_data"), o.path("calib"), o.path("sample_inputs")
    if eval_data:
        names = read_labels(Path(o.labels)) if o.labels else None
        sets["eval"], labels, class_names = load_eval(eval_data, shapes, o.mean, o.std, o.resize, names)
        sets["eval"] = inputspec.typed(sets["eval"], specs, eval_data)
    calib: dict | inputspec.Synthetic | None = None
    if modes.calibrated(o.modes):
        calib = (
            inputspec.typed(load_calibration(calib_path, shapes, o.mean, o.std, resize=o.resize), specs, calib_path)
            if calib_path
            else inputspec.Synthetic(tuple(specs), SYNTHETIC_CALIB, o.seed + 1)
        )
        if int8.auto and labels is None:  # judged on data it was not calibrated on
            calib, sets["holdout"] = selective.split_holdout(inputspec.as_arrays(calib))
    # The parity checks run on real data whenever the user gave some: an
    # int8 model calibrated on real inputs clips random noise, and would
    # be judged on that instead of on what it will see.
    samples: dict | inputspec.Synthetic
    if earlier is not None:  # the earlier run's inputs: PyTorch's outputs are on them
        samples = inputspec.typed(earlier.samples, specs, earlier.folder / "inputs" / "samples.npz")
        source = f"the inputs of run {earlier.folder}"
    elif sample_path:
        samples = inputspec.typed(inputs.load_sample_inputs(sample_path, shapes), specs, sample_path)
        source = str(sample_path)
    elif eval_data or (calib_path and calib is not None):
        real = sets["eval"] if eval_data else inputspec.as_arrays(calib)
        samples = _first(real, max(o.samples, MIN_REAL_SAMPLES))
        count = len(next(iter(samples.values())))
        source = f"first {count} of {eval_data or calib_path}"
    else:
        samples = inputspec.Synthetic(tuple(specs), o.samples, o.seed)
        source = f"synthetic (seed {o.seed})"
    sets["samples"] = samples
    if o.dynamic_batch:  # one sample of batch N, checked next to the batch-1 samples
        sets["batch"] = inputspec.batched(inputspec.as_arrays(samples), inputspec.BATCH_CHECK)
    # --labels' lines: classes with no folder count too
    return InputSets(sets, labels, calib, source, len(class_names))


def write(runner: Runner, data: InputSets, o: Options) -> dict:
    """The sets into the run directory's inputs/; what the report says of them."""
    run_dir, sets, labels, calib = runner.run_dir, data.sets, data.labels, data.calib
    info: dict[str, dict] = {}
    for name, arrays in sets.items():
        _save(runner, run_dir / "inputs" / f"{name}.npz", arrays)
        info[name] = {"count": _count(arrays)}
    if "batch" in info:
        info["batch"]["batch"] = inputspec.BATCH_CHECK
    if labels is not None:
        info["eval"].update(source=str(o.eval_data), classes=data.classes)
    if calib is not None:
        _save(runner, run_dir / CALIBRATION, calib)
        info["calibration"] = {
            "count": _count(calib),
            "synthetic": o.calib is None,
            "source": str(o.calib) if o.calib else "synthetic",
        }
    return info


def _count(data) -> int:
    return data.count if isinstance(data, inputspec.Synthetic) else len(next(iter(data.values())))


def _save(runner: Runner, path: Path, data) -> None:
    """A set's npz; synthetic sets are taken from the cache when it holds
    them (generating and writing them is the rerun's biggest host cost)."""
    if not isinstance(data, inputspec.Synthetic):
        inputs.save_set(path, data)
        return
    memo = runner.cache.memo if runner.cache else None
    key = data.key() if memo is not None else ""
    if memo is not None and memo.recall_file("inputs", key, path, runner.hasher):
        return
    inputs.save_set(path, data.arrays())
    if memo is not None:
        memo.keep_file("inputs", key, path, runner.hasher)


def _first(arrays: dict, count: int) -> dict:
    return {name: arr[:count] for name, arr in arrays.items()}


def pytorch_reference(ctx: Context, litert: Reference, earlier: referencerun.ReferenceRun) -> Reference:
    """--reference-run: the float file's reference replaced by PyTorch's
    outputs from the run that made it, saved in this run directory under the
    float file's own output names (in its order), so every later check reads
    them where it reads any reference."""
    if len(earlier.outputs) != len(litert.output_names):
        raise UsageError(
            f"--reference-run {earlier.folder}: its model has {len(earlier.outputs)} output(s), the float .tflite "
            f"{len(litert.output_names)}; was the file made from that model?"
        )
    work = "export/reference-run"
    arrays = dict(zip(litert.output_names, earlier.outputs.values()))
    inputs.save_set(ctx.runner.run_dir / work / "reference_samples.npz", arrays)
    ctx.report.model["reference"] = earlier.source
    ctx.report.notices.append(
        f"reference: {earlier.describe()}"
        + ("" if earlier.made_it else " (the float .tflite is not a file that run made; its outputs are used as given)")
    )
    return dataclass_replace(litert, work=work, source=earlier.source)
