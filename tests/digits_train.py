"""Train a small CNN on scikit-learn's digits and save it as TorchScript.

Runs INSIDE a convertctl export environment (the local torch venv or the
export Docker image), never in the host test process, which has no torch.
Python 3.8 syntax; works with torch 1.7 and torch 2.x.

    python digits_train.py DATA.npz MODEL.pt RESULT.json [EPOCHS]

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
        super(DigitsCNN, self).__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.features(x).mean([2, 3]))


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean()) * 100.0


def main(argv):
    data_path, model_path, result_path = argv[1], argv[2], argv[3]
    epochs = int(argv[4]) if len(argv) > 4 else 40
    torch.manual_seed(0)
    torch.set_num_threads(1)  # same numbers run to run
    rng = np.random.RandomState(0)
    with np.load(data_path) as data:
        x_train = torch.from_numpy(data["x_train"].astype(np.float32))
        y_train = torch.from_numpy(data["y_train"].astype(np.int64))
        x_test = torch.from_numpy(data["x_test"].astype(np.float32))
        y_test = torch.from_numpy(data["y_test"].astype(np.int64))

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    for _ in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x_train)))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()

    model.eval()
    traced = torch.jit.trace(model, x_test[:1])
    torch.jit.save(traced, model_path)
    result = {"torch": torch.__version__, "epochs": epochs,
              "train_accuracy": accuracy(model, x_train, y_train),
              "test_accuracy": accuracy(traced, x_test, y_test)}
    with open(result_path, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
