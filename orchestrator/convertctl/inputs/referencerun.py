"""--reference-run DIR: PyTorch's outputs from an earlier run, for
`convertctl quantize`. A float .tflite judged against its own outputs
proves only that quantizing did not move it; when the run that made it is at
hand (kept with --keep-run), its inputs and PyTorch's outputs on them are
the better reference: the quantized file is then held to the model the user
trained, as `convertctl run` holds it.

The folder is data from outside: it must carry convertctl's run marker, its
report.json is read as data (a rung name becomes a path only once it is a
plain name), and no link inside it is followed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import UsageError
from convertctl.inputs.arrays import fit_arrays, load_arrays
from convertctl.store import safefs
from convertctl.store.rundir import MARKER

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
# What can stand as "PyTorch's outputs": the reference a run of a PyTorch
# model (or an ONNX file, run by onnxruntime) made; a run of a .tflite had only
# that file's own outputs, which the quantize run computes itself.
SOURCES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class ReferenceRun:
    folder: Path
    samples: dict  # input name -> (N, *shape) array: the inputs the earlier run compared on
    outputs: dict  # output name -> (N, ...) array: what computed them (source) gave on those inputs
    output_names: list
    source: str  # torch or onnxruntime
    model: str  # the model file the earlier run read, as its report names it (data, never opened)
    model_sha256: str
    made_it: bool  # the .tflite being quantized is one that run made (by its sha256)

    def describe(self) -> str:
        who = {"torch": "PyTorch's", "onnxruntime": "onnxruntime's"}[self.source]
        return f"{who} outputs of {self.model}, on the inputs of run {self.folder}"


def _fail(folder: Path, problem: str) -> UsageError:
    return UsageError(f"--reference-run {folder}: {problem}")


def read(folder: Path, shapes: dict, tflite_sha256: str) -> ReferenceRun:
    """The earlier run's sample inputs, fitted to ``shapes`` (the float
    file's inputs, in its order and layout), and the reference outputs on
    them; a UsageError naming the folder and what is wrong otherwise."""
    if not folder.is_dir():
        raise _fail(folder, "not a folder (give a run directory kept with --keep-run)")
    try:
        if not safefs.is_file(folder, MARKER):
            raise _fail(folder, f"not a convertctl run directory (no {MARKER}; keep one with --keep-run)")
        report = json.loads(safefs.read_text(folder, "report.json"))
    except FileNotFoundError:
        raise _fail(folder, "no report.json in it (the run did not finish)") from None
    except (OSError, ValueError, safefs.Unsafe) as exc:
        raise _fail(folder, f"cannot read its report.json ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("model"), dict):
        raise _fail(folder, "its report.json is not a convertctl report")
    model = report["model"]
    source = model.get("reference")
    if source not in SOURCES:
        raise _fail(folder, f"its reference outputs were computed by {source!r}, not by PyTorch or onnxruntime")
    rung = next(
        (r.get("variant") for r in report.get("ladder") or [] if isinstance(r, dict) and r.get("stage") == "export"
         and r.get("status") == "used"),
        None,
    )  # fmt: skip
    if not isinstance(rung, str) or not _PLAIN.fullmatch(rung):
        raise _fail(folder, "its report names no export step that made the reference")
    inputs_rel, outputs_rel = "inputs/samples.npz", f"export/{rung}/reference_samples.npz"
    for rel in (inputs_rel, outputs_rel):
        try:
            kind = safefs.kind(folder, rel)
        except safefs.Unsafe:  # a link or a device: never followed
            kind = "unsafe"
        if kind != "file":
            raise _fail(folder, f"{rel} is missing or not a regular file")
    made = next((a for a in _artifacts(report) if a.get("sha256") == tflite_sha256), None)
    layout = made.get("layout") if made and isinstance(made.get("layout"), dict) else {}
    given = _ordered(load_arrays(folder / inputs_rel, "sample inputs"), model.get("inputs"))
    samples = _laid_out(given, layout.get("inputs"))
    if len(samples) == len(shapes):  # the file's own input names, in its order
        samples = dict(zip(shapes, samples.values()))
    samples = fit_arrays(folder / inputs_rel, samples, shapes)
    outputs = _laid_out(load_arrays(folder / outputs_rel, "reference outputs"), layout.get("outputs"))
    count = {len(a) for a in samples.values()} | {len(a) for a in outputs.values()}
    if len(count) != 1:
        raise _fail(folder, f"its inputs and reference outputs hold different numbers of samples ({sorted(count)})")
    names = [str(o.get("name")) for o in model.get("outputs") or [] if isinstance(o, dict)]
    if sorted(names) != sorted(outputs):
        names = sorted(outputs)
    return ReferenceRun(
        folder, samples, outputs, names, source, str(model.get("path", "")), str(model.get("sha256", "")), bool(made)
    )


def _artifacts(report: dict) -> list:
    """The earlier run's files with their sha256 (from its manifest)."""
    outputs = (report.get("manifest") or {}).get("outputs") or {}
    found = []
    for art in report.get("artifacts") or []:
        if isinstance(art, dict) and isinstance(art.get("path"), str):
            found.append({**art, "sha256": outputs.get(Path(art["path"]).name) if isinstance(outputs, dict) else None})
    return found


def _ordered(arrays: dict, inputs) -> dict:
    """The arrays in the order of forward()'s inputs, as the report lists them."""
    order = [str(i.get("name")) for i in inputs or [] if isinstance(i, dict)]
    if sorted(order) != sorted(arrays):
        return arrays
    return {name: arrays[name] for name in order}


def _laid_out(arrays: dict, perms) -> dict:
    """PyTorch-layout arrays (N, *shape) in the made file's layout: the
    permutation that file's converter reported, per tensor (by name, else by
    position); the run's own checks undid the same permutation."""
    if not isinstance(perms, dict) or not perms:
        return arrays
    by_position = list(perms.values())
    out = {}
    for i, (name, arr) in enumerate(arrays.items()):
        perm = perms.get(name, by_position[i] if i < len(by_position) else None)
        if isinstance(perm, list) and sorted(perm) == list(range(arr.ndim - 1)):
            arr = arr.transpose([0, *(p + 1 for p in perm)])
        out[name] = arr
    return out
