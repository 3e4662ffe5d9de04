"""A small MobileNetV2 with torchvision's module names (features.N.conv.M:
ConvBNReLU blocks, then the pointwise Conv2d and its BatchNorm), for
tests/test_module_names.py. Runs INSIDE the local export venv:

    python names_model.py OUT_DIR

writes OUT_DIR/mobilenet.pt (traced TorchScript) and OUT_DIR/mobilenet.pt2
(torch.export). Random weights, BatchNorm statistics recalibrated on random
batches (else every activation collapses to ~0 through BatchNorm).
"""

import sys

import torch
from torch import nn

SHAPE = (1, 3, 32, 32)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1):
        pad = (kernel - 1) // 2
        conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)
        super().__init__(conv, nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers = [ConvBNReLU(cin, hidden, 1)] if expand != 1 else []
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            ConvBNReLU(3, 16, stride=2),
            InvertedResidual(16, 8, 1, 1),
            InvertedResidual(8, 16, 2, 4),
            InvertedResidual(16, 16, 1, 4),
            ConvBNReLU(16, 64, 1),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


def build():
    torch.manual_seed(0)
    model = MobileNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(8):
            model(torch.randn(8, *SHAPE[1:]))
    return model.eval()


if __name__ == "__main__":
    out = sys.argv[1]
    model, example = build(), torch.randn(*SHAPE)
    torch.jit.save(torch.jit.trace(model, (example,)), out + "/mobilenet.pt")
    torch.export.save(torch.export.export(model, (example,)), out + "/mobilenet.pt2")
