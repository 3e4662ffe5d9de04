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
        out[name] = arr.astype(np.float32)
    counts = {len(a) for a in out.values()}
    if len(counts) > 1:
        raise UsageError(f"{path}: the inputs hold different numbers of samples ({sorted(counts)})")
    return out


def check_archive(path: Path) -> None:
    """Every member of a model archive against its CRC, before anything
    loads it: torch reads a damaged TorchScript or ExportedProgram zip
    without complaint, and the damaged weights then convert and "pass",
    since the reference is computed from the same damaged weights."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
        raise UsageError(f"{path}: the model archive is damaged ({exc}); save or copy it again") from None
    if bad:
        raise UsageError(
            f"{path}: the model archive is damaged: {bad} does not match its CRC-32 (changed or truncated "
            "after torch saved it); save or copy it again"
        )


def save_set(path: Path, arrays: dict) -> str:
    """Written whole or not at all: a full disk leaves no half file (and
    the room it took is free again for the report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(path)
