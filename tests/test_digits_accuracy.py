"""Real accuracy, real data: a small CNN trained on scikit-learn's digits
(real 8x8 images, real labels, shipped inside the package: nothing is
downloaded), converted with every mode, int8 calibrated on real training
images, and every TFLite file's accuracy on the held-out split held to
within 1 percentage point of PyTorch's. Both runtimes.

The host never imports torch: tests/digits_train.py trains the model once
in the local export venv, then traces those weights inside the export
environment each runtime converts with (the local torch venv, or the
torch 1.7 export image), so the TorchScript always loads there and both
runtimes are judged on the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK

pytestmark = pytest.mark.acceptance
MODES = ["fp32", "dynamic", "int8", "fp16"]
HELD_OUT = 0.3  # of sklearn's 1797 digits: 540 held out, 1257 to train on
CALIB = 200  # real calibration images, from the training split
EPOCHS = 20
MAX_GAP = 1.0  # percentage points, every mode, int8 included
TRAINER = Path(__file__).resolve().parent / "digits_train.py"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    """The splits as files: one .npz for training, and what convertctl gets."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # pixel values 0..16 -> 0..1, (N, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=HELD_OUT, random_state=0, stratify=y)
    d = tmp_path_factory.mktemp("digits")
    np.savez(d / "train.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    np.save(d / "calib.npy", x_train[:CALIB])
    np.savez(d / "eval.npz", x=x_test, y=y_test)
    return {
        "dir": d,
        "train": d / "train.npz",
        "calib": d / "calib.npy",
        "eval": d / "eval.npz",
        "n_train": len(y_train),
        "n_test": len(y_test),
    }


def _local_export_python() -> Path:
    from convertctl.store.envstore import EnvStore
    from convertctl.store.pipconfig import load_settings

    return EnvStore(settings=load_settings()).ensure(load_catalog().ladder("local", "export")[0]).python


def _run_trainer(python: Path, args: list[str], work: Path) -> str:
    proc = subprocess.run([str(python), str(TRAINER), *args], cwd=work, capture_output=True, text=True, timeout=900)
    print(proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def weights(digits) -> Path:
    """Trained once, by the local export venv's current torch; both runtimes
    then trace these same weights in their own torch (see digits_train.py
    for why torch 1.7 never trains)."""
    _run_trainer(_local_export_python(), ["train", "train.npz", "weights.npz", str(EPOCHS)], digits["dir"])
    return digits["dir"] / "weights.npz"


def trace_local(digits: dict, weights: Path, work: Path) -> Path:
    """In the local runtime's export venv (the one `convertctl run` uses)."""
    work.mkdir()
    _run_trainer(_local_export_python(), ["trace", str(digits["train"]), str(weights), "digits.pt", "train.json"], work)
    return work / "digits.pt"


def trace_docker(digits: dict, weights: Path, work: Path) -> Path:
    """In the Docker runtime's export image (torch 1.7): TorchScript saved
    by a newer torch would not load there."""
    import docker

    tag = load_catalog().ladder("docker", "export")[0].tag
    convertctl("images", "build", "--variant", tag, check=True)  # no-op when current
    work.mkdir()
    shutil.copyfile(TRAINER, work / "train.py")
    shutil.copyfile(digits["train"], work / "data.npz")
    shutil.copyfile(weights, work / "weights.npz")
    logs = docker.from_env().containers.run(
        tag,
        entrypoint=["/opt/venv/bin/python", "/work/train.py"],
        command=["trace", "/work/data.npz", "/work/weights.npz", "/work/digits.pt", "/work/train.json"],
        volumes={str(work): {"bind": "/work", "mode": "rw"}},
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},
        network_disabled=True,
        remove=True,
    )
    print(logs.decode("utf-8", "replace")[-2000:])
    return work / "digits.pt"


TRACE = {"local": trace_local, "docker": trace_docker}


def find_report(out: Path) -> dict | None:
    """report.json in --out on success; in the kept run directory otherwise."""
    if (out / "report.json").is_file():
        return load_json(out / "report.json")
    kept = sorted(out.glob(".convertctl/runs/*/report.json"))
    return load_json(kept[-1]) if kept else None


def numbers_table(runtime: str, digits: dict, trained: dict, report: dict | None, seconds: dict) -> str:
    lines = [
        f"digits accuracy, runtime {runtime}: sklearn digits 8x8, train {digits['n_train']}, "
        f"calibration {CALIB} (training split), held-out {digits['n_test']}; "
        f"traced by torch {trained.get('torch')}, {EPOCHS} epochs; "
        f"train {seconds.get('train', 0):.1f}s, convert {seconds.get('convert', 0):.1f}s"
    ]
    acc = (report or {}).get("accuracy") or {}
    if not acc:
        lines.append(f"  no accuracy in the report ({(report or {}).get('failure', 'no report')})")
        return "\n".join(lines)
    lines.append(f"  {'model':<9}{'accuracy':>10}{'vs pytorch':>12}")
    lines.append(
        f"  {'pytorch':<9}{acc['pytorch']:>9.2f}%{'':>12}   (training script measured "
        f"{trained.get('test_accuracy', float('nan')):.2f}%)"
    )
    for mode in MODES:
        m = acc["modes"].get(mode)
        if m is None:
            lines.append(f"  {mode:<9}{'-':>10}")
            continue
        gap = m["accuracy"] - acc["pytorch"]
        flag = "ok" if abs(gap) <= MAX_GAP else f"OUTSIDE +-{MAX_GAP}"
        lines.append(f"  {mode:<9}{m['accuracy']:>9.2f}%{gap:>+11.2f}    {flag}")
    return "\n".join(lines)


@pytest.mark.parametrize("runtime", ["local", pytest.param("docker", marks=[pytest.mark.docker, requires_docker])])
def test_every_mode_within_one_point_of_pytorch_on_held_out_digits(runtime, digits, weights, tmp_path):
    seconds = {}
    started = time.monotonic()
    model = TRACE[runtime](digits, weights, tmp_path / "train")
    seconds["train"] = time.monotonic() - started
    trained = json.loads((model.parent / "train.json").read_text())

    out = tmp_path / "out"
    args = [
        "run",
        model,
        "--input-shape",
        "1,1,8,8",
        "--calib",
        digits["calib"],
        "--eval-data",
        digits["eval"],
        "--out",
        out,
        "--runtime",
        runtime,
    ]
    for mode in MODES:
        args += ["--quant", mode]
    started = time.monotonic()
    proc = convertctl(*args)
    seconds["convert"] = time.monotonic() - started
    report = find_report(out)
    print(numbers_table(runtime, digits, trained, report, seconds))

    assert proc.returncode == EXIT_OK, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report["status"] == "passed" and report["runtime"] == runtime, report.get("failure")
    # Trained and exported by the same torch, in the same environment.
    export = next(s for s in report["stages"] if s["stage"] == "export")
    assert export["versions"]["torch"] == trained["torch"]
    if runtime == "docker":
        assert trained["torch"].startswith("1.7")

    assert report["inputs"]["calibration"] == {"count": CALIB, "synthetic": False, "source": str(digits["calib"])}
    assert report["inputs"]["eval"]["count"] == digits["n_test"] and report["inputs"]["eval"]["classes"] == 10
    # With real data given, the parity checks run on it, not on noise.
    assert report["inputs"]["samples"] == {"count": 64, "source": f"first 64 of {digits['eval']}"}
    assert not any("SYNTHETIC" in n for n in report["notices"]) and "SYNTHETIC" not in proc.stdout

    acc = report["accuracy"]
    assert acc["samples"] == digits["n_test"]
    assert acc["pytorch"] >= 90.0, acc
    # convertctl's PyTorch number is PyTorch's own (one sample of slack:
    # batched vs one-at-a-time float sums may flip a near tie).
    assert abs(acc["pytorch"] - trained["test_accuracy"]) <= 100.0 / digits["n_test"] + 1e-6
    assert sorted(acc["modes"]) == sorted(MODES)
    for mode in MODES:
        m = acc["modes"][mode]
        assert abs(acc["pytorch"] - m["accuracy"]) <= MAX_GAP, (mode, m, acc["pytorch"])
        assert m["status"] == "passed", (mode, m)
        assert (out / f"digits_{mode}.tflite").is_file()

    md = (out / "report.md").read_text()
    assert f"| accuracy | pytorch | ✓ | {acc['pytorch']:.2f}% on {digits['n_test']} labelled samples |" in md
    for mode in MODES:
        assert f"| accuracy | {mode} | ✓ | {acc['modes'][mode]['accuracy']:.2f}% (drop " in md, mode
        assert f"{acc['modes'][mode]['accuracy']:.2f}%" in proc.stdout, mode
