"""The onnx2tf family's newer variants, with real environments and real
conversions: onnx2tf2.6 (onnx2tf 2.x, backend flatbuffer_direct: the fp32
.tflite written without TensorFlow; Python 3.13, so a Debian trixie image,
and locally only where a Python 3.13 is installed). onnx2tf 1.29 on TF 2.21,
the family's first rung, is test_family_onnx2tf.py's. Few and small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catalogs import catalog_file
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_CONVERSION, EXIT_ENVIRONMENT, EXIT_OK, EXIT_VALIDATION
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from stage_envs import build_zoo, run_in

acceptance = pytest.mark.acceptance
DIRECT = "onnx2tf2.6"
SHAPE = "1,3,64,64"


def run(model, out, *args, modes=("fp32",), shape: str | None = SHAPE, runtime="docker"):
    cmd = ["run", model, "--out", out, "--runtime", runtime, "--latency-runs", "0", *args]
    cmd += ["--input-shape", shape] if shape else []
    for mode in modes:
        cmd += ["--quant", mode]
    proc = convertctl(*cmd)
    reports = [out / "report.json"] + sorted((out / ".convertctl" / "runs").glob("*/report.json"))
    found = [p for p in reports if p.is_file()]
    return proc, load_json(found[0]) if found else None


def convert_entries(report) -> list:
    return [e for e in report["ladder"] if e["stage"] == "convert"]


def python_313_here() -> bool:
    return not EnvStore(settings=load_settings()).find_python("3.13")[1]


@acceptance
@pytest.mark.docker
@requires_docker
def test_onnx2tf2_converts_and_validates_zoo_models_in_docker(tmp_path):
    """MobileNetV3-small (hardswish, squeeze-excitation) and the GRU, which
    onnx-tf cannot convert: fp32, dynamic and fp16 validate; image I/O is
    NHWC as the 1.29 variant gives it, recorded per file. The GRU's fp16
    file is refused by its signature: LiteRT Quantizer casts the weights of
    FULLY_CONNECTED and convolutions only, and flatbuffer_direct lowers the
    GRU's matrices otherwise, so the file keeps float32 weights."""
    zoo = build_zoo(tmp_path / "zoo", "mobilenetv3_small", "gru")
    for name, facts in zoo.items():
        shape = ",".join(map(str, facts["input_shape"]))
        proc, report = run(
            tmp_path / "zoo" / f"{name}.pt",
            tmp_path / name,
            "--converter",
            DIRECT,
            modes=("fp32", "dynamic", "fp16"),
            shape=shape,
        )
        if name == "gru":
            assert proc.returncode == EXIT_VALIDATION, proc.stdout[-3000:]
            (entry,) = convert_entries(report)
            assert entry["modes"]["fp32"] == entry["modes"]["dynamic"] == "ok"
            assert "signature: fp16 stores weights as float16" in entry["modes"]["fp16"], entry["modes"]
        else:
            assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
        assert [e["variant"] for e in convert_entries(report)] == [DIRECT]
        stages = {s["stage"]: s for s in report["stages"]}
        assert stages["convert"]["versions"]["onnx2tf"] == "2.6.9" and "tensorflow" not in stages["convert"]["versions"]
        assert stages["quantize"]["variant"] == "quantize-litertq0.11"
        fp32 = next(a for a in report["artifacts"] if a["mode"] == "fp32")
        assert fp32["ops"]["flex_ops"] == []
        if name == "mobilenetv3_small":
            assert fp32["layout"]["inputs"] == {"input": [0, 2, 3, 1]} and fp32["inputs"][0]["shape"] == [1, 64, 64, 3]
        else:  # sequences keep their layout
            assert fp32["layout"]["inputs"] == {"input": [0, 1, 2]}


@acceptance
@pytest.mark.docker
@requires_docker
def test_a_node_onnx2tf2_cannot_lower_fails_with_its_reason_code(tmp_path):
    model = tmp_path / "trace.onnx"
    run_in(load_catalog().ladder("local", "export")[0].name, "onnx_custom_op.py", model)
    proc, report = run(model, tmp_path / "out", "--converter", DIRECT, shape=None)
    assert proc.returncode == EXIT_CONVERSION, proc.stdout[-3000:]
    entry = convert_entries(report)[0]
    assert entry["failed_stage"] == "convert" and "reason_code=custom_op_lowered" in entry["error"], entry
    assert "Einsum" in entry["error"]
    result = json.loads((Path(report["run_dir"]) / "convert" / DIRECT / "result.json").read_text())
    assert result["reason_code"] == "custom_op_lowered"
    assert result["op_coverage"]["custom_ops"] == ["Einsum"]


@acceptance
@pytest.mark.skipif(python_313_here(), reason="a Python 3.13 is installed here: the variant runs locally")
def test_without_python_313_the_local_runtime_says_so_and_the_ladder_goes_on(smallcnn, tmp_path, monkeypatch):
    proc, _ = run(smallcnn, tmp_path / "pinned", "--converter", DIRECT, runtime="local")
    assert proc.returncode == EXIT_ENVIRONMENT
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "onnx2tf2.6 needs Python 3.13, which is not installed here" in said, said[-2000:]
    # First on a ladder: the rung is passed over with the reason, the next one makes the file.
    monkeypatch.setenv("CONVERTCTL_CATALOG", str(catalog_file(tmp_path, [DIRECT, "onnx2tf-tf2.21"])))
    proc, report = run(smallcnn, tmp_path / "ladder", runtime="local")
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    first, second = convert_entries(report)
    assert first["variant"] == DIRECT and first["failed_stage"] == "environment", first
    assert "needs Python 3.13" in first["error"]
    assert second["variant"] == "onnx2tf-tf2.21" and second["status"] == "used"
