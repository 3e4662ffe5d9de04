"""The quantization recipes users of Google's LiteRT tooling expect
(weight-only int8/int4, dynamic int4) and `convertctl quantize` on an
existing float .tflite, each validated like every other mode: real stages,
real files, on both runtimes. Each file proves its mode by what it stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import convertctl, load_json, requires_docker

pytestmark = pytest.mark.acceptance
SHAPE = "1,3,64,64"
RECIPES = ["weight-only-int8", "weight-only-int4", "dynamic-int4"]


def run(*args):
    proc = convertctl(*map(str, args))
    return proc


def stored(artifact: dict) -> set:
    """The dtypes the file stores its weights in (the quantize step read them back)."""
    return {dtype for by_dtype in artifact["tensors"]["weights"].values() for dtype in by_dtype}


def assert_recipes(report: dict, modes: list) -> dict:
    assert report["status"] == "passed", report["failure"]
    arts = {a["mode"]: a for a in report["artifacts"]}
    assert sorted(arts) == sorted(modes)
    for mode, art in arts.items():
        assert art["quantizer"].startswith("litert-quantizer"), (mode, art.get("quantizer"))
        check = next(
            c
            for c in report["checks"]
            if c["stage"] == "tflite" and c["mode"] == mode and c["variant"] == art["variant"]
        )
        assert check["status"] == "passed" and not any(f.startswith("signature") for f in check["failures"])
    assert "int8" in stored(arts["weight-only-int8"]) and "int4" in stored(arts["weight-only-int4"])
    assert "int4" in stored(arts["dynamic-int4"])
    assert arts["weight-only-int8"]["tensors"]["weights_dequantized"], "weight-only: dequantized for float kernels"
    assert not arts["dynamic-int4"]["tensors"].get("weights_dequantized"), "dynamic: hybrid kernels"
    assert arts["weight-only-int4"]["size_bytes"] < arts["weight-only-int8"]["size_bytes"]
    return arts


@pytest.fixture(scope="module")
def float_tflite(smallcnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32")
    run("run", smallcnn, "--input-shape", SHAPE, "-q", "fp32", "--out", out, "--runtime", "local", "--latency-runs", 0,
        "--keep-run")  # fmt: skip
    path = out / "smallcnn_fp32.tflite"
    assert path.is_file()
    return path


def test_the_recipes_validate_on_the_local_runtime(smallcnn, tmp_path):
    args = ["run", smallcnn, "--input-shape", SHAPE, "--out", tmp_path, "--runtime", "local", "--latency-runs", 0]
    proc = run(*args, *[a for m in RECIPES for a in ("-q", m)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    arts = assert_recipes(load_json(tmp_path / "report.json"), RECIPES)
    for mode in RECIPES:
        assert (tmp_path / f"smallcnn_{mode}.tflite").stat().st_size == arts[mode]["size_bytes"]


def test_quantize_makes_every_mode_from_a_float_tflite(float_tflite, tmp_path):
    proc = run("quantize", float_tflite, "--out", tmp_path, "--runtime", "local", "--latency-runs", 0,
               *[a for m in [*RECIPES, "int8", "dynamic"] for a in ("-q", m)])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = load_json(tmp_path / "report.json")
    assert report["model"]["reference"] == "litert" and report["model"]["file"]["format"] == "tflite"
    assert_recipes({**report, "artifacts": [a for a in report["artifacts"] if a["mode"] in RECIPES]}, RECIPES)
    int8 = next(a for a in report["artifacts"] if a["mode"] == "int8")
    assert [t["dtype"] for t in int8["inputs"] + int8["outputs"]] == ["int8", "int8"]
    assert "Reference: LiteRT on the float .tflite" in proc.stdout


def test_quantize_judges_against_pytorch_when_the_run_that_made_the_file_is_given(float_tflite, tmp_path):
    import numpy as np

    earlier = Path(load_json(float_tflite.parent / "report.json")["run_dir"])
    proc = run("quantize", float_tflite, "-q", "int8", "--out", tmp_path, "--runtime", "local", "--latency-runs", 0,
               "--reference-run", earlier, "--keep-run")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = load_json(tmp_path / "report.json")
    assert report["model"]["reference"] == "torch" and report["inputs"]["samples"]["source"].startswith("the inputs of")
    assert any(n.startswith("reference: PyTorch's outputs of") and "not a file" not in n for n in report["notices"])
    here = Path(report["run_dir"])
    rung = next(r["variant"] for r in load_json(earlier / "report.json")["ladder"] if r["status"] == "used")
    with (
        np.load(earlier / "export" / rung / "reference_samples.npz") as a,
        np.load(here / "export" / "reference-run" / "reference_samples.npz") as b,
    ):
        assert [a[k].tolist() for k in a.files] == [b[k].tolist() for k in b.files], "PyTorch's outputs, as saved"
    with np.load(earlier / "inputs" / "samples.npz") as a, np.load(here / "inputs" / "samples.npz") as b:
        assert sorted(np.asarray(a[a.files[0]]).ravel().tolist()) == sorted(np.asarray(b[b.files[0]]).ravel().tolist())
    check = next(c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] == "int8")
    assert check["status"] == "passed" and check["input_set"] == "samples"
    assert "PyTorch" in proc.stdout


def test_a_reference_run_is_for_a_tflite_only(smallcnn, float_tflite, tmp_path):
    earlier = load_json(float_tflite.parent / "report.json")["run_dir"]
    proc = run("run", smallcnn, "--input-shape", SHAPE, "-q", "fp16", "--out", tmp_path, "--reference-run", earlier)
    assert proc.returncode == 2 and "--reference-run is for a float .tflite" in proc.stderr
    assert not (tmp_path / "report.json").exists()


def test_quantize_refuses_a_file_that_is_already_quantized(float_tflite, tmp_path):
    first = tmp_path / "first"
    assert (
        run(
            "quantize", float_tflite, "-q", "int8", "--out", first, "--runtime", "local", "--latency-runs", 0
        ).returncode
        == 0
    )
    again = run("quantize", first / "smallcnn_fp32_int8.tflite", "-q", "dynamic", "--out", tmp_path / "again",
                "--runtime", "local")  # fmt: skip
    assert again.returncode == 2, again.stderr
    assert "already quantized" in again.stderr and "give the float .tflite" in again.stderr


def test_quantize_needs_a_tflite_and_a_mode(smallcnn, float_tflite, tmp_path):
    wrong = run("quantize", smallcnn, "-q", "int8", "--out", tmp_path)
    assert wrong.returncode == 2 and "not a .tflite file" in wrong.stderr
    no_mode = run("quantize", float_tflite, "--out", tmp_path)
    assert no_mode.returncode == 2 and "give --quant" in no_mode.stderr


@pytest.mark.docker
@requires_docker
def test_the_recipes_and_quantize_validate_on_docker(smallcnn, float_tflite, tmp_path):
    args = ["run", smallcnn, "--input-shape", SHAPE, "--out", tmp_path / "run", "--runtime", "docker"]
    proc = run(*args, "--latency-runs", 0, *[a for m in RECIPES for a in ("-q", m)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert_recipes(load_json(tmp_path / "run" / "report.json"), RECIPES)
    proc = run("quantize", float_tflite, "--out", tmp_path / "q", "--runtime", "docker", "--latency-runs", 0,
               *[a for m in RECIPES for a in ("-q", m)])  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = load_json(tmp_path / "q" / "report.json")
    assert report["runtime"] == "docker" and report["model"]["reference"] == "litert"
    assert_recipes(report, RECIPES)
