"""What the user hands in, checked before any environment is touched: sample
inputs fitted to the model's inputs. Every problem names the file or flag and
says what is wrong. (The model file: modelfile.py; input specs: inputspec.py.)"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy
from convertctl.errors import UsageError
from convertctl.inputs.inputspec import parse_shape  # noqa: F401 - the CLI's --input-shape parser lives there
from convertctl.store import safefs

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy


def load_arrays(path: Path, what: str) -> dict:
    """The arrays of an .npy (as "x") or .npz, or a UsageError naming the file."""
    try:
        if path.suffix == ".npy":
            return {"x": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):  # an .npy under another name
                return {"x": np.asarray(data)}
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path}: cannot read {what} ({exc})") from None


def load_sample_inputs(path: Path, shapes: dict) -> dict:
    """--sample-inputs: an npz with one array per input name (or a single
    array for a single input), shaped (N, *shape) or (N, *shape[1:])."""
    if not path.is_file():
        raise UsageError(f"{path}: sample inputs not found")
    return fit_arrays(path, load_arrays(path, "sample inputs"), shapes)


def check_numbers(path: Path, name: str, arr: np.ndarray) -> None:
    """Real, finite numbers, or a UsageError saying what is there instead.
    Checked on the host: a NaN reaching TensorFlow's calibrator crashes it
    (SIGSEGV), and a complex array cast to float silently drops a part."""
    kinds = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers", "V": "records"}
    kind = kinds.get(arr.dtype.kind) or ("dates or times" if arr.dtype.kind in "mM" else "")
    if kind:
        raise UsageError(f"{path}: array {name!r} holds {kind} (dtype {arr.dtype}); the model takes real numbers")
    if arr.dtype.kind == "f" or arr.dtype.kind in "iu" and np.abs(arr).max(initial=0) > np.finfo(np.float32).max:
        as32 = arr.astype(np.float32)
        bad = ~np.isfinite(as32)
        if bad.any():
            nan, total = int(np.isnan(as32).sum()), int(bad.sum())
            first = np.unravel_index(int(np.argmax(bad)), arr.shape)
            parts = [f"{nan} NaN"] if nan else []
            parts += [f"{total - nan} infinite"] if total - nan else []
            raise UsageError(
                f"{path}: array {name!r} holds {' and '.join(parts)} value(s) of {arr.size} "
                f"(the first at index {list(map(int, first))}); inputs must be finite numbers"
            )


def fit_arrays(path: Path, arrays: dict, shapes: dict, min_count: int = 1) -> dict:
    """Match user arrays to the model's inputs and stack them as (N, *shape)."""
    if len(shapes) == 1 and len(arrays) == 1:
        arrays = {next(iter(shapes)): next(iter(arrays.values()))}
    missing = [n for n in shapes if n not in arrays]
    if missing:
        raise UsageError(f"{path}: no array for input(s) {', '.join(missing)} (it has {', '.join(sorted(arrays))})")
    out = {}
    for name, shape in shapes.items():
        arr = np.asarray(arrays[name])
        check_numbers(path, name, arr)
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
        if len(arr) < min_count:
            raise UsageError(f"{path}: array {name!r} holds {len(arr)} sample(s); at least {min_count} are needed")
        # Integer inputs (token ids) keep their integers; inputspec.typed
        # gives every array its input's dtype afterwards.
        out[name] = arr if arr.dtype.kind in "iu" else arr.astype(np.float32)
    counts = {len(a) for a in out.values()}
    if len(counts) > 1:
        raise UsageError(f"{path}: the inputs hold different numbers of samples ({sorted(counts)})")
    return out


def save_set(path: Path, arrays: dict) -> str:
    """Written whole or not at all: a full disk leaves no half file (and
    the room it took is free again for the report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Zipped in memory first: a zip writer that meets a full disk is left half
    # closed by older numpy, and its finalizer prints a traceback at exit.
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    # Never through a link: the hold-out's labels are written after stages ran.
    safefs.write_atomic(path.parent, path.name, buf.getvalue())
    return str(path)
