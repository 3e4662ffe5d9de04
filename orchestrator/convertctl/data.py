"""Image folders and arrays turned into model inputs on the host (numpy and
Pillow only), for int8 calibration (--calib) and accuracy (--eval-data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import UsageError
from convertctl.inputs import check_numbers, fit_arrays, load_arrays

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fewer samples than this cannot calibrate int8 ranges (100-500 is advised).
MIN_CALIBRATION = 10


def parse_floats(text: str, flag: str) -> tuple:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected comma-separated numbers") from None


class ImagePrep:
    """Resize, scale to [0, 1], normalise, lay out as the model's input."""

    def __init__(self, shape: tuple, mean: tuple | None = None, std: tuple | None = None):
        if len(shape) != 4:
            raise UsageError(f"images need a 4-D input shape (N,C,H,W or N,H,W,C), not {list(shape)}")
        self.channels_first = shape[1] in (1, 3) or shape[3] not in (1, 3)
        c, h, w = (shape[1], shape[2], shape[3]) if self.channels_first else (shape[3], shape[1], shape[2])
        if c not in (1, 3):
            raise UsageError(f"images have 1 or 3 channels; the input shape {list(shape)} has {c}")
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
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                resized = img.convert("RGB" if self.c == 3 else "L").resize((self.w, self.h), Image.Resampling.BILINEAR)
                arr = np.asarray(resized, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise UsageError(f"{path}: not a readable image ({exc})") from None
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr - self.mean) / self.std
        return (arr.transpose(2, 0, 1) if self.channels_first else arr)[None].astype(np.float32)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_calibration(path: Path, shapes: dict, mean=None, std=None, limit: int = 500) -> dict:
    """--calib: a folder of images, or an .npy/.npz of inputs."""
    if not path.exists():
        raise UsageError(f"{path}: calibration data not found")
    if path.is_dir():
        if len(shapes) != 1:
            raise UsageError(f"{path}: an image folder can calibrate a single-input model only; use an .npz")
        files = image_files(path)[:limit]
        if not files:
            raise UsageError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        if len(files) < MIN_CALIBRATION:
            raise UsageError(
                f"{path}: {len(files)} image(s); int8 calibration needs at least {MIN_CALIBRATION} (100-500 advised)"
            )
        ((name, shape),) = shapes.items()
        prep = ImagePrep(shape, mean, std)
        return {name: np.stack([prep(f) for f in files])}
    return fit_arrays(path, load_arrays(path, "calibration data"), shapes, min_count=MIN_CALIBRATION)


def check_labels(path: Path, y) -> np.ndarray:
    """Class indices: whole numbers >= 0, one per sample."""
    y = np.asarray(y)
    check_numbers(path, "y", y)
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise UsageError(f"{path}: array 'y' holds fractions; labels are class indices (whole numbers)")
    if y.size and y.min() < 0:
        raise UsageError(
            f"{path}: array 'y' holds negative labels (the lowest is {y.min():g}); labels are class indices >= 0"
        )
    return y.astype(np.int64).reshape(-1)


def labels_fit(path, labels: np.ndarray, outputs: list) -> str:
    """'' when every label indexes the model's class-score output, else why
    not (known only once the export stage has said what the outputs are)."""
    from convertctl.validate import looks_like_scores

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


def load_eval(path: Path, shapes: dict, mean=None, std=None) -> tuple[dict, np.ndarray, list]:
    """--eval-data: a folder with one subfolder per class (sorted names are
    the class indices, as torchvision's ImageFolder), or an .npz with x, y."""
    if not path.exists():
        raise UsageError(f"{path}: evaluation data not found")
    if path.is_dir():
        classes = sorted(p.name for p in path.iterdir() if p.is_dir())
        if not classes or len(shapes) != 1:
            raise UsageError(f"{path}: expected one subfolder of images per class, for a single-input model")
        ((name, shape),) = shapes.items()
        prep = ImagePrep(shape, mean, std)
        xs, ys = [], []
        for label, cls in enumerate(classes):
            for f in image_files(path / cls):
                xs.append(prep(f))
                ys.append(label)
        if not xs:
            raise UsageError(f"{path}: the class folders hold no images")
        return {name: np.stack(xs)}, np.array(ys), classes
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
