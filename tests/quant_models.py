"""Two small models for the quantize-stage tests, saved as TorchScript, with
their input sets. Runs INSIDE a venv with torch (the litert-torch one),
never in the host test process:

    python quant_models.py OUT_DIR

writes OUT_DIR/<name>.pt, OUT_DIR/<name>_{samples,calib}.npz (stacked
inputs: (N, *input_shape)) and OUT_DIR/models.json {name: {input_shape}}:
  cnn  convolutions (a plain, a depthwise, a 1x1), BatchNorm, a residual, a classifier
  mlp  transformer-ish: token projection, LayerNorm, one self-attention
       (activation x activation matmuls), a GELU MLP, a classifier
Random weights (BatchNorm statistics recalibrated so activations are not ~0);
nothing is downloaded.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pointwise = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64))
        self.shortcut = nn.Conv2d(32, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.conv(self.stem(x))
        x = torch.relu(self.pointwise(self.depthwise(x)) + self.shortcut(x))
        return self.fc(x.mean([2, 3]))


class Mlp(nn.Module):
    def __init__(self, dim=64):
        super().__init__()
        self.embed = nn.Linear(32, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, dim))
        self.head = nn.Linear(dim, 10)
        self.dim = dim

    def forward(self, x):
        x = self.embed(x)
        q, k, v = self.qkv(self.norm1(x)).split(self.dim, dim=-1)
        attn = torch.softmax(torch.matmul(q, k.transpose(1, 2)) / self.dim**0.5, dim=-1)
        x = x + self.proj(torch.matmul(attn, v))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


SHAPES = {"cnn": [1, 3, 32, 32], "mlp": [1, 8, 32]}


def main(out: Path) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    facts = {}
    for name, cls in (("cnn", Cnn), ("mlp", Mlp)):
        model, shape = cls(), SHAPES[name]
        model.train()
        with torch.no_grad():
            for _ in range(8):  # BatchNorm statistics from data, else every activation is ~0
                model(torch.randn(16, *shape[1:]))
        model.eval()
        traced = torch.jit.trace(model, torch.randn(*shape))
        traced.save(str(out / f"{name}.pt"))
        for kind, n in (("samples", 8), ("calib", 32), ("eval", 24)):
            np.savez(out / f"{name}_{kind}.npz", input=rng.standard_normal((n, *shape)).astype(np.float32))
        facts[name] = {"input_shape": shape}
    (out / "models.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
