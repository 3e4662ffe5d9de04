"""The onnx2tf family pinned (--converter onnx2tf): every mode validates on
the small CNN; the fp32 file is channels-last inside (no Transpose between
the first and the last layer) with NHWC I/O by default or with --layout nhwc,
and NCHW I/O with --layout nchw; GELU becomes builtin ops (no Flex, int8
too; onnx-tf makes tf.Erf of it, a Flex op); one Docker run. Real venvs and
real conversions; the .tflite files are opened again with the onnx2tf
environment's own TensorFlow to see where their Transposes are. The unit
tests at the end need neither (the opset the ladder picks, the stage's
layout arithmetic)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK, UsageError
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file

ALL = ["fp32", "dynamic", "int8", "fp16"]
SHAPE = "1,3,64,64"
VARIANT = "onnx2tf-tf2.21"  # the family's rung on both ladders
acceptance = pytest.mark.acceptance

# Where a file's TRANSPOSE ops sit: reading a graph input, writing a graph
# output, or in between. Ops as the file has them (no delegate applied).
TFLITE_OPS = """
import json, sys
import tensorflow as tf
interp = tf.lite.Interpreter(
    model_path=sys.argv[1],
    experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
ins = set(d["index"] for d in interp.get_input_details())
outs = set(d["index"] for d in interp.get_output_details())
ops = interp._get_ops_details()
print(json.dumps({
    "ops": [op["op_name"] for op in ops],
    "transposes": [{"reads_input": any(int(t) in ins for t in op["inputs"]),
                    "writes_output": any(int(t) in outs for t in op["outputs"])}
                   for op in ops if op["op_name"] == "TRANSPOSE"],
    "inputs": [[int(d) for d in t["shape"]] for t in interp.get_input_details()],
    "outputs": [[int(d) for d in t["shape"]] for t in interp.get_output_details()],
}))
"""


def tflite_ops(path: Path) -> dict:
    from convertctl.store.envstore import EnvStore
    from convertctl.store.pipconfig import load_settings

    python = EnvStore(settings=load_settings()).ensure(load_catalog().get(VARIANT)).python
    proc = subprocess.run([str(python), "-c", TFLITE_OPS, str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pinned(model, out, *extra, modes=ALL, shape=SHAPE, runtime="local"):
    args = ["run", model, "--input-shape", shape, "--converter", "onnx2tf", "--out", out, "--runtime", runtime]
    for mode in modes:
        args += ["--quant", mode]
    proc = convertctl(*args, *extra)
    return proc, load_json(out / "report.json") if (out / "report.json").exists() else None


def assert_every_mode_validates(proc, report):
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    assert report["status"] == "passed"
    assert [e["variant"] for e in report["ladder"] if e["stage"] == "convert"] == [VARIANT]
    assert {a["family"] for a in report["artifacts"]} == {"onnx2tf"}
    checks = {(c["stage"], c["mode"]): c for c in report["checks"]}
    assert checks[("savedmodel", None)]["outputs"][0]["max_abs"] <= 1e-4  # the SavedModel, in PyTorch's layout
    assert checks[("tflite", "fp32")]["outputs"][0]["max_abs"] <= 1e-4
    for mode in ALL:
        assert checks[("tflite", mode)]["status"] == "passed", checks[("tflite", mode)]
    int8 = next(a for a in report["artifacts"] if a["mode"] == "int8")
    assert [t["dtype"] for t in int8["inputs"] + int8["outputs"]] == ["int8", "int8"]
    assert int8["ops"]["flex_ops"] == [] and int8["ops"]["float_ops"] == 0


@pytest.fixture(scope="module")
def pinned(smallcnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx2tf-out")
    return (*run_pinned(smallcnn, out), out)


@acceptance
def test_every_mode_validates(pinned):
    proc, report, _ = pinned
    assert_every_mode_validates(proc, report)
    convert = next(s for s in report["stages"] if s["stage"] == "convert")
    assert convert["versions"]["onnx2tf"] == "1.29.24" and convert["versions"]["tensorflow"] == "2.21.0"
    assert next(e for e in report["ladder"] if e["stage"] == "convert")["opset"] == 17, "its preferred opset"


@acceptance
def test_channels_last_by_default_with_no_transpose_at_all(pinned):
    _, report, out = pinned
    fp32 = next(a for a in report["artifacts"] if a["mode"] == "fp32")
    assert fp32["layout"]["inputs"] == {"input": [0, 2, 3, 1]}, "recorded per file"
    assert [t["shape"] for t in fp32["inputs"]] == [[1, 64, 64, 3]]
    seen = tflite_ops(out / "smallcnn_fp32.tflite")
    assert seen["inputs"] == [[1, 64, 64, 3]] and "CONV_2D" in seen["ops"]
    assert seen["transposes"] == [], seen["ops"]


@acceptance
def test_layout_nhwc_is_channels_last_io_and_inside(smallcnn, tmp_path):
    proc, report = run_pinned(smallcnn, tmp_path, "--layout", "nhwc", modes=["fp32"])
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    art = report["artifacts"][0]
    assert art["layout"]["inputs"] == {"input": [0, 2, 3, 1]} and art["inputs"][0]["shape"] == [1, 64, 64, 3]
    assert tflite_ops(tmp_path / "smallcnn_fp32.tflite")["transposes"] == []


@acceptance
def test_layout_nchw_gives_pytorchs_io_with_transposes_at_the_boundary_only(smallcnn, tmp_path):
    proc, report = run_pinned(smallcnn, tmp_path, "--layout", "nchw", modes=["fp32"])
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    art = report["artifacts"][0]
    assert art["layout"]["inputs"] == {"input": [0, 1, 2, 3]} and art["inputs"][0]["shape"] == [1, 3, 64, 64]
    seen = tflite_ops(tmp_path / "smallcnn_fp32.tflite")
    assert seen["inputs"] == [[1, 3, 64, 64]]
    assert seen["transposes"], "NCHW in, NHWC inside: one Transpose where the input comes in"
    assert all(t["reads_input"] or t["writes_output"] for t in seen["transposes"]), seen


@acceptance
def test_gelu_converts_to_builtin_ops_in_float_and_int8(tmp_path):
    """A ConvNeXt-style net (7x7 depthwise, LayerNorm, GELU): torch exports
    GELU with Erf, which onnx-tf turns into tf.Erf (a Flex op); onnx2tf gives
    TFLite's GELU, and int8 keeps no op in float."""
    model = tmp_path / "convnext.pt"
    shape = "1,3,32,32"
    convertctl("example", model, "--name", "convnext", "--input-shape", shape, "--runtime", "local", check=True)
    proc, report = run_pinned(model, tmp_path / "out", "--latency-runs", "0", modes=["fp32", "int8"], shape=shape)
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    arts = {a["mode"]: a for a in report["artifacts"]}
    for art in arts.values():
        assert art["ops"]["flex_ops"] == [] and not any(op.startswith("Flex") for op in art["ops"]["histogram"])
        assert art["ops"]["histogram"].get("GELU") == 12, "one op per GELU of the net"
    assert arts["int8"]["ops"]["float_ops"] == 0
    seen = tflite_ops(tmp_path / "out" / "convnext_fp32.tflite")
    assert not {"ERF", "EXP", "NEG"} & set(seen["ops"]), "no Erf polynomial left"


@acceptance
@pytest.mark.docker
@requires_docker
def test_every_mode_validates_in_docker(tmp_path):
    # Opset 12, which the tutorial's export image (torch 1.7) writes and
    # onnx2tf reads: this test needs no second export image.
    model = tmp_path / "small17.pt"
    convertctl("example", model, "--name", "smallcnn", "--input-shape", SHAPE, "--runtime", "docker", check=True)
    proc, report = run_pinned(model, tmp_path / "out", "--opset", "12", runtime="docker")
    assert_every_mode_validates(proc, report)
    assert report["runtime"] == "docker"
    versions = {s["stage"]: s["versions"] for s in report["stages"]}
    assert versions["export"]["torch"].startswith("1.7") and versions["convert"]["onnx2tf"] == "1.29.24"
    assert versions["quantize"]["tensorflow"] == "2.21.0", "quantized by the TF that wrote the SavedModel"


# -- units: no real stage ------------------------------------------------------------------
@pytest.fixture
def fake_model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


def fake_run(model, tmp_path, **kw):
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=["fp32"], out=tmp_path / "out", latency_runs=0, **kw)
    runtime = FakeRuntime()
    runtime.name = "local"
    return Pipeline(opts, runtime, load_catalog(), lambda _: None).run(), runtime


def test_the_export_writes_the_opset_onnx2tf_prefers_unless_asked(fake_model, tmp_path):
    report, _ = fake_run(fake_model, tmp_path / "a", converter="onnx2tf")
    assert report.exit_code == EXIT_OK
    assert [e.get("opset") for e in report.ladder if e["stage"] == "convert"] == [17]
    report, _ = fake_run(fake_model, tmp_path / "b", converter="onnx2tf", opset=12)
    assert [e.get("opset") for e in report.ladder if e["stage"] == "convert"] == [12]
    with pytest.raises(UsageError, match="onnx2tf-tf2.21 reads opsets 11-20, --opset 9 given"):
        fake_run(fake_model, tmp_path / "c", converter="onnx2tf", opset=9)


def test_layout_requests_reach_the_convert_stage(fake_model, tmp_path):
    fake_run(fake_model, tmp_path, converter="onnx2tf", layout="nchw", keep_run=True)
    request = json.loads(next((tmp_path / "out").rglob(f"convert/{VARIANT}/request.json")).read_text())
    assert request["layout"] == "nchw"


def stage_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "images" / "onnx2tf" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("found", [[0, 2, 3, 1], [0, 1, 2, 3], [0, 3, 2, 1], [3, 0, 1, 2]])
@pytest.mark.parametrize("target", [[0, 1, 2, 3], [0, 2, 3, 1]])
def test_the_transpose_that_moves_an_output_to_its_layout(found, target):
    layouts = stage_module("layouts")
    pytorch = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    got = pytorch.transpose(found)  # as onnx2tf gave it
    assert np.array_equal(got.transpose(layouts.move(found, target)), pytorch.transpose(target))


def test_an_output_perm_is_told_by_the_numbers_where_shapes_are_ambiguous():
    layouts = stage_module("layouts")
    ref = np.random.default_rng(0).standard_normal((1, 16, 16, 16)).astype(np.float32)
    for perm in ([0, 2, 3, 1], [0, 3, 2, 1], [0, 1, 2, 3]):
        assert layouts.best_perm(np, ref, ref.transpose(perm))[0] == perm
    assert layouts.best_perm(np, ref, ref.reshape(1, 16, 256)) == (None, float("inf"))


def test_sequences_keep_their_layout_and_images_go_channels_last():
    layouts = stage_module("layouts")
    assert layouts.input_target(4, None) == [0, 2, 3, 1] and layouts.input_target(4, "nhwc") == [0, 2, 3, 1]
    assert layouts.input_target(4, "nchw") == [0, 1, 2, 3]
    assert layouts.input_target(3, None) == [0, 1, 2], "(batch, length, features) stays as it is"
    assert layouts.output_target(4, [0, 3, 2, 1], None) == [0, 3, 2, 1], "default: what onnx2tf gave"
    assert layouts.output_target(4, [0, 3, 2, 1], "nhwc") == [0, 2, 3, 1]
    assert layouts.output_target(3, [0, 2, 1], "nchw") == [0, 1, 2]
