"""Outputs of every stage compared with the PyTorch reference, as data.

Like optimum's exporters: every problem is collected before anything fails;
a structural mismatch (names, count, shape) fails the check outright, a
tolerance miss marks it failed and says by how much.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy
from convertctl.config import modes
from convertctl.config.tolerance import Tolerance
from convertctl.errors import UsageError
from convertctl.store.digests import sha256_file

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy


# Below this many samples a share is said as a count ("7 of 8"): 88 % of 8
# sounds like a measurement and is one sample.
FEW_SAMPLES = 64


def share(hits: int, total: int) -> str:
    """'7 of 8' when there are few samples, '87.5% (112 of 128)' otherwise."""
    if total < FEW_SAMPLES:
        return f"{hits} of {total}"
    return f"{100.0 * hits / total:.1f}% ({hits} of {total})" if total else "-"


@functools.cache
def code_hash() -> str:
    """This module's source: a remembered comparison (steps.Steps.compare)
    made by other comparing code is not reused."""
    return sha256_file(Path(__file__))


def tolerance_for(mode: str, overrides: dict | None = None) -> Tolerance:
    """The mode's tolerance (modes.py) with the user's overrides."""
    base = asdict(modes.get(mode).tolerance)
    for key, value in (overrides or {}).get(mode, {}).items():
        if key not in base:
            raise UsageError(f"unknown tolerance {key!r} for {mode} (known: {', '.join(base)})")
        base[key] = None if value is None else float(value)
    return Tolerance(**base)


def looks_like_scores(shape: tuple) -> bool:
    """(1, C) or (C,) per sample with several classes."""
    dims = [d for d in shape if d != 1]
    return len(dims) == 1 and dims[0] >= 2


@dataclass
class OutputMetrics:
    name: str
    shape: list
    max_abs: float
    mean_abs: float
    rel_err: float
    cosine: float
    top1: float | None = None
    top5: float | None = None
    samples: int = 0
    top1_count: int | None = None  # samples whose top class agrees
    elements: int = 0
    within: float | None = None  # share of elements within their elementwise bound
    worst: float | None = None  # largest |diff| / its bound
    cosine_pooled: float | None = None  # the cosine of all samples pooled together (informative only)
    worst_sample: int | None = None  # the sample whose cosine is `cosine`


@dataclass
class Check:
    stage: str  # onnx | savedmodel | tflite
    mode: str | None
    input_set: str
    status: str  # passed | failed | skipped
    tolerance: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    note: str = ""
    variant: str = ""  # the environment that made what is checked
    file: str = ""  # tflite checks: the file checked (the artifact's "file"): one rung, several quantizers
    opset: int | None = None  # ONNX checks: the file's opset
    method: dict = field(default_factory=dict)  # how it was computed: samples, cosine, elements, runtime

    @property
    def label(self) -> str:
        return f"{self.stage}:{self.mode}" if self.mode else self.stage


def metrics(name: str, ref: np.ndarray, got: np.ndarray, tol: Tolerance | None = None) -> OutputMetrics:
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    diff = np.abs(ref64 - got64)
    peak = float(np.max(np.abs(ref64))) if ref64.size else 0.0
    # The check holds every sample to the bound: the worst sample's cosine, not
    # the pooled one (which hid an int8 file at 0.9779 < 0.98 behind 0.99).
    per_sample = [_cosine(r, g) for r, g in zip(ref64.reshape(len(ref64), -1), got64.reshape(len(got64), -1))]
    worst = int(np.argmin(per_sample)) if per_sample else None
    m = OutputMetrics(
        name,
        list(ref.shape[1:]),
        float(diff.max()) if diff.size else 0.0,
        float(diff.mean()) if diff.size else 0.0,
        float(diff.max() / peak) if peak > 0 else 0.0,
        per_sample[worst] if worst is not None else 1.0,
        samples=int(len(ref)),
        elements=int(ref.size),
        cosine_pooled=_cosine(ref64.reshape(-1), got64.reshape(-1)),
        worst_sample=worst,
    )
    bound = tol.bound(peak) if tol is not None else None
    if bound is not None and diff.size:
        m.within = float(np.mean(diff <= bound))
        m.worst = float(diff.max() / bound) if bound > 0 else (0.0 if not diff.any() else float("inf"))
    if looks_like_scores(ref.shape[1:]):
        r, g = ref64.reshape(len(ref64), -1), got64.reshape(len(got64), -1)
        agree = r.argmax(1) == g.argmax(1)
        m.top1, m.top1_count = float(np.mean(agree)), int(agree.sum())
        if r.shape[1] > 5:
            top5 = np.argsort(-g, axis=1)[:, :5]
            m.top5 = float(np.mean([r.argmax(1)[i] in top5[i] for i in range(len(r))]))
    return m


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else (1.0 if np.allclose(a, b) else 0.0)


def method(tol: Tolerance, samples: int) -> dict:
    """How the check was computed, in words the report shows next to it."""
    out = {"samples": samples, "cosine": "the worst sample's (each sample's outputs flattened)"}
    if tol.atol is not None:
        out["elements"] = (
            f"{tol.quantile:.1%} of elements within atol + rtol·max|ref| (max over all samples), "
            f"none beyond {tol.cap:g}x that bound"
        )
    if tol.top1 is not None:
        out["top1"] = "samples whose top class agrees, of all samples (class-score outputs)"
    return out


def compare(stage: str, mode: str | None, input_set: str, reference: dict, got: dict, tol: Tolerance) -> Check:
    count = len(next(iter(reference.values()))) if reference else 0
    check = Check(stage, mode, input_set, "passed", tolerance=asdict(tol), method=method(tol, count))
    if sorted(reference) != sorted(got):
        check.failures.append(f"structure: outputs {sorted(got)} != PyTorch's {sorted(reference)}")
    for name in sorted(set(reference) & set(got)):
        ref, out = reference[name], got[name]
        if ref.shape != out.shape:
            check.failures.append(
                f"structure: output {name!r} has shape {list(out.shape[1:])}, PyTorch's {list(ref.shape[1:])}"
            )
            continue
        m = metrics(name, ref, out, tol)
        check.outputs.append(asdict(m))
        check.failures += _elementwise_failures(name, m, tol)
        if tol.cosine is not None and m.cosine < tol.cosine:
            where = f"sample {m.worst_sample}, the worst of {m.samples}"
            check.failures.append(f"{name}: cosine similarity {m.cosine:.6f} < {tol.cosine} ({where})")
        if tol.top1 is not None and m.top1 is not None and m.top1 < tol.top1:
            check.failures.append(
                f"{name}: top-1 agreement {share(m.top1_count or 0, m.samples)} < {tol.top1:.0%} of {m.samples}"
            )
    if check.failures:
        check.status = "failed"
    return check


def _elementwise_failures(name: str, m: OutputMetrics, tol: Tolerance) -> list[str]:
    """The worst element first (what a reader looks for), then how many missed."""
    if m.within is None:
        return []
    if not tol.atol and not tol.rtol:  # exact match asked for
        return [f"{name}: max abs diff {m.max_abs:.3g} > 0"] if m.max_abs > 0 else []
    bound = f"atol {tol.atol:g} + rtol {tol.rtol:g}·max|ref|"
    out = []
    if m.worst is not None and m.worst > tol.cap:
        out.append(
            f"{name}: max abs diff {m.max_abs:.3g} is {m.worst:.3g}x the tolerance at its element "
            f"({bound}; at most {tol.cap:g}x)"
        )
    if m.within < tol.quantile:
        outside = round((1.0 - m.within) * m.elements)
        out.append(
            f"{name}: {outside} of {m.elements} elements outside {bound} "
            f"({1.0 - m.within:.2%}; at most {1.0 - tol.quantile:.2%} may be)"
        )
    return out


def accuracy(scores: dict, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent, from the first output that looks like scores."""
    for name in sorted(scores):
        arr = scores[name]
        if looks_like_scores(arr.shape[1:]):
            return float(np.mean(arr.reshape(len(arr), -1).argmax(1) == labels) * 100.0)
    raise UsageError("--eval-data needs a model output of class scores, (1, C) or (C,) per sample")


def layout_name(layout: dict | None) -> str:
    """nchw (PyTorch's own), nhwc (channels last) or mixed, from the
    per-tensor permutations a converter reports."""
    perms = [list(p) for p in ((layout or {}).get("inputs", {}) | (layout or {}).get("outputs", {})).values() if p]
    if not perms or all(p == sorted(p) for p in perms):
        return "nchw"
    if all(p == [0, *range(2, len(p)), 1] for p in perms if p != sorted(p)):
        return "nhwc"
    return "mixed"


def permuted(shape: list, perm) -> list:
    return [shape[i] for i in perm] if perm else list(shape)


# The TFLite input types an input of each PyTorch dtype may have: a float
# input may be quantized (int8 and int16x8 modes; the mode's own check says
# whether it must be); token ids may come out as int32, which holds every id a
# vocabulary has (TFLite narrows int64 in some graphs).
ACCEPTED_DTYPES = {
    "float32": ("float32", "int8", "uint8", "int16"),
    "int64": ("int64", "int32"),
    "int32": ("int32", "int64"),
}


def io_contract(
    artifact: dict,
    input_shapes: dict,
    outputs: list,
    layout: dict | None = None,
    want_layout: str | None = None,
    input_dtypes: dict | None = None,
    dynamic_batch: bool = False,
) -> list[str]:
    """Names, shapes and dtypes of a TFLite file's inputs and outputs against
    PyTorch's, by signature name, in the layout the converter says it gives (a
    converter that keeps PyTorch's layout must match exactly); with --layout,
    that layout; with --dynamic-batch, a free batch dimension everywhere."""
    layout = layout or {}
    in_perms, out_perms = layout.get("inputs", {}), layout.get("outputs", {})
    problems = []
    got_in = {t["name"]: t for t in artifact.get("inputs", [])}
    want_in = {n: permuted(list(s), in_perms.get(n)) for n, s in input_shapes.items()}
    if sorted(got_in) != sorted(want_in):
        problems.append(f"structure: TFLite inputs {sorted(got_in)} != PyTorch's {sorted(want_in)}")
    for name in sorted(set(got_in) & set(want_in)):
        if got_in[name]["shape"] != want_in[name]:
            problems.append(f"structure: TFLite input {name!r} has shape {got_in[name]['shape']}, want {want_in[name]}")
        want_dtype = (input_dtypes or {}).get(name, "float32")
        if got_in[name].get("dtype") and got_in[name]["dtype"] not in ACCEPTED_DTYPES.get(want_dtype, (want_dtype,)):
            problems.append(f"dtype: TFLite input {name!r} is {got_in[name]['dtype']}, PyTorch's {want_dtype}")
    got_out = sorted((t["name"], t["shape"]) for t in artifact.get("outputs", []))
    want_out = sorted((o["name"], permuted(o["shape"], out_perms.get(o["name"]))) for o in outputs)
    if outputs and got_out != want_out:
        problems.append(f"structure: TFLite outputs {got_out} != PyTorch's {want_out}")
    if dynamic_batch:
        for kind, tensor in [("input", t) for t in artifact.get("inputs", [])] + [
            ("output", t) for t in artifact.get("outputs", [])
        ]:
            signature = tensor.get("shape_signature")
            if signature is not None and (not signature or signature[0] != -1):
                problems.append(
                    f"batch: TFLite {kind} {tensor['name']!r} has a fixed batch (shape signature {signature}); "
                    "--dynamic-batch asks for a free one (-1)"
                )
    if want_layout == "nhwc":
        for name, shape in list(input_shapes.items()) + [(o["name"], o["shape"]) for o in outputs]:
            perm = {**out_perms, **in_perms}.get(name)
            if len(shape) == 4 and list(perm or []) != [0, 2, 3, 1]:
                problems.append(f"layout: {name} is not channels-last (NHWC) as --layout nhwc asks")
    return problems
