"""Formats and inputs through the pipeline against the fake runtime: what
each step is asked (the --code folder reaches the export stage only), the
batch-N check, the I/O contract's names, dtypes and free batch, and the
report saying when the reference is onnxruntime."""

from __future__ import annotations

import collections
import json
import pickle
import zipfile
from pathlib import Path

import pytest
from convertctl.checks import validate
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK, EXIT_VALIDATION, UsageError
from convertctl.report.model import Report
from convertctl.report.render import markdown, rows
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file


def state_dict_file(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:  # torch.save's layout; only safe globals in data.pkl
        z.writestr("weights/data.pkl", pickle.dumps(collections.OrderedDict(), protocol=2))
        z.writestr("weights/version", "3\n")
    return path


def run(model, tmp_path, runtime=None, plan="local", **kw):
    opts = options(
        model=model,
        shapes=kw.pop("shapes", [(1, 3, 8, 8)]),
        modes=kw.pop("modes", ["fp32"]),
        out=tmp_path / "out",
        latency_runs=0,
        keep_run=True,
        **kw,
    )
    runtime = runtime or FakeRuntime()
    runtime.name = plan
    return Pipeline(opts, runtime, load_catalog(), lambda _: None).run()


def requests(report) -> dict:
    """work folder -> the request.json each step got."""
    run_dir = Path(report.out_dir) / ".convertctl" / "runs"
    return {
        str(p.parent.relative_to(next(run_dir.iterdir()))): json.loads(p.read_text())
        for p in run_dir.glob("*/**/request.json")
    }


def test_the_code_folder_and_arch_reach_the_export_stage_only(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    model = state_dict_file(tmp_path / "weights.pt")
    report = run(
        model,
        tmp_path,
        arch="nets:build",
        arch_kwargs={"classes": 10},
        code_dir=code,
        modes=["fp32", "int8"],
        converter="onnx-tf",  # an ONNX family: only its export step loads the model
    )
    assert report.exit_code == EXIT_OK, report.failure
    asked = requests(report)
    export = asked["export/export-torch2.13"]
    assert export["model_format"] == "state-dict" and export["arch"] == "nets:build"
    assert export["arch_kwargs"] == {"classes": 10} and export["code_dir"] == str(code.resolve())
    others = [r for work, r in asked.items() if not work.startswith("export/")]
    assert len(others) == 5  # convert, quantize fp32 and int8, and LiteRT's run of each file
    assert not any(key in r for r in others for key in ("code_dir", "arch", "arch_kwargs", "trusted"))
    assert all(r["input_dtypes"] == ["float32"] and r["dynamic_batch"] is False for r in asked.values())


def test_a_state_dict_without_arch_never_reaches_a_stage(tmp_path):
    fake = FakeRuntime()
    with pytest.raises(UsageError, match="--arch module:callable"):
        run(state_dict_file(tmp_path / "weights.pt"), tmp_path, fake)
    assert fake.calls == [] and not (tmp_path / "out").exists()


@pytest.fixture
def torchscript(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


class FixedBatchFake(FakeRuntime):
    """A converter that kept the batch dimension fixed (shape signature 1)."""

    def quantize(self, work, request, sets, result, run_dir=None):
        super().quantize(work, request, sets, result, run_dir)
        for tensor in result["artifact"]["inputs"] + result["artifact"]["outputs"]:
            tensor["shape_signature"] = [1, *tensor["shape"][1:]]


def test_dynamic_batch_is_checked_at_batch_n_and_in_the_signature(torchscript, tmp_path):
    report = run(torchscript, tmp_path, dynamic_batch=True, modes=["fp32", "fp16"])
    assert report.exit_code == EXIT_OK, report.failure
    assert report.inputs["batch"] == {"count": 1, "batch": 4}
    at4 = [c for c in report.checks if c["input_set"] == "batch"]
    assert [(c["mode"], c["note"]) for c in at4] == [("fp32", "batch 4"), ("fp16", "batch 4")]
    assert at4[0]["outputs"][0]["shape"] == [4, 10]
    assert ("tflite vs torch (batch 4)", "fp32") in [(r[0], r[1]) for r in rows(report)]
    assert all(r["dynamic_batch"] is True for r in requests(report).values())

    fixed = run(torchscript, tmp_path / "again", FixedBatchFake(), dynamic_batch=True)
    assert fixed.exit_code == EXIT_VALIDATION
    check = next(c for c in fixed.checks if c["input_set"] == "samples" and c["stage"] == "tflite")
    assert "batch: TFLite input 'input' has a fixed batch (shape signature [1, 3, 8, 8])" in check["failures"][0]


def test_without_dynamic_batch_there_is_no_batch_set(torchscript, tmp_path):
    report = run(torchscript, tmp_path)
    assert "batch" not in report.inputs and not any(c["input_set"] == "batch" for c in report.checks)


# -- the I/O contract ---------------------------------------------------------


def tensor(name, shape, dtype="float32", signature=None):
    out = {"name": name, "shape": shape, "dtype": dtype}
    if signature is not None:
        out["shape_signature"] = signature
    return out


def test_inputs_are_matched_by_signature_name_not_tensor_order():
    art = {"inputs": [tensor("tokens", [1, 8], "int64"), tensor("image", [1, 3, 8, 8])], "outputs": []}
    shapes = {"image": [1, 3, 8, 8], "tokens": [1, 8]}
    assert validate.io_contract(art, shapes, [], input_dtypes={"image": "float32", "tokens": "int64"}) == []


@pytest.mark.parametrize(
    "got, want, ok",
    [
        ("int64", "int64", True),
        ("int32", "int64", True),  # narrowed by the converter: every token id still fits
        ("float32", "int64", False),
        ("int8", "float32", True),  # a quantized float input (the int8 mode's own check says if it must be)
        ("int64", "float32", False),
    ],
)
def test_input_dtypes(got, want, ok):
    art = {"inputs": [tensor("x", [1, 4], got)], "outputs": []}
    problems = validate.io_contract(art, {"x": [1, 4]}, [], input_dtypes={"x": want})
    assert (problems == []) is ok, problems
    if not ok:
        assert problems == [f"dtype: TFLite input 'x' is {got}, PyTorch's {want}"]


def test_dynamic_batch_wants_a_free_batch_on_every_tensor():
    outputs = [{"name": "y", "shape": [1, 2]}]
    free = {"inputs": [tensor("x", [1, 4], signature=[-1, 4])], "outputs": [tensor("y", [1, 2], signature=[-1, 2])]}
    assert validate.io_contract(free, {"x": [1, 4]}, outputs, dynamic_batch=True) == []
    fixed = {"inputs": free["inputs"], "outputs": [tensor("y", [1, 2], signature=[1, 2])]}
    (problem,) = validate.io_contract(fixed, {"x": [1, 4]}, outputs, dynamic_batch=True)
    assert problem.startswith("batch: TFLite output 'y' has a fixed batch")
    assert validate.io_contract(fixed, {"x": [1, 4]}, outputs) == [], "no --dynamic-batch: not asked"


def test_the_report_says_when_the_reference_is_onnxruntime():
    report = Report(model={"path": "m.onnx", "reference": "onnxruntime", "input_shapes": {}}, runtime="x", modes=[])
    report.checks = [
        {"stage": "savedmodel", "mode": None, "input_set": "samples", "status": "passed", "outputs": [], "variant": "v"}
    ]
    assert rows(report)[0][0] == "savedmodel vs onnxruntime"
    assert "Reference: onnxruntime on the ONNX model file (the model is ONNX, not PyTorch)." in markdown(report)
    report.model["reference"] = "torch"
    assert rows(report)[0][0] == "savedmodel vs torch" and "not PyTorch" not in markdown(report)
