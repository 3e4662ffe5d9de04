"""Image folders and arrays turned into model inputs on the host (numpy and
Pillow only), for int8 calibration (--calib) and accuracy (--eval-data)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy, userfiles
from convertctl.errors import UsageError
from convertctl.inputs.arrays import check_numbers, fit_arrays, load_arrays

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fewer samples than this cannot calibrate int8 ranges: refused.
MIN_CALIBRATION = 10
# Fewer than this calibrate, but unreliably: a notice says so (100-500 advised).
FEW_CALIBRATION = 50
# Labels are class indices: beyond this no classifier has that many classes
# (and a float label of 1e300 would wrap around when made an integer).
MAX_LABEL = 1 << 31
# stretch: resize to the input size, aspect ratio lost (the plain way);
# shorter-side+center-crop: ImageNet's evaluation view (shorter side to
# size / 0.875, e.g. 256 for 224, then the centre), what most pretrained
# classifiers saw in training. Calibrating on another view shifts every
# activation range int8 learns.
RESIZE_MODES = ("stretch", "shorter-side+center-crop")
CROP_FRACTION = 0.875


def parse_floats(text: str, flag: str) -> tuple:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated numbers") from None


class ImagePrep:
    """Resize, scale to [0, 1], normalise, lay out as the model's input."""

    def __init__(
        self, shape: tuple, mean: tuple | None = None, std: tuple | None = None, resize: str = "stretch", source=""
    ):
        if resize not in RESIZE_MODES:
            raise UsageError(f"--resize {resize!r}: choose from {', '.join(RESIZE_MODES)}")
        self.resize = resize
        where = f"{source}: " if source else ""  # the image folder, when there is one to name
        if len(shape) != 4:
            raise UsageError(f"{where}images need a 4-D input shape (N,C,H,W or N,H,W,C), not {list(shape)}")
        self.channels_first = shape[1] in (1, 3) or shape[3] not in (1, 3)
        c, h, w = (shape[1], shape[2], shape[3]) if self.channels_first else (shape[3], shape[1], shape[2])
        if c not in (1, 3):
            raise UsageError(f"{where}images have 1 or 3 channels; the input shape {list(shape)} has {c}")
        self.c, self.h, self.w = c, h, w
        default_mean, default_std = (IMAGENET_MEAN, IMAGENET_STD) if c == 3 else ((0.0,), (1.0,))
        self.mean = np.array(mean or default_mean, dtype=np.float32)
        self.std = np.array(std or default_std, dtype=np.float32)
        for name, v in (("--mean", self.mean), ("--std", self.std)):
            if v.size not in (1, c):
                raise UsageError(f"{name} has {v.size} values; the model has {c} channels")
        if np.any(self.std == 0):
            raise UsageError("--std must not contain 0")

    def __call__(self, path: Path) -> np.ndarray:
        from PIL import Image

        # Pillow's own decompression-bomb limit (MAX_IMAGE_PIXELS) guards the
        # decoder: an image declaring 10^10 pixels is refused, not allocated.
        # Truncated, damaged or hostile files fail in many ways inside the
        # decoders (OSError, SyntaxError from PNG chunks, struct.error...):
        # every one is this file's problem, named.
        try:
            with userfiles.open_regular(path, "image") as f, Image.open(f) as img:
                img = self._view(img.convert("RGB" if self.c == 3 else "L"), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except Image.DecompressionBombError as exc:
            raise UsageError(f"{path}: an image too large to decode safely ({exc})") from None
        except (OSError, SyntaxError, ValueError, TypeError, EOFError, IndexError, KeyError) as exc:
            raise UsageError(f"{path}: not a readable image ({exc})") from None
        except (struct.error, zlib.error, MemoryError, RecursionError) as exc:
            raise UsageError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr - self.mean) / self.std
        return (arr.transpose(2, 0, 1) if self.channels_first else arr)[None].astype(np.float32)

    def _view(self, img, method):
        if self.resize == "stretch":
            return img.resize((self.w, self.h), method)
        iw, ih = img.size
        scale = max(self.w / iw, self.h / ih) / CROP_FRACTION
        rw, rh = max(self.w, round(iw * scale)), max(self.h, round(ih * scale))
        img = img.resize((rw, rh), method)
        left, top = (rw - self.w) // 2, (rh - self.h) // 2
        return img.crop((left, top, left + self.w, top + self.h))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def spread_files(folder: Path, limit: int) -> list[Path]:
    """Up to ``limit`` images, taken in turn from each subfolder: the first
    500 files of a sorted train/ folder would all be one class."""
    groups: dict = {}
    for f in image_files(folder):
        groups.setdefault(f.relative_to(folder).parts[0] if f.parent != folder else "", []).append(f)
    picked: list[Path] = []
    queues = [list(g) for _, g in sorted(groups.items())]
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return sorted(picked)


def calibration_notes(path: Path | None, arrays: dict) -> list[str]:
    """What makes a calibration set look degenerate: int8 learns its ranges
    from it, so too few, near-identical or one-class samples give ranges
    that do not fit what the model will see."""
    if path is None:
        return []
    notes = []
    first = next(iter(arrays.values()))
    count = len(first)
    if count < FEW_CALIBRATION:
        notes.append(
            f"calibration {path}: only {count} samples; int8 ranges from fewer than {FEW_CALIBRATION} "
            "are unreliable (100-500 representative samples are usual)"
        )
    for name, arr in arrays.items():
        flat = arr.reshape(len(arr), -1).astype(np.float64)
        overall = float(flat.std()) if flat.size else 0.0
        across = float(flat.std(axis=0).mean()) if len(flat) > 1 else overall
        if overall < 1e-6 * (1.0 + float(np.abs(flat).mean())):
            notes.append(f"calibration {path}: input {name!r} is near-constant (std {overall:.2g})")
        elif count > 1 and across < 1e-3 * overall:
            notes.append(f"calibration {path}: the samples of {name!r} are near-identical (spread {across:.2g})")
    if path.is_dir():
        used = {f.relative_to(path).parts[0] for f in image_files(path) if f.parent != path}
        top_level = any(f.parent == path for f in image_files(path))
        if len(used) == 1 and not top_level:
            notes.append(
                f"calibration {path}: every image is from one folder ({next(iter(used))}); "
                "if folders are classes, int8 will be calibrated on one class only"
            )
    return notes


def load_calibration(path: Path, shapes: dict, mean=None, std=None, limit: int = 500, resize: str = "stretch") -> dict:
    """--calib: a folder of images, or an .npy/.npz of inputs."""
    if userfiles.check(path, "calibration data", folder_ok=True) == "dir":
        if len(shapes) != 1:
            raise UsageError(f"{path}: an image folder can calibrate a single-input model only; use an .npz")
        files = spread_files(path, limit)
        if not files:
            raise UsageError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        if len(files) < MIN_CALIBRATION:
            raise UsageError(
                f"{path}: {len(files)} image(s); int8 calibration needs at least {MIN_CALIBRATION} (100-500 advised)"
            )
        ((name, shape),) = shapes.items()
        prep = ImagePrep(shape, mean, std, resize, path)
        return {name: np.stack([prep(f) for f in files])}
    return fit_arrays(path, load_arrays(path, "calibration data"), shapes, min_count=MIN_CALIBRATION)


def check_labels(path: Path, y) -> np.ndarray:
    """Class indices: whole numbers >= 0, one per sample."""
    y = np.asarray(y)
    check_numbers(path, "y", y)
    if y.dtype.kind == "b":
        raise UsageError(f"{path}: array 'y' holds booleans; labels are class indices (whole numbers)")
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise UsageError(f"{path}: array 'y' holds fractions; labels are class indices (whole numbers)")
    if y.size and y.min() < 0:
        raise UsageError(
            f"{path}: array 'y' holds negative labels (the lowest is {y.min():g}); labels are class indices >= 0"
        )
    if y.size and y.max() >= MAX_LABEL:
        raise UsageError(f"{path}: array 'y' holds the label {y.max():g}; labels are class indices (below {MAX_LABEL})")
    return y.astype(np.int64).reshape(-1)


def labels_fit(path, labels: np.ndarray, outputs: list) -> str:
    """'' when every label indexes the model's class-score output, else why
    not (known only once the export stage has said what the outputs are)."""
    from convertctl.checks.validate import looks_like_scores

    for out in sorted(outputs, key=lambda o: o["name"]):
        if looks_like_scores(tuple(out["shape"])):
            classes = int(np.prod([d for d in out["shape"] if d != 1]))
            if labels.size and int(labels.max()) >= classes:
                return (
                    f"{path}: label {int(labels.max())} is out of range: the model's output "
                    f"{out['name']!r} scores {classes} classes (labels 0 to {classes - 1})"
                )
            return ""
    return ""


MAX_CLASSES = 1_000_000
MAX_LABELS_BYTES = 64 << 20


def read_labels(path: Path) -> list[str]:
    """--labels: one class name per line, in the model's output order."""
    raw = userfiles.read_bytes(path, "--labels file", MAX_LABELS_BYTES)
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UsageError(f"--labels {path}: not a readable text file ({exc})") from None
    names = [ln.strip() for ln in lines if ln.strip()]
    if not names:
        raise UsageError(f"--labels {path}: no class names (one per line, in the model's output order)")
    if len(names) > MAX_CLASSES:
        raise UsageError(f"--labels {path}: {len(names)} lines; at most {MAX_CLASSES} classes are read")
    seen: dict = {}
    for i, name in enumerate(names):
        if name in seen:
            raise UsageError(f"--labels {path}: class {name!r} is on lines {seen[name] + 1} and {i + 1}")
        seen[name] = i
    return names


def load_eval(
    path: Path, shapes: dict, mean=None, std=None, resize: str = "stretch", labels: list[str] | None = None
) -> tuple[dict, np.ndarray, list]:
    """--eval-data: a folder with one subfolder per class, or an .npz with x,
    y. A folder's classes are numbered by --labels (the model's order) when
    given, else by their sorted names (torchvision's ImageFolder order)."""
    if userfiles.check(path, "evaluation data", folder_ok=True) == "dir":
        classes = sorted(p.name for p in path.iterdir() if p.is_dir())
        if not classes or len(shapes) != 1:
            raise UsageError(f"{path}: expected one subfolder of images per class, for a single-input model")
        index = {c: i for i, c in enumerate(classes)}
        if labels is not None:
            unknown = [c for c in classes if c not in labels]
            if unknown:
                listed = ", ".join(repr(c) for c in unknown[:5])
                raise UsageError(f"{path}: class folder(s) {listed} are not in --labels (one name per line)")
            index = {c: labels.index(c) for c in classes}
        ((name, shape),) = shapes.items()
        prep = ImagePrep(shape, mean, std, resize, path)
        xs, ys = [], []
        for cls in classes:
            label = index[cls]
            for f in image_files(path / cls):
                xs.append(prep(f))
                ys.append(label)
        if not xs:
            raise UsageError(f"{path}: the class folders hold no images")
        return {name: np.stack(xs)}, np.array(ys), labels or classes
    arrays = load_arrays(path, "evaluation data")
    if "x" not in arrays or "y" not in arrays:
        raise UsageError(f"{path}: an evaluation .npz needs arrays 'x' and 'y' (it has {', '.join(sorted(arrays))})")
    y = check_labels(path, arrays["y"])
    if len(shapes) != 1:
        raise UsageError(f"{path}: an evaluation .npz ('x' and 'y') is for a single-input model")
    x = fit_arrays(path, {"x": arrays["x"]}, shapes)
    if len(next(iter(x.values()))) != len(y):
        raise UsageError(f"{path}: 'x' holds {len(next(iter(x.values())))} samples but 'y' {len(y)} labels")
    return x, y, [str(i) for i in range(int(y.max()) + 1)]
