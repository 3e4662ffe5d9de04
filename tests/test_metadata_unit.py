"""Android-ready files without real stages: with --labels, each final file
goes through the metadata stage after its checks and before it is placed,
the file with metadata is run by LiteRT again and must compute the same
outputs, and the report says what was written; without --labels nothing is
written; labels that fit no output are a usage error. The real
tflite-support and LiteRT are in tests/test_metadata.py."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK, EXIT_USAGE, EXIT_VALIDATION
from convertctl.report.model import SCHEMA_FILE
from convertctl.report.render import markdown
from convertctl.run import metadata
from convertctl.run.pipeline import Pipeline
from fakes import FakeRuntime, options, torchscript_file

LABELS = [f"class {i}" for i in range(10)]  # the fake model has 10 class scores


def run(tmp_path, labels=LABELS, **kw):
    model = torchscript_file(tmp_path / "net.pt")
    if labels is not None:
        (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
        kw["labels"] = str(tmp_path / "labels.txt")
    fake = FakeRuntime()
    fake.name = "local"
    opts = options(model, tmp_path / "out", modes=["fp32", "int8"], converter="onnx-tf", latency_runs=0, **kw)
    return Pipeline(opts, fake, load_catalog(), lambda _: None).run(), fake


def test_labels_put_metadata_into_every_file_checked_by_litert(tmp_path):
    report, fake = run(tmp_path, mean=[0.5], std=[0.25])
    assert report.exit_code == EXIT_OK, report.failure
    assert fake.calls.count("metadata") == 2 and fake.calls.index("metadata") > fake.calls.index("judge:int8")
    sent = [r for c, r in zip(fake.calls, fake.requests) if c == "metadata"]
    assert sent[0]["image_input"] == "input" and sent[0]["mean"] == [127.5] * 3 and sent[0]["std"] == [63.75] * 3
    schema = json.loads((load_catalog().variants["metadata-tflitesupport0.4"].stage_dir.parent / "common" / "schemas"
                         / "metadata.request.json").read_text())  # fmt: skip
    for request in sent:
        jsonschema.validate({k: v for k, v in request.items() if k != "work"}, schema)
    for art in report.artifacts:
        meta = art["metadata"]
        assert meta["labels"] == 10 and meta["labels_output"] == "output" and meta["written_by"] == "fake"
        assert meta["outputs_unchanged"] == {"compared": True, "samples": 64, "runtime": "fake-litert"}
        placed = tmp_path / "out" / f"net_{art['mode']}.tflite"
        assert placed.read_bytes().endswith(b"META") and art["size_bytes"] == placed.stat().st_size
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert "fake: 10 labels on output; input normalised as (pixel - mean) / std" in markdown(report)


def test_imagenet_normalisation_by_default_on_the_pixel_scale(tmp_path):
    report, fake = run(tmp_path)
    sent = next(r for c, r in zip(fake.calls, fake.requests) if c == "metadata")
    assert sent["mean"] == pytest.approx([123.675, 116.28, 103.53]) and sent["std"] == pytest.approx(
        [58.395, 57.12, 57.375]
    )


def test_no_labels_no_metadata(tmp_path):
    report, fake = run(tmp_path, labels=None)
    assert report.exit_code == EXIT_OK and "metadata" not in fake.calls
    assert all("metadata" not in a for a in report.artifacts)


def test_labels_that_fit_no_output_are_a_usage_error(tmp_path):
    report, fake = run(tmp_path, labels=LABELS[:7])
    assert report.exit_code == EXIT_USAGE and "7 class names, but no output of the model holds 7" in report.failure
    assert "metadata" not in fake.calls and not (tmp_path / "out" / "net_fp32.tflite").exists()


def test_a_file_whose_outputs_change_fails_and_is_not_placed(tmp_path, monkeypatch):
    real = FakeRuntime.judge

    def judge(self, work, request, sets, result, run_dir=None):
        real(self, work, request, sets, result, run_dir)
        if "/metadata/" in str(work):
            got = dict(np.load(work / "outputs_samples.npz"))
            np.savez(work / "outputs_samples.npz", output=got["output"] + 1e-7)

    monkeypatch.setattr(FakeRuntime, "judge", judge)
    report, _ = run(tmp_path)
    assert report.exit_code == EXIT_VALIDATION and "computes other outputs (output) than without" in report.failure
    assert not (tmp_path / "out" / "net_fp32.tflite").exists()


def test_an_image_input_is_four_d_of_one_or_three_channels():
    assert (
        metadata.labels_output({"outputs": [{"name": "a", "shape": [1, 4]}, {"name": "b", "shape": [1, 10]}]}, 10)
        == "b"
    )
    assert metadata.labels_output({"outputs": [{"name": "a", "shape": [1, 10, 10]}]}, 10) == ""
