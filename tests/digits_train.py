"""Train a small CNN on scikit-learn's digits; save it as TorchScript.

Runs INSIDE a convertctl export environment (the local torch venv or the
export Docker image), never in the host test process, which has no torch.
Python 3.8 syntax; works with torch 1.7 and torch 2.x.

    python digits_train.py train DATA.npz WEIGHTS.npz [EPOCHS]
    python digits_train.py trace DATA.npz WEIGHTS.npz MODEL.pt RESULT.json

Two steps because training (backward) is done once, by the current torch:
torch 1.7.1's CPU backward kernels crashed with SIGSEGV on a CI machine
whose CPU is newer than that build, while its forward pass (all that
export needs) works. `trace` then rebuilds the same network in whichever
torch will export it, loads the weights and traces it there, so the
TorchScript always loads in that environment and both runtimes convert
the very same weights.

DATA.npz holds x_train (N,1,8,8 float32), y_train, x_test, y_test. The
model is traced (torch 1.7's ONNX exporter cannot export a scripted
BatchNorm) and pools with a mean over H and W (torch 1.7 cannot export a
TorchScript flatten). RESULT.json gets the torch version and the test
accuracy PyTorch itself measured, for the test to cross-check.
"""

import json
import sys

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.features(x).mean([2, 3]))


def load_split(path):
    with np.load(path) as data:
        return {
            k: torch.from_numpy(data[k].astype(np.int64 if k.startswith("y") else np.float32))
            for k in ("x_train", "y_train", "x_test", "y_test")
        }


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean()) * 100.0


def train(data_path, weights_path, epochs):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # same numbers run to run
    rng = np.random.RandomState(0)
    d = load_split(data_path)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(d["x_train"])))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            opt.zero_grad()
            loss = loss_fn(model(d["x_train"][idx]), d["y_train"][idx])
            loss.backward()
            opt.step()
    model.eval()
    # Floats only: num_batches_tracked is a training counter eval ignores.
    np.savez(
        weights_path, **{k: v.detach().numpy() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
    )
    print(
        json.dumps(
            {"torch": torch.__version__, "epochs": epochs, "test_accuracy": accuracy(model, d["x_test"], d["y_test"])}
        )
    )


def trace(data_path, weights_path, model_path, result_path):
    torch.set_num_threads(1)
    d = load_split(data_path)
    model = DigitsCNN()
    with np.load(weights_path) as w:
        state = {k: torch.from_numpy(w[k]) for k in w.files}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit("weights do not fit DigitsCNN: missing %s, unexpected %s" % (missing, unexpected))
    model.eval()
    traced = torch.jit.trace(model, d["x_test"][:1])
    torch.jit.save(traced, model_path)
    result = {
        "torch": torch.__version__,
        "train_accuracy": accuracy(model, d["x_train"], d["y_train"]),
        "test_accuracy": accuracy(traced, d["x_test"], d["y_test"]),
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


def main(argv):
    if len(argv) >= 4 and argv[1] == "train":
        train(argv[2], argv[3], int(argv[4]) if len(argv) > 4 else 40)
    elif len(argv) == 6 and argv[1] == "trace":
        trace(argv[2], argv[3], argv[4], argv[5])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
