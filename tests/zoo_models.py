"""The model zoo of tests/test_zoo.py, written with plain torch, saved as TorchScript.

Runs INSIDE the local export venv (torch 2.13), never in the host test
process, which has no torch:

    python zoo_models.py OUT_DIR [NAME ...]

writes OUT_DIR/<name>.pt (traced TorchScript) for every model (or the named
ones) and OUT_DIR/zoo.json: {name: {"input_shape": [...], "params": N}}.

The architectures follow torchvision's (ResNet-18, MobileNetV2,
MobileNetV3-small, EfficientNet-B0, ConvNeXt) at reduced width and input
size so that the whole zoo converts in minutes; the operators are the
originals' (BatchNorm, ReLU6, hardswish, SiLU, squeeze-excitation, LayerNorm,
GELU, multi-head attention, GRU and LSTM cells). Weights are random
(nothing is downloaded); BatchNorm statistics are recalibrated on random
batches, else every activation collapses through BatchNorm and any
comparison would compare zeros.
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

IMAGE = [1, 3, 64, 64]
SEQUENCE = [1, 20, 16]  # batch, time steps, features


def make_divisible(value, divisor=8):
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_bn(cin, cout, kernel, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


# -- ResNet-18 (torchvision's layout, a quarter of its width) -----------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, act=None))
        self.shortcut = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), classes=10):
        super().__init__()
        layers = [conv_bn(3, widths[0], 7, 2), nn.MaxPool2d(3, 2, 1)]
        cin = widths[0]
        for i, width in enumerate(widths):
            for j in range(2):
                layers.append(BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- MobileNetV2 (half width) -------------------------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    SETTINGS = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]

    def __init__(self, width=0.5, classes=10):
        super().__init__()
        cin = make_divisible(32 * width)
        layers = [conv_bn(3, cin, 3, 2, act=nn.ReLU6)]
        for expand, channels, repeats, stride in self.SETTINGS:
            cout = make_divisible(channels * width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, 640, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(640, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- MobileNetV3-small (torchvision's configuration) --------------------------
class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze, act=nn.ReLU, gate=nn.Hardsigmoid):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x):
        scale = self.gate(self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1)))))
        return x * scale


class MBConvV3(nn.Module):
    def __init__(self, cin, kernel, hidden, cout, se, act, stride):
        super().__init__()
        layers = [conv_bn(cin, hidden, 1, act=act)] if hidden != cin else []
        layers.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4)))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV3Small(nn.Module):
    RE, HS = nn.ReLU, nn.Hardswish
    # kernel, expanded channels, out channels, squeeze-excite, activation, stride
    SETTINGS = [
        (3, 16, 16, True, RE, 2),
        (3, 72, 24, False, RE, 2),
        (3, 88, 24, False, RE, 1),
        (5, 96, 40, True, HS, 2),
        (5, 240, 40, True, HS, 1),
        (5, 240, 40, True, HS, 1),
        (5, 120, 48, True, HS, 1),
        (5, 144, 48, True, HS, 1),
        (5, 288, 96, True, HS, 2),
        (5, 576, 96, True, HS, 1),
        (5, 576, 96, True, HS, 1),
    ]

    def __init__(self, classes=10):
        super().__init__()
        layers = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)]
        cin = 16
        for kernel, hidden, cout, se, act, stride in self.SETTINGS:
            layers.append(MBConvV3(cin, kernel, hidden, cout, se, act, stride))
            cin = cout
        layers.append(conv_bn(cin, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 256), nn.Hardswish(), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- EfficientNet-B0 (half width, full depth) ---------------------------------
class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [
            conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcite(hidden, max(1, cin // 4), act=nn.SiLU, gate=nn.Sigmoid),
            conv_bn(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetB0(nn.Module):
    # expand, kernel, stride, out channels, repeats
    SETTINGS = [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]

    def __init__(self, width=0.5, classes=10):
        super().__init__()
        cin = make_divisible(32 * width)
        layers = [conv_bn(3, cin, 3, 2, act=nn.SiLU)]
        for expand, kernel, stride, channels, repeats in self.SETTINGS:
            cout = make_divisible(channels * width)
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, 640, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(640, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- ConvNeXt (its block: depthwise 7x7, LayerNorm, GELU MLP, layer scale) ---
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, as torchvision's."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))  # layer scale (1e-6 at init would hide the block)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.mlp(self.norm(y))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, dims=(32, 64), depths=(2, 2), classes=10):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], classes)

    def forward(self, x):
        return self.head(self.norm(self.features(x).mean([2, 3])))


# -- sequence models ------------------------------------------------------------
class TransformerClassifier(nn.Module):
    def __init__(self, features=16, dim=32, heads=4, layers=2, steps=20, classes=10):
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.position = nn.Parameter(torch.randn(1, steps, dim) * 0.1)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x) + self.position).mean(1))


class RecurrentClassifier(nn.Module):
    def __init__(self, cell, features=16, hidden=32, classes=10):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


ZOO = {
    "resnet18": (ResNet18, IMAGE),
    "mobilenetv2": (MobileNetV2, IMAGE),
    "mobilenetv3_small": (MobileNetV3Small, IMAGE),
    "efficientnet_b0": (EfficientNetB0, IMAGE),
    "convnext": (ConvNeXt, IMAGE),
    "transformer": (TransformerClassifier, SEQUENCE),
    "gru": (lambda: RecurrentClassifier(nn.GRU), SEQUENCE),
    "lstm": (lambda: RecurrentClassifier(nn.LSTM), SEQUENCE),
}


def recalibrate_batchnorm(model, shape, batches=8, batch_size=8):
    """BatchNorm running stats measured on random inputs (weights untouched)."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn([batch_size] + list(shape[1:])))


def build(name, seed=0):
    torch.manual_seed(seed)
    make, shape = ZOO[name]
    model = make()
    recalibrate_batchnorm(model, shape)
    return model.eval(), shape


def save(name, out_dir):
    model, shape = build(name)
    example = torch.randn(shape)
    # Traced with gradients on: under torch.no_grad() nn.TransformerEncoder
    # takes its fused fast path (aten._transformer_encoder_layer_fwd), which
    # neither ONNX nor litert-torch can convert. check_trace re-runs the
    # model and compares graphs, which attention's shape arithmetic fails.
    traced = torch.jit.trace(model, (example,), check_trace=False)
    torch.jit.save(traced, str(out_dir / f"{name}.pt"))
    return {"input_shape": shape, "params": sum(p.numel() for p in model.parameters())}


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out_dir = Path(argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = argv[2:] or list(ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ZOO)}")
    facts = {name: save(name, out_dir) for name in names}
    (out_dir / "zoo.json").write_text(json.dumps(facts, indent=2))
    print(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv)
