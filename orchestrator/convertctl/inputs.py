"""What the user hands in, checked before any environment is touched: sample
inputs fitted to the model's inputs. Every problem names the file or flag and
says what is wrong. (The model file: modelfile.py; input specs: inputspec.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import UsageError
from convertctl.inputspec import parse_shape  # noqa: F401 - the CLI's --input-shape parser lives there

DEFAULT_SAMPLES = 8


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
