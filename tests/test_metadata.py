"""Android-ready files on real stages: with --labels, each final file of an
int8 and an fp32 run carries TFLite metadata written by tflite-support 0.4.4
in its own environment (the labels on the class-score output, ImageNet's
normalisation on the 0..255 scale), LiteRT finds the file computes what it
did before, and the placed files read back, with tflite-support's own
MetadataDisplayer in a fresh process, as the labels and normalisation asked
for; convertctl verify makes the same bytes again. Local runtime; the model is tests/names_model.py's MobileNet."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from stage_envs import env_python, run_in

pytestmark = pytest.mark.acceptance
VARIANT = "metadata-tflitesupport0.4"
READ = """
import json, sys
from tensorflow_lite_support.metadata.python import metadata
shown = metadata.MetadataDisplayer.with_model_file(sys.argv[1])
meta = json.loads(shown.get_metadata_json())
print(json.dumps({"meta": meta, "labels": shown.get_associated_file_buffer("labels.txt").decode().splitlines()}))
"""


def test_labels_make_android_ready_files(tmp_path):
    run_in(load_catalog().ladder("local", "export")[0].name, "names_model.py", tmp_path)
    labels = [f"class {i}" for i in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    out = tmp_path / "out"
    proc = convertctl(
        "run", tmp_path / "mobilenet.pt", "--input", "x:1,3,32,32", "-q", "fp32", "-q", "int8", "--labels",
        tmp_path / "labels.txt", "--converter", "onnx2tf", "--runtime", "local", "--latency-runs", "0", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = load_json(out / "report.json")
    python = env_python(VARIANT)
    for art in report["artifacts"]:
        meta = art["metadata"]
        assert (
            meta["labels"] == 10 and meta["labels_output"] == "output" and meta["written_by"] == "tflite-support 0.4.4"
        )
        assert meta["normalization"]["mean"] == pytest.approx([123.675, 116.28, 103.53], rel=1e-5)
        assert meta["outputs_unchanged"]["compared"] and meta["outputs_unchanged"]["runtime"].startswith(
            "ai-edge-litert"
        )
        placed = out / f"mobilenet_{art['mode']}.tflite"
        assert placed.stat().st_size == art["size_bytes"]
        read = subprocess.run([str(python), "-c", READ, str(placed)], capture_output=True, text=True, timeout=300)
        assert read.returncode == 0, read.stderr[-2000:]
        got = json.loads(read.stdout.strip().splitlines()[-1])
        assert got["labels"] == labels
        graph = got["meta"]["subgraph_metadata"][0]
        image = graph["input_tensor_metadata"][0]
        norm = image["process_units"][0]["options"]
        assert image["content"]["content_properties_type"] == "ImageProperties"
        assert norm["std"] == pytest.approx([58.395, 57.12, 57.375], rel=1e-5)
        scores = graph["output_tensor_metadata"][0]["associated_files"][0]
        assert scores["type"] == "TENSOR_AXIS_LABELS"
    assert "metadata" in (out / "report.md").read_text()
    again = convertctl("verify", out / "report.json")  # the labels are packed in a zip: dated, not now
    assert again.returncode == 0, again.stdout[-3000:]


@requires_docker
def test_the_metadata_image_writes_the_same_on_docker(tmp_path):
    """The metadata image (its slim base lacked libusb-1.0, which tflite-support's extension links)."""
    run_in(load_catalog().ladder("local", "export")[0].name, "names_model.py", tmp_path)
    (tmp_path / "labels.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    out = tmp_path / "out"
    proc = convertctl(
        "run", tmp_path / "mobilenet.pt", "--input", "x:1,3,32,32", "-q", "fp32", "--labels", tmp_path / "labels.txt",
        "--converter", "onnx2tf", "--runtime", "docker", "--latency-runs", "0", "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (art,) = load_json(out / "report.json")["artifacts"]
    assert art["metadata"]["labels"] == 10 and art["metadata"]["outputs_unchanged"]["compared"]
    assert art["metadata"]["written_by"] == "tflite-support 0.4.4"
