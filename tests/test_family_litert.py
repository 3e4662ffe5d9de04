"""The litert-torch family pinned (--converter litert-torch) on the small CNN:
every mode made and validated like any other family's, the int8 contract
included; the body of the graph kept channels-last, and NHWC I/O with
--layout nhwc. Real venvs, real conversions; one Docker run."""

from __future__ import annotations

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK
from stage_envs import tflite_layout

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]
SHAPE = "1,3,64,64"


def run_pinned(model, out, runtime="local", *extra):
    args = ["run", model, "--input-shape", SHAPE, "--converter", "litert-torch", "--out", out, "--runtime", runtime]
    for mode in ALL:
        args += ["--quant", mode]
    proc = convertctl(*args, *extra)
    report = load_json(out / "report.json") if (out / "report.json").exists() else None
    return proc, report


@pytest.fixture(scope="module")
def nchw(smallcnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert-nchw")
    return (out, *run_pinned(smallcnn, out))


@pytest.fixture(scope="module")
def nhwc(smallcnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("litert-nhwc")
    return (out, *run_pinned(smallcnn, out, "local", "--layout", "nhwc"))


def checks(report, mode):
    return next(c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] == mode)


def assert_every_mode_validates(proc, report, family="litert-torch"):
    assert proc.returncode == EXIT_OK, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report["status"] == "passed"
    arts = {a["mode"]: a for a in report["artifacts"]}
    assert sorted(arts) == sorted(ALL)
    for mode in ALL:
        assert arts[mode]["family"] == family and checks(report, mode)["status"] == "passed", mode
    # No ONNX and no TensorFlow on the way: the reference run, then the family's own steps.
    assert [c["stage"] for c in report["checks"]] == ["tflite"] * len(ALL)
    rungs = [e for e in report["ladder"] if e["stage"] == "convert"]
    assert [(e["family"], e["status"]) for e in rungs] == [(family, "used")]
    assert rungs[0]["modes"] == {m: "ok" for m in ALL}
    # The int8 contract, checked as for every family: int8 in and out, no float op, no Flex.
    int8 = arts["int8"]
    assert [t["dtype"] for t in int8["inputs"] + int8["outputs"]] == ["int8", "int8"]
    assert int8["ops"]["float_ops"] == 0 and int8["ops"]["flex_ops"] == []
    sizes = {m: a["size_bytes"] for m, a in arts.items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"] and sizes["dynamic"] < sizes["fp32"]
    return arts


def test_every_mode_validates_with_the_family_pinned(nchw):
    out, proc, report = nchw
    arts = assert_every_mode_validates(proc, report)
    fp32 = checks(report, "fp32")["outputs"][0]
    assert fp32["max_abs"] <= 1e-4 and fp32["top1"] == 1.0
    stages = {(s["stage"], s.get("mode")): s for s in report["stages"]}
    assert stages[("convert", None)]["versions"]["litert_torch"] == "0.10.0"
    assert "tensorflow" not in str(stages[("quantize", "int8")]["versions"])
    # PyTorch's names in the file's signature; NCHW I/O, as PyTorch's, unless asked otherwise.
    assert [(t["name"], t["shape"]) for t in arts["fp32"]["inputs"]] == [("input", [1, 3, 64, 64])]
    assert [t["name"] for t in arts["fp32"]["outputs"]] == ["output"]
    assert arts["fp32"]["layout"] == {"inputs": {}, "outputs": {}}
    for mode in ALL:
        assert (out / f"smallcnn_{mode}.tflite").stat().st_size == arts[mode]["size_bytes"]


def test_nhwc_layout_gives_channels_last_io_and_validates(nhwc):
    out, proc, report = nhwc
    arts = assert_every_mode_validates(proc, report)
    for mode in ALL:
        assert [t["shape"] for t in arts[mode]["inputs"]] == [[1, 64, 64, 3]], mode
        assert arts[mode]["layout"]["inputs"] == {"input": [0, 2, 3, 1]}
    assert "io int8 NHWC" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "family",
    [
        "litert-torch",
        pytest.param(
            "onnx2tf",
            marks=pytest.mark.skipif(
                "onnx2tf" not in load_catalog().families(), reason="the catalog has no onnx2tf variant"
            ),
        ),
    ],
)
def test_no_transpose_between_the_first_and_the_last_layer(family, smallcnn, nchw, nhwc, tmp_path):
    """NCHW I/O: transposes at the boundary only (the app's layout to the
    graph's NHWC and back); --layout nhwc: none at all."""
    if family == "litert-torch":
        (out, _, _), (out_nhwc, _, _) = nchw, nhwc
    else:
        out, out_nhwc = tmp_path / "nchw", tmp_path / "nhwc"
        # onnx2tf gives NHWC unless asked: NCHW I/O is --layout nchw there.
        for where, extra in ((out, ["--layout", "nchw"]), (out_nhwc, ["--layout", "nhwc"])):
            convertctl("run", smallcnn, "--input-shape", SHAPE, "--converter", family, "--out", where,
                       "--runtime", "local", *extra, check=True)  # fmt: skip
    inside = tflite_layout(out / "smallcnn_fp32.tflite")
    assert inside["inputs"] == [[1, 3, 64, 64]]
    assert all(t["at_input"] or t["at_output"] for t in inside["transposes"]), inside
    assert len(inside["transposes"]) <= 1, "the (1, 10) output needs none; the NCHW input one at most"
    channels_last = tflite_layout(out_nhwc / "smallcnn_fp32.tflite")
    assert channels_last == {"inputs": [[1, 64, 64, 3]], "outputs": [[1, 10]], "transposes": []}


@pytest.mark.docker
@requires_docker
def test_every_mode_validates_in_docker(smallcnn, tmp_path):
    proc, report = run_pinned(smallcnn, tmp_path / "out", "docker")
    assert_every_mode_validates(proc, report)
    assert report["runtime"] == "docker"
    convert = next(s for s in report["stages"] if s["stage"] == "convert")
    assert convert["variant"] == "litert-torch0.10" and convert["versions"]["litert_torch"] == "0.10.0"
