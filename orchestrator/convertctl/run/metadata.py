"""Android-ready files: with --labels, TFLite metadata (the TFLite Support
schema Android Studio's ML Model Binding and the Task Library read) written
into each final file once it has passed its checks, before it is placed:
the labels file associated to the class-score output (TENSOR_AXIS_LABELS)
and, for an image input, the normalisation the run used (--mean/--std, on
the metadata's 0..255 pixel scale). The metadata stage writes it with
tflite-support and reads it back; LiteRT then runs the new file on the
sample inputs, and its outputs must equal the file's before, bit for bit:
metadata never changes what a file computes. Without --labels nothing is
written."""

from __future__ import annotations

from pathlib import Path

from convertctl.checks import validate
from convertctl.config import modes
from convertctl.errors import EXIT_CONVERSION, EXIT_USAGE, EXIT_VALIDATION, EnvironmentProblem, MachineProblem
from convertctl.inputs.data import ImagePrep, read_labels
from convertctl.run.context import Context
from convertctl.runtimes.base import Step
from convertctl.store import safefs

LABELS = "inputs/labels.txt"
JUDGE = "measure/judge.py"


def write_all(ctx: Context, finals: list) -> None:
    """Metadata into every final file (artifacts updated in place: file, size,
    metadata); a problem fails the run, naming the mode."""
    o = ctx.options
    writer = ctx.catalog.metadata_writer(ctx.runner.runtime.name)
    if not o.labels or not finals or writer is None:
        return
    names = read_labels(Path(o.labels))
    safefs.write_atomic(ctx.run_dir, LABELS, "".join(f"{n}\n" for n in names))
    for art in finals:
        problem = _one(ctx, writer, art, names)
        if problem:
            ctx.report.fail(*problem)
            return


def labels_output(art: dict, count: int) -> str:
    """The signature name of the output of `count` class scores, or ''."""
    for out in art.get("outputs") or []:
        shape = tuple(out.get("shape") or ())
        if validate.looks_like_scores(shape) and max(shape) == count:
            return str(out["name"])
    return ""


def normalization(ctx: Context) -> dict:
    """{image_input, mean, std} for the first 4-D float input of 1 or 3
    channels (PyTorch's shape), on the 0..255 scale; {} for other models."""
    o = ctx.options
    for spec in ctx.specs:
        shape = tuple(spec.shape)
        if spec.dtype != "float32" or len(shape) != 4 or (shape[1] not in (1, 3) and shape[3] not in (1, 3)):
            continue
        prep = ImagePrep(shape, tuple(o.mean) if o.mean else None, tuple(o.std) if o.std else None)
        return {"image_input": spec.name, "mean": _pixels(prep.mean, prep.c), "std": _pixels(prep.std, prep.c)}
    return {}


def _pixels(values, channels: int) -> list:
    """Per channel (one value stands for every channel), on the 0..255 scale."""
    return [float(v) * 255.0 for v in (values if len(values) == channels else [values[0]] * channels)]


def _one(ctx: Context, writer, art: dict, names: list) -> tuple[int, str] | None:
    mode, file = art["mode"], art["file"]
    output = labels_output(art, len(names))
    if not output:
        shapes = ", ".join(f"{o['name']} {list(o['shape'])}" for o in art.get("outputs") or [])
        return EXIT_USAGE, (
            f"--labels {ctx.options.labels}: {len(names)} class names, but no output of the model holds "
            f"{len(names)} class scores ({shapes}): no metadata can name them"
        )
    work = f"{file.rsplit('/', 1)[0]}/metadata"
    request: dict = {
        "tflite": file,
        "name": Path(str(ctx.options.model)).stem,
        "description": f"{mode} file made by convertctl ({art.get('quantizer', '')})",
        "labels": LABELS,
        "labels_output": output,
        "inputs": [{"name": t["name"], "tensor": t.get("tensor", t["name"])} for t in art.get("inputs") or []],
        "outputs": [{"name": t["name"], "tensor": t.get("tensor", t["name"])} for t in art.get("outputs") or []],
        **normalization(ctx),
    }
    try:
        run = ctx.runner.run(Step(writer, work, request), mode=mode)
    except MachineProblem:  # a full disk ends the run wherever it is met
        raise
    except EnvironmentProblem as exc:
        return exc.exit_code, f"{mode}: no environment to write TFLite metadata ({writer.name}): {exc.message}"
    made = run.result.get("file")
    if not run.ok or not made or ctx.runner.bad_path(made, "file"):
        return EXIT_CONVERSION, f"{mode}: TFLite metadata: {run.error or ctx.runner.bad_path(made or '', 'file')}"
    same = _same_outputs(ctx, art, made, work)
    if same.get("error"):
        return EXIT_VALIDATION, f"{mode}: TFLite metadata: {same['error']}"
    art.update(file=made, size_bytes=int(run.result.get("size_bytes") or art.get("size_bytes", 0)))
    art["metadata"] = {**run.result.get("metadata", {}), "outputs_unchanged": same}
    return None


def _same_outputs(ctx: Context, art: dict, made: str, work: str) -> dict:
    """LiteRT's outputs of the new file on the sample inputs against the
    file's before (as LiteRT judged it): equal, element for element."""
    measurer = ctx.plan.measure
    before_dir = art["file"].rsplit("/", 1)[0]
    before = ctx.comparer.outputs(f"{before_dir}/litert/outputs_samples.npz")
    if measurer is None or before is None:
        return {"compared": False, "why": "no LiteRT run of the file to compare with"}
    ask: dict = {**ctx.request, "tflite": made, "mode": art["mode"], "mode_spec": modes.get(art["mode"]).spec()}
    ask.update(layout=art.get("layout") or {}, allow_flex=ctx.options.allow_flex, int8_io=art.get("io") or "int8")
    kept = (art.get("selective") or {}).get("float_layers")
    if kept:
        ask["float_layers"] = list(kept)
    ask["input_sets"] = {"samples": ctx.request["input_sets"]["samples"]}
    where = f"{work}/litert"
    run = ctx.runner.run(Step(measurer, where, ask, script=JUDGE, protocol="quantize"), mode=art["mode"])
    after = ctx.comparer.outputs(f"{where}/outputs_samples.npz")
    if after is None:
        return {"error": f"LiteRT did not run the file with metadata ({run.error})"}
    import numpy as np

    differ = [n for n in before if n not in after or not np.array_equal(before[n], after[n])]
    if differ:
        return {"error": f"the file with metadata computes other outputs ({', '.join(differ)}) than without"}
    count = len(next(iter(before.values()))) if before else 0
    judged = (run.result.get("artifact") or {}).get("judged_by", "LiteRT")
    return {"compared": True, "samples": count, "runtime": judged}
