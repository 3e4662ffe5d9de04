"""Example models convertctl builds itself (no weight downloads).

MobileNetV2 and a ConvNeXt-style net are written out here rather than taken from torchvision: the
export variants do not all ship a torchvision that imports. Random weights
make every activation collapse towards zero through BatchNorm, which would
make any comparison meaningless, so BatchNorm statistics are recalibrated on
random batches (weights untouched) before the model is saved.
Python 3.8 syntax; runs on torch 1.7 and current torch.
"""
import torch
from torch import nn


def conv_bn(cin, cout, kernel, stride, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super(InvertedResidual, self).__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, 1))
        layers.append(conv_bn(hidden, hidden, 3, stride, groups=hidden))
        layers.append(conv_bn(hidden, cout, 1, 1, act=False))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res:
            return x + self.block(x)
        return self.block(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, first stride), as in the paper.
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes=1000, in_channels=3):
        super(MobileNetV2, self).__init__()
        layers = [conv_bn(in_channels, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        # Global average pool as a mean: torch 1.7 cannot export a
        # TorchScript aten::flatten to ONNX.
        return self.classifier(self.features(x).mean([2, 3]))


class SmallCNN(nn.Module):
    """A few seconds to convert: what the acceptance tests use."""

    def __init__(self, num_classes=10, in_channels=3):
        super(SmallCNN, self).__init__()
        self.features = nn.Sequential(
            conv_bn(in_channels, 16, 3, 2), conv_bn(16, 32, 3, 2),
            InvertedResidual(32, 32, 1, 2), conv_bn(32, 64, 3, 2))
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean([2, 3]))


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm over channels (channels-last, as ConvNeXt
    does it: a permute), pointwise MLP with GELU, layer scale, residual."""

    def __init__(self, dim):
        super(ConvNeXtBlock, self).__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(0.5 * torch.ones(dim))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's stem and downsampling)."""

    def __init__(self, dim, eps=1e-6):
        super(ChannelNorm, self).__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """ConvNeXt-style (GELU, LayerNorm, 7x7 depthwise), small: ConvNeXt-Atto's widths and depths."""

    def __init__(self, num_classes=1000, in_channels=3, dims=(40, 80, 160, 320), depths=(2, 2, 6, 2)):
        super(ConvNeXt, self).__init__()
        layers = [nn.Conv2d(in_channels, dims[0], 4, 4), ChannelNorm(dims[0])]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers += [ChannelNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.classifier = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        return self.classifier(self.norm(self.features(x).mean([2, 3])))


BUILDERS = {"mobilenetv2": MobileNetV2, "smallcnn": SmallCNN, "convnext": ConvNeXt}


def recalibrate_batchnorm(model, shape, batches=8, batch_size=8):
    """Replace BatchNorm running stats by stats measured on random inputs."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn([batch_size] + list(shape[1:])))
    model.eval()


def build(name, input_shape, seed=0):
    if name not in BUILDERS:
        raise ValueError("unknown example %r (known: %s)" % (name, ", ".join(sorted(BUILDERS))))
    torch.manual_seed(seed)
    model = BUILDERS[name](in_channels=int(input_shape[1]))
    recalibrate_batchnorm(model, input_shape)
    return model
