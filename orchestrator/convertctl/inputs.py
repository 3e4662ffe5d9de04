"""What the user hands in, checked before any environment is touched: the
model file, input shapes, sample inputs. Every problem names the file or
flag and says what is wrong."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError

DEFAULT_SAMPLES = 8


def check_model(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: not readable")
    # torch.jit.save writes a zip with a code/ folder; torch.save of a whole
    # module or a state_dict writes a zip without one (a pickle needing the
    # user's classes), which the export stage could not rebuild.
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        raise UsageError(
            f"{path}: not a TorchScript file (not a zip archive). "
            "Save the model with torch.jit.save(torch.jit.script(model), path) "
            "or torch.jit.trace."
        ) from None
    if not any("/code/" in n for n in names):
        raise UsageError(
            f"{path}: a torch.save() pickle, not TorchScript (it has no code/ folder). "
            "Save it with torch.jit.save(torch.jit.script(model), path) "
            "or torch.jit.save(torch.jit.trace(model, example), path)."
        )
    return path.resolve()


def parse_shape(text: str) -> tuple:
    parts = [p.strip() for p in text.split(",")]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: expected comma-separated whole numbers, e.g. 1,3,256,256") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"--input-shape {text!r}: every dimension must be a positive number")
    return dims


def input_names(count: int) -> list[str]:
    return ["input"] if count == 1 else [f"input_{i}" for i in range(count)]


def synthetic(shapes: dict, count: int, seed: int) -> dict:
    """Seeded standard-normal inputs, close to a normalised image's range."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((count, *shape)).astype(np.float32) for name, shape in shapes.items()}


def load_sample_inputs(path: Path, shapes: dict) -> dict:
    """--sample-inputs: an npz with one array per input name (or a single
    array for a single input), shaped (N, *shape) or (N, *shape[1:])."""
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read sample inputs ({exc})") from None
    return fit_arrays(path, arrays, shapes)


def fit_arrays(path: Path, arrays: dict, shapes: dict) -> dict:
    """Match user arrays to the model's inputs and stack them as (N, *shape)."""
    if len(shapes) == 1 and len(arrays) == 1:
        arrays = {next(iter(shapes)): next(iter(arrays.values()))}
    missing = [n for n in shapes if n not in arrays]
    if missing:
        raise UsageError(f"{path}: no array for input(s) {', '.join(missing)} (it has {', '.join(sorted(arrays))})")
    out = {}
    for name, shape in shapes.items():
        arr = np.asarray(arrays[name])
        if arr.shape[1:] == tuple(shape):
            pass
        elif arr.shape[1:] == tuple(shape[1:]) and shape[0] == 1:
            arr = arr[:, None]
        else:
            raise UsageError(
                f"{path}: array {name!r} has shape {list(arr.shape)}; expected "
                f"(N, {', '.join(map(str, shape))}) or (N, {', '.join(map(str, shape[1:]))})"
            )
        if len(arr) == 0:
            raise UsageError(f"{path}: array {name!r} holds no samples")
        out[name] = arr.astype(np.float32)
    return out


def save_set(path: Path, arrays: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return str(path)
