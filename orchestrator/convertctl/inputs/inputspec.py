"""The model's inputs: names, shapes, dtypes and the range synthetic data is
drawn from, from `--input` (or `--input-shape`) and from what the model file
declares (ONNX and ExportedProgram files name and shape their inputs).

Syntax, repeatable, in the order the model takes its inputs:

    --input NAME:SHAPE[:DTYPE][:LOW..HIGH]

  NAME      the input's name; it becomes the name in the ONNX graph and in the
            TFLite signature (give the names forward() uses to keep them)
  SHAPE     comma-separated sizes, batch first: 1,3,224,224
  DTYPE     float32 (default), int64 or int32
  LOW..HIGH the range of synthetic sample and calibration data, both ends
            included: token ids 0..30521 for a 30522-word vocabulary. Default:
            integers 0..9; floats standard-normal (with a range: uniform).

e.g. --input image:1,3,224,224 --input tokens:1,16:int64:0..999
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy
from convertctl.config.options import BATCH_CHECK, MAX_INPUT_VALUES
from convertctl.config.settings import MAX_GENERATED_BYTES
from convertctl.errors import UsageError
from convertctl.store.digests import sha256_file, sha256_json

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy

DTYPES = ("float32", "int64", "int32")
# What each dtype holds: a range beyond it cannot be drawn (int32:0..1e12
# wrapped around to negative ids; a float range past float32's overflows to inf).
BOUNDS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "float32": (-3.4028234e38, 3.4028234e38)}
DEFAULT_INT_RANGE = (0, 9)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RANGE = re.compile(r"(-?[0-9.eE+-]+)\.\.(-?[0-9.eE+-]+)")


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple
    dtype: str = ""  # "" until resolved: not given (float32, or what the model file declares)
    low: float | None = None
    high: float | None = None
    named: bool = True  # False for --input-shape's default names (input, input_0...)

    @property
    def is_int(self) -> bool:
        return self.dtype.startswith("int")

    def data_range(self) -> tuple | None:
        if self.low is not None:
            return (self.low, self.high)
        return DEFAULT_INT_RANGE if self.is_int else None

    def to_dict(self) -> dict:
        out = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype or "float32"}
        rng = self.data_range()
        if rng and self.is_int:
            rng = (int(rng[0]), int(rng[1]))
        out["range"] = list(rng) if rng else "standard normal"
        return out


def parse_shape(text: str, flag: str = "--input-shape") -> tuple:
    parts = [p.strip() for p in text.split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated whole numbers, e.g. 1,3,256,256") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"{flag} {text!r}: every dimension must be a positive number")
    check_size(dims, f"{flag} {text!r}")
    return dims


def check_size(dims: tuple, source: str) -> None:
    """One sample of one input holds at most MAX_INPUT_VALUES values: a
    shape declared beyond that (by a flag, or by a model file) is refused
    before any array of it is allocated."""
    values = math.prod(dims)
    if values > MAX_INPUT_VALUES:
        count = f"{values:.3g}" if values < 10**300 else f"about 1e{len(str(values)) - 1}"
        raise UsageError(
            f"{source}: shape {list(dims) if len(str(dims)) < 200 else '(too long to show)'} holds {count} "
            f"values per sample; convertctl takes at most {MAX_INPUT_VALUES} values per input"
        )


def _range(text: str, flag: str) -> tuple:
    found = RANGE.fullmatch(text)
    if not found:
        raise UsageError(f"{flag}: {text!r} is neither a dtype ({', '.join(DTYPES)}) nor a range LOW..HIGH")
    try:
        low, high = float(found.group(1)), float(found.group(2))
    except ValueError:
        raise UsageError(f"{flag}: {text!r}: LOW and HIGH must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError(f"{flag}: range {text!r}: LOW and HIGH must be finite numbers")
    if low > high:
        raise UsageError(f"{flag}: range {text!r} is empty (LOW > HIGH)")
    return low, high


def parse_input(text: str) -> InputSpec:
    """One --input NAME:SHAPE[:DTYPE][:LOW..HIGH]."""
    flag = f"--input {text!r}"
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise UsageError(f"{flag}: expected NAME:SHAPE[:DTYPE][:LOW..HIGH], e.g. tokens:1,16:int64:0..999")
    name, shape = parts[0].strip(), parse_shape(parts[1], flag)
    if not NAME.fullmatch(name):
        raise UsageError(f"{flag}: the name {name!r} must be a Python-style identifier (it names a TFLite input)")
    dtype, low, high = "", None, None
    for part in (p.strip() for p in parts[2:]):
        if part in DTYPES and not dtype:
            dtype = part
        elif ".." in part and low is None:
            low, high = _range(part, flag)
        else:
            raise UsageError(f"{flag}: {part!r} is neither a dtype ({', '.join(DTYPES)}) nor a range LOW..HIGH")
    if (
        low is not None
        and high is not None
        and dtype.startswith("int")
        and not (low.is_integer() and high.is_integer())
    ):
        raise UsageError(f"{flag}: an integer input's range takes whole numbers")
    if low is not None and high is not None:
        lo, hi = BOUNDS[dtype or "float32"]
        if low < lo or high > hi:
            raise UsageError(f"{flag}: the range {low:g}..{high:g} does not fit {dtype or 'float32'} ({lo:g}..{hi:g})")
    return InputSpec(name, shape, dtype, low, high)


def from_shapes(shapes: list) -> list[InputSpec]:
    """--input-shape, as before: unnamed inputs called input (or input_0, input_1...)."""
    names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    return [InputSpec(n, tuple(s), named=False) for n, s in zip(names, shapes)]


def safe_name(name: str, kind: str) -> str:
    """A name TensorFlow keeps as it is in a signature: ONNX allows "input.1"
    or "14", which onnx-tf would rename its own way."""
    if NAME.fullmatch(name):
        return name
    cleaned = re.sub(r"\W", "_", name)
    return cleaned if NAME.fullmatch(cleaned) else f"{kind}_{cleaned}"


def check_names(specs: list) -> None:
    seen = set()
    for spec in specs:
        if spec.name in seen:
            raise UsageError(f"--input {spec.name}: given twice")
        seen.add(spec.name)


def _declared_shape(path, declared: dict) -> tuple:
    if not declared["shape"]:
        raise UsageError(f"{path}: input {declared['name']!r} has no declared shape; give it with --input")
    shape = []
    for axis, dim in enumerate(declared["shape"]):
        if isinstance(dim, int) and dim <= 0:
            raise UsageError(f"{path}: input {declared['name']!r} declares dimension {axis} as {dim}; give --input")
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0:
            shape.append(1)  # a free batch dimension: batch 1, and N with --dynamic-batch
        else:
            sizes = ",".join(str(d) if isinstance(d, int) else "?" for d in declared["shape"])
            raise UsageError(
                f"{path}: input {declared['name']!r} has a free dimension {axis} ({dim}); "
                f"give its size with --input {safe_name(declared['name'], 'input')}:{sizes}"
            )
    return tuple(shape)


def resolve(specs: list, facts, dynamic_batch: bool = False) -> list[InputSpec]:
    """The run's inputs: what the user gave, checked against (and completed
    from) what the model file declares; every dtype decided."""
    path, declared = facts.path, facts.inputs
    check_names(specs)
    if not declared:
        if not specs:
            raise UsageError(
                "--input (e.g. --input image:1,3,224,224) or --input-shape is required, "
                "on the command line or in convertctl.toml"
            )
        return [_with(s, dtype=s.dtype or "float32") for s in specs]
    names = [safe_name(d["name"], "input") for d in declared]
    if not specs:
        specs = [InputSpec(n, _declared_shape(path, d)) for n, d in zip(names, declared)]
    if len(specs) != len(declared):
        raise UsageError(f"{path}: the model takes {len(declared)} input(s) ({', '.join(names)}), {len(specs)} given")
    if all(s.named for s in specs) and [s.name for s in specs] != names:
        if sorted(s.name for s in specs) != sorted(names) or facts.format != "onnx":
            raise UsageError(
                f"{path}: the model's inputs are {', '.join(names)} (in that order); --input gave "
                f"{', '.join(s.name for s in specs)}"
            )
        specs = sorted(specs, key=lambda s: names.index(s.name))
    out = []
    for spec, decl in zip(specs, declared):
        dtype = decl["dtype"] if decl["dtype"] in DTYPES else ""
        if not dtype:
            what = decl["dtype"] or "not a tensor"
            raise UsageError(f"{path}: input {decl['name']!r} is {what}; convertctl feeds {', '.join(DTYPES)}")
        if spec.dtype and spec.dtype != dtype:
            raise UsageError(f"{path}: input {decl['name']!r} is {dtype}, --input says {spec.dtype}")
        fixed = [(i, d) for i, d in enumerate(decl["shape"]) if isinstance(d, int)]
        if decl["shape"] and (len(spec.shape) != len(decl["shape"]) or any(spec.shape[i] != d for i, d in fixed)):
            want = ",".join(str(d) if isinstance(d, int) else "?" for d in decl["shape"])
            raise UsageError(f"{path}: input {decl['name']!r} has shape {want}; {list(spec.shape)} given")
        check_size(spec.shape, f"{path}: input {decl['name']!r}")
        out.append(_with(spec, name=safe_name(decl["name"], "input"), dtype=dtype))
    if dynamic_batch and facts.dynamic_batch() is False:
        fixed_names = [d["name"] for d in declared if d["shape"] and isinstance(d["shape"][0], int)]
        hint = (
            "export it with dynamic_shapes={name: {0: torch.export.Dim('batch')}} (with an example batch of 2 or more)"
            if facts.format == "exported-program"
            else "export it with dynamic_axes={name: {0: 'batch'}}"
        )
        raise UsageError(
            f"{path}: --dynamic-batch, but input(s) {', '.join(fixed_names)} have a fixed batch size; {hint}"
        )
    return out


def _with(spec: InputSpec, **changes) -> InputSpec:
    values = {**spec.__dict__, **changes}
    return InputSpec(**values)


def check_dynamic_batch(specs: list) -> None:
    for spec in specs:
        if spec.shape[0] != 1:
            raise UsageError(
                f"--dynamic-batch: input {spec.name!r} has batch {spec.shape[0]}; give batch 1 "
                f"(it is checked at batch 1 and {BATCH_CHECK})"
            )


@dataclass(frozen=True)
class Synthetic:
    """Seeded synthetic inputs not made yet: generated (with numpy) when a
    stage needs their file and the cache does not hold it already (the key:
    what generates them, this module's code included)."""

    specs: tuple
    count: int
    seed: int

    def key(self) -> str:
        specs, code = [s.to_dict() for s in self.specs], sha256_file(Path(__file__))
        return sha256_json({"specs": specs, "count": self.count, "seed": self.seed, "code": code})

    def arrays(self) -> dict:
        return synthetic(list(self.specs), self.count, self.seed)


def as_arrays(data) -> dict:
    """A set's arrays, made now if it is a Synthetic."""
    return data.arrays() if isinstance(data, Synthetic) else data


def synthetic(specs: list, count: int, seed: int) -> dict:
    """Seeded sample inputs, (count, *shape) each: standard-normal floats (close
    to a normalised image), integers drawn over their range, both ends included."""
    total = sum(math.prod(s.shape) for s in specs) * count * 4  # as check_budget counts them
    if total > MAX_GENERATED_BYTES:
        shapes = " ".join(",".join(map(str, s.shape)) for s in specs)
        raise UsageError(
            f"inputs {shapes}: {count} synthetic sample(s) would take {total / 1e9:.1f} GB while made "
            f"(limit {MAX_GENERATED_BYTES / 1e9:.1f} GB): lower --samples"
        )
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        size, span = (count, *spec.shape), spec.data_range()
        if spec.is_int:  # endpoint=True: HIGH + 1 would overflow int64 at its top
            drawn = rng.integers(int(span[0]), int(span[1]), size=size, endpoint=True, dtype=np.int64)
            out[spec.name] = drawn.astype(spec.dtype)
        elif span is not None:
            out[spec.name] = rng.uniform(span[0], span[1], size=size).astype(np.float32)
        else:
            out[spec.name] = rng.standard_normal(size).astype(np.float32)
    return out


def batched(arrays: dict, batch: int) -> dict:
    """One sample of batch ``batch`` made of the first samples of a set:
    (count, 1, ...) -> (1, batch, ...), repeating samples if there are fewer."""
    out = {}
    for name, arr in arrays.items():
        picks = [arr[i % len(arr)] for i in range(batch)]
        out[name] = np.concatenate(picks, axis=0)[None]
    return out


def in_range(arrays: dict, specs: list, source) -> None:
    """User-given integer inputs outside their range are named before any
    stage runs, instead of failing as an index error in an embedding."""
    for spec in specs:
        if not spec.is_int or spec.low is None or spec.name not in arrays:
            continue
        arr = arrays[spec.name]
        if arr.size and (arr.min() < spec.low or arr.max() > spec.high):
            raise UsageError(
                f"{source}: input {spec.name!r} holds values {arr.min()}..{arr.max()}, "
                f"outside its range {int(spec.low)}..{int(spec.high)}"
            )


def typed(arrays: dict, specs: list, source) -> dict:
    """User data in each input's dtype (the loaders give float32, which holds
    every integer id below 2**24 exactly); integer inputs checked against
    their --input range."""
    out = dict(arrays)
    for spec in specs:
        if spec.name in out and spec.is_int:
            out[spec.name] = np.rint(out[spec.name]).astype(spec.dtype)
    in_range(out, specs, source)
    return out


def naming_notice(specs: list, own: list | None) -> str:
    """--input-shape names the inputs input, input_0...: say so when the
    model's forward() has names of its own, which --input would keep."""
    if not own or any(s.named for s in specs) or len(own) != len(specs) or own == [s.name for s in specs]:
        return ""
    hint = " ".join(f"--input {n}:{','.join(map(str, s.shape))}" for n, s in zip(own, specs))
    return (
        f"the TFLite inputs are named {', '.join(s.name for s in specs)}; the model calls them "
        f"{', '.join(own)}. To keep its names: {hint}"
    )
