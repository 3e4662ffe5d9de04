"""Make the test models in every format convertctl reads.

Runs INSIDE a torch environment (the local export venv, torch 2.x), never in
the host test process, which has no torch. Python 3.8 syntax.

    python formats_make.py OUT_DIR

Writes into OUT_DIR:
  code/formatnets.py   the architectures (what --code points at)
  torchscript.pt       torch.jit.trace + torch.jit.save
  program.pt2          torch.export.export + torch.export.save
  weights.pt           torch.save(model.state_dict())
  checkpoint.pt        {"state_dict": DataParallel-style "module." keys, "epoch", "optimizer"}
  checkpoint_model.pt  {"model": state_dict, "epoch"}
  model.onnx           torch.onnx.export (TorchScript exporter, opset 11), input "image", output "logits"
  pickled.pt           torch.save(model): a whole pickled module (its class in code/formatnets.py)
  two_inputs.pt        TorchScript of a model taking image (1,3,32,32) float and tokens (1,8) int64
  two_inputs_dynamic.pt2  the same model as an ExportedProgram with a free batch dimension
  dynamic.pt           TorchScript of the single-input net, traced at batch 2 (works at any batch)
  fixed_batch.pt2      the single-input net as an ExportedProgram with batch fixed to 1
  made.json            torch version, file names, the class count
"""

import json
import os
import sys

import torch

ARCH = '''
import torch
from torch import nn


class Net(nn.Module):
    """A small image classifier: conv, BatchNorm, ReLU, global mean, linear."""

    def __init__(self, classes=5, width=8):
        super(Net, self).__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, image):
        x = torch.relu(self.bn(self.conv(image)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


def build(classes=5, width=8):
    return Net(classes, width)


class TwoInputs(nn.Module):
    """An image and token ids (int64, an embedding): what a captioning or
    VQA head looks like."""

    def __init__(self, vocab=50, classes=6):
        super(TwoInputs, self).__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.embed = nn.Embedding(vocab, 8)
        self.fc = nn.Linear(16, classes)

    def forward(self, image, tokens):
        a = torch.relu(self.conv(image)).mean((2, 3))
        b = self.embed(tokens).mean(1)
        return self.fc(torch.cat([a, b], 1))
'''

CLASSES = 7


def calibrate_bn(model, shape):
    """Random weights, then BatchNorm statistics from random inputs, so that
    the activations have a realistic range (int8 needs that)."""
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(8, *shape[1:]))
    return model.eval()


def main(out):
    torch.manual_seed(0)
    code = os.path.join(out, "code")
    os.makedirs(code, exist_ok=True)
    with open(os.path.join(code, "formatnets.py"), "w") as f:
        f.write(ARCH)
    sys.path.insert(0, code)
    import formatnets

    net = calibrate_bn(formatnets.build(classes=CLASSES), (1, 3, 16, 16))
    x = torch.randn(1, 3, 16, 16)
    torch.jit.save(torch.jit.trace(net, (x,)), os.path.join(out, "torchscript.pt"))
    torch.export.save(torch.export.export(net, (x,)), os.path.join(out, "program.pt2"))
    torch.export.save(torch.export.export(net, (x,)), os.path.join(out, "fixed_batch.pt2"))
    state = net.state_dict()
    torch.save(state, os.path.join(out, "weights.pt"))
    torch.save(
        {
            "state_dict": dict(("module." + k, v) for k, v in state.items()),
            "epoch": 3,
            "optimizer": {"lr": 0.1, "momentum": 0.9},
        },
        os.path.join(out, "checkpoint.pt"),
    )
    torch.save({"model": state, "epoch": 3}, os.path.join(out, "checkpoint_model.pt"))
    torch.save(net, os.path.join(out, "pickled.pt"))
    export_kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
    torch.onnx.export(
        net,
        (x,),
        os.path.join(out, "model.onnx"),
        input_names=["image"],
        output_names=["logits"],
        opset_version=11,
        **export_kwargs,
    )
    torch.jit.save(torch.jit.trace(net, (torch.randn(2, 3, 16, 16),)), os.path.join(out, "dynamic.pt"))

    two = formatnets.TwoInputs().eval()
    image, tokens = torch.randn(1, 3, 32, 32), torch.randint(0, 50, (1, 8))
    torch.jit.save(torch.jit.trace(two, (image, tokens)), os.path.join(out, "two_inputs.pt"))
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        two, (torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 8))), dynamic_shapes=({0: batch}, {0: batch})
    )
    torch.export.save(program, os.path.join(out, "two_inputs_dynamic.pt2"))
    with open(os.path.join(out, "made.json"), "w") as f:
        json.dump({"torch": torch.__version__, "classes": CLASSES, "files": sorted(os.listdir(out))}, f)


if __name__ == "__main__":
    main(sys.argv[1])
