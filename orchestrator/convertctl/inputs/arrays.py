"""What the user hands in, checked before any environment is touched: sample
inputs fitted to the model's inputs. Every problem names the file or flag and
says what is wrong. (The model file: modelfile.py; input specs: inputspec.py.)"""

from __future__ import annotations

import io
import math
import os
import tokenize
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy, userfiles
from convertctl.errors import UsageError
from convertctl.inputs.inputspec import parse_shape  # noqa: F401 - the CLI's --input-shape parser lives there
from convertctl.store import safefs

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy


def free_memory() -> int:
    """Bytes of memory this machine can still give (MemAvailable), or the
    physical memory when the kernel does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 34


def _header(f) -> tuple:
    """(shape, dtype, header end) of the .npy stream at f, read from its
    header alone (numpy.lib.format), nothing of the data."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:  # 3.0 exists for structured arrays with non-Latin-1 field names: never model inputs
        raise ValueError(f".npy format {version[0]}.{version[1]}: a structured array; convertctl takes plain numbers")
    return tuple(shape), dtype, f.tell()


def _declared(path: Path, name: str, shape: tuple, dtype, stored: int | None) -> int:
    """The bytes an array declares; a UsageError when its file cannot hold
    them (truncated) or loading it would not fit in memory."""
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise UsageError(f"{path}: array {name!r} declares an impossible shape {list(shape)}")
    count = math.prod(shape)
    size = count * dtype.itemsize
    shown = list(shape) if len(shape) <= 8 else f"{len(shape)} dimensions"
    if not dtype.hasobject and stored is not None and size > stored:
        raise UsageError(
            f"{path}: array {name!r} declares shape {shown} ({dtype}, {size / 1e6:.1f} MB) but holds "
            f"{stored / 1e6:.1f} MB: the file is truncated or damaged"
        )
    room = free_memory() // 2  # the array, and its float32 copy beside it
    if size > room:
        raise UsageError(
            f"{path}: array {name!r} declares shape {shown} ({dtype}): {size / 1e9:.1f} GB, more than this "
            f"machine can load ({room / 1e9:.1f} GB free for it); refused before reading it"
        )
    return size


def check_headers(path: Path, f) -> None:
    """Every array in an .npy or .npz checked by its header before numpy
    allocates it: a header can declare any shape (10^12 floats in a file of
    a few bytes), and allocating that is a MemoryError, not an answer."""
    f.seek(0)
    if f.read(6) == b"\x93NUMPY":
        f.seek(0)
        shape, dtype, start = _header(f)
        _declared(path, "x", shape, dtype, os.fstat(f.fileno()).st_size - start)
        return
    f.seek(0)
    if not zipfile.is_zipfile(f):
        return  # neither: np.load says what it is (a pickle, text...)
    f.seek(0)
    total = 0
    with zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                shape, dtype, start = _header(member)
            total += _declared(path, info.filename[:-4], shape, dtype, info.file_size - start)
    room = free_memory() // 2
    if total > room:
        raise UsageError(
            f"{path}: its arrays take {total / 1e9:.1f} GB together, more than this machine can load "
            f"({room / 1e9:.1f} GB free for them); refused before reading them"
        )


def load_arrays(path: Path, what: str) -> dict:
    """The arrays of an .npy (as "x") or .npz, or a UsageError naming the
    file: a regular file only (a FIFO would block the read forever), every
    array's header checked against the file and the memory first."""
    with userfiles.open_regular(path, what) as f:
        try:
            check_headers(path, f)
            f.seek(0)
            data = np.load(f, allow_pickle=False)  # an .npy or an .npz, whatever the name says
            if not hasattr(data, "files"):
                return {"x": np.asarray(data)}
            with data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
            raise UsageError(f"{path}: cannot read {what} ({exc})") from None
        except (SyntaxError, RecursionError, TypeError, tokenize.TokenError) as exc:  # a header numpy cannot parse
            raise UsageError(f"{path}: cannot read {what} (a damaged array header: {type(exc).__name__})") from None
        except MemoryError:
            raise UsageError(f"{path}: cannot read {what} (it does not fit in memory)") from None


def load_sample_inputs(path: Path, shapes: dict) -> dict:
    """--sample-inputs: an npz with one array per input name (or a single
    array for a single input), shaped (N, *shape) or (N, *shape[1:])."""
    userfiles.check(path, "sample inputs")
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
        with np.errstate(over="ignore"):  # what overflows float32 is what this finds and names
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
