"""Issue 20 on real conversions ("a pass means what it says"), local venvs:

- a CNN whose every weight is under 1024 elements (tests/formats_make.py's
  Net): onnx2tf's TFLiteConverter "dynamic" file keeps all of them float
  (TFLite's dynamic-range floor), fails its signature, and the file the run
  passes as dynamic holds int8 weights, as LiteRT reads the file back;
- every file's checks in report.json say how they were computed: 64
  samples, the worst sample's cosine, the runtime that ran the file (LiteRT);
- --eval-data as class folders named in words (sorted, they are not the
  model's order) of a CNN trained on scikit-learn's digits: PyTorch's own
  accuracy with --labels, and near chance without it, said loudly.

The fake-runtime unit tests (test_honest_checks_unit.py) cover every point
with its failure modes; these show the real stages do what the fakes say."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.errors import EXIT_OK
from stage_envs import env_python

pytestmark = pytest.mark.acceptance
LITERT = "ai-edge-litert 2.3.0"
TRAINER = Path(__file__).resolve().parent / "digits_train.py"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# The tensors of a .tflite as LiteRT reads them: {dtype: count} of constant tensors (weights).
WEIGHT_DTYPES = """
import collections, json, sys
from ai_edge_litert.interpreter import Interpreter
interp = Interpreter(model_path=sys.argv[1])
counts = collections.Counter()
for t in interp.get_tensor_details():
    if len(t["shape"]) >= 2:
        try:
            interp.get_tensor(t["index"])  # constants only: an activation before invoke has no data
        except ValueError:
            continue
        counts[t["dtype"].__name__] += 1
print(json.dumps(counts))
"""


def weight_dtypes(path: Path) -> dict:
    python = env_python("measure-litert2.3")
    proc = subprocess.run([str(python), "-c", WEIGHT_DTYPES, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def squeezed(text: str) -> str:
    """Text without whitespace and table borders: a terminal table folds long cells over lines."""
    return re.sub(r"[\s│┃]+", "", text)


def report_of(out: Path) -> dict:
    """report.json in --out on success; in the kept run directory otherwise."""
    if (out / "report.json").is_file():
        return load_json(out / "report.json")
    return load_json(sorted(out.glob(".convertctl/runs/*/report.json"))[-1])


# -- a small CNN's "dynamic" file ----------------------------------------------------------------
def run_tiny(format_models: Path, out: Path, runtime: str):
    model = format_models / "torchscript.pt"  # Net(classes=5, width=8): 216, 576 and 40 weights
    args = ["run", model, "--input-shape", "1,3,16,16", "--converter", "onnx2tf", "-q", "fp32", "-q", "dynamic"]
    proc = convertctl(*args, "--out", out, "--runtime", runtime, "--latency-runs", "0")
    return proc, report_of(out)


@pytest.fixture(scope="module")
def tiny(format_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-dynamic")
    return (*run_tiny(format_models, out, "local"), out)


def assert_no_float_file_passes_as_dynamic(proc, report, out):
    tried = [c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] == "dynamic"]
    print("dynamic files tried:", [(c["variant"], c["input_set"], c["status"], c["failures"][:1]) for c in tried])
    # TFLiteConverter (the rung's first quantizer) left every weight float: not a dynamic file.
    assert tried[0]["status"] == "failed", tried[0]
    assert any(
        f.startswith("signature: dynamic stores weights as int8, but 0 of 3 weighted ops do (3 float32")
        for f in tried[0]["failures"]
    ), tried[0]["failures"]
    rung = next(e for e in report["ladder"] if e["stage"] == "convert" and e["family"] == "onnx2tf")
    assert rung["modes"]["fp32"] == "ok"
    dynamic = next(a for a in report["artifacts"] if a["mode"] == "dynamic")
    if proc.returncode == EXIT_OK:  # a later quantizer made a true dynamic file
        assert dynamic["quantizer"].startswith("litert-quantizer"), dynamic["quantizer"]
        assert tried[-1]["status"] == "passed" and rung["modes"]["dynamic"] == "ok"
        stored = weight_dtypes(out / "torchscript_dynamic.tflite")
        print("the dynamic file's constant tensors by dtype, as LiteRT reads them:", stored)
        assert stored.get("int8", 0) >= 3, stored
    else:  # no quantizer made one: the run fails saying why, and places no file
        assert report["exit_code"] == 4 and "signature: dynamic" in report["failure"], report["failure"]
        assert not (out / "torchscript_dynamic.tflite").exists()


def test_a_small_cnns_float_dynamic_file_fails_its_signature(tiny):
    proc, report, out = tiny
    assert_no_float_file_passes_as_dynamic(proc, report, out)
    assert proc.returncode == EXIT_OK, report.get("failure")  # LiteRT Quantizer quantizes weights of any size


def test_each_check_says_how_it_was_computed_and_that_litert_ran_the_file(tiny):
    proc, report, _ = tiny
    checks = [c for c in report["checks"] if c["stage"] == "tflite"]
    assert {c["mode"] for c in checks} == {"fp32", "dynamic"}
    for check in checks:
        how = check["method"]
        assert how["samples"] == 64 and how["cosine"].startswith("the worst sample's"), how
        assert how["runtime"] == LITERT, how
        out = check["outputs"][0]
        assert out["samples"] == 64 and 0 <= out["worst_sample"] < 64 and out["cosine_pooled"] is not None
    fresh = [c for c in checks if c["input_set"] == "fresh"]
    assert fresh and fresh[0]["mode"] == "dynamic", "the file that passed after a miss ran on fresh inputs"
    assert {a["judged_by"] for a in report["artifacts"]} == {LITERT}
    judged = [s for s in report["stages"] if s["stage"] == "measure" and s["script"].endswith("judge.py")]
    assert len(judged) >= 3, "every file made was run by LiteRT"
    assert squeezed("judged by " + LITERT) in squeezed(proc.stdout), "in the terminal"
    assert "judged by " + LITERT in Path(report["out_dir"], "report.md").read_text()


@pytest.mark.docker
@requires_docker
def test_on_docker_a_small_cnns_float_dynamic_file_fails_its_signature(format_models, tmp_path):
    proc, report = run_tiny(format_models, tmp_path, "docker")
    assert report["runtime"] == "docker"
    assert_no_float_file_passes_as_dynamic(proc, report, tmp_path)
    assert {a["judged_by"] for a in report["artifacts"]} == {LITERT}


# -- --labels: class folders in the model's order ------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> dict:
    """A CNN trained on scikit-learn's digits (tests/digits_train.py, the local export venv's torch)
    and 20 held-out images per class in folders named zero..nine."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.3, random_state=0, stratify=data.target
    )
    d = tmp_path_factory.mktemp("digits-labels")
    np.savez(d / "train.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    python = str(env_python_export())
    for args in (
        ["train", "train.npz", "weights.npz", "20"],
        ["trace", "train.npz", "weights.npz", "digits.pt", "t.json"],
    ):
        proc = subprocess.run([python, str(TRAINER), *args], cwd=d, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for k, name in enumerate(NAMES):
        (d / "val" / name).mkdir(parents=True)
        for i, img in enumerate(x_test[y_test == k][:20]):
            Image.fromarray(np.round(img[0] * 255).astype(np.uint8), "L").save(d / "val" / name / f"{i}.png")
    (d / "labels.txt").write_text("\n".join(NAMES) + "\n")
    return {"dir": d, "model": d / "digits.pt", "trained": json.loads((d / "t.json").read_text())}


def env_python_export() -> Path:
    from convertctl.config.catalog import load_catalog

    return env_python(load_catalog().ladder("local", "export")[0].name)


def run_digits(digits: dict, out: Path, *extra):
    args = ["run", digits["model"], "--input-shape", "1,1,8,8", "--eval-data", digits["dir"] / "val", *extra]
    proc = convertctl(*args, "--out", out, "--runtime", "local", "--latency-runs", "0")
    return proc, report_of(out)


def test_labels_give_pytorchs_own_accuracy_and_without_them_it_is_near_chance_said_loudly(digits, tmp_path):
    proc, report = run_digits(digits, tmp_path / "labelled", "--labels", digits["dir"] / "labels.txt")
    assert proc.returncode == EXIT_OK, report.get("failure")
    labelled = report["accuracy"]["pytorch"]
    assert labelled >= 90.0 and abs(labelled - digits["trained"]["test_accuracy"]) < 5.0, labelled
    assert report["accuracy"]["samples"] == 200 and report["accuracy"]["step"] == 0.5
    assert "near chance" not in proc.stdout
    assert squeezed("budget 0.5 pts (step 0.5 pts: 1 of 200 samples)") in squeezed(proc.stdout)

    proc, report = run_digits(digits, tmp_path / "by-name")
    sorted_names = sorted(NAMES)  # eight, five, four, nine, one, seven, six, three, two, zero: only six keeps its index
    assert [k for k, name in enumerate(NAMES) if sorted_names.index(name) == k] == [6]
    by_name = report["accuracy"]["pytorch"]
    assert by_name < 20.0, by_name
    print(
        f"digits, PyTorch's own accuracy on 200 images: with --labels {labelled:.2f}%, by sorted names {by_name:.2f}%"
    )
    warning = next(n for n in report["notices"] if "near chance" in n)
    assert warning.startswith(f"WARNING: PyTorch's own accuracy on --eval-data is {by_name:.1f}%, near chance")
    assert "WARNING PyTorch's own accuracy on --eval-data" in proc.stdout and "--labels FILE" in proc.stdout
