"""Named, typed and batched inputs for real: a two-input model (an image and
int64 token ids through an embedding) and dynamic-batch models converted on
the local runtime; the TFLite files opened again with TensorFlow's own
interpreter to read their signatures and run them at batch 1 and 4."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import convertctl, load_json, local_convert_python
from convertctl.errors import EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]
TWO = ["--input", "image:1,3,32,32", "--input", "tokens:1,8:int64:0..49"]

# Reads a .tflite's serving signature with TensorFlow and runs it at each
# batch size asked for: what an Android app's SignatureRunner would see.
SIGNATURE = """
import json, sys
import numpy as np
import tensorflow as tf
path, batches = sys.argv[1], json.loads(sys.argv[2])
interp = tf.lite.Interpreter(model_path=path)
sig = interp.get_signature_list()["serving_default"]
details = dict((d["index"], d) for d in interp.get_input_details())
runner = interp.get_signature_runner("serving_default")
inputs = runner.get_input_details()
ran = {}
for batch in batches:
    feed = {}
    for name, d in inputs.items():
        shape = [batch] + [int(x) for x in d["shape"][1:]]
        feed[name] = (np.random.randint(0, 50, shape) if d["dtype"] in (np.int64, np.int32)
                      else np.random.randn(*shape)).astype(d["dtype"])
    out = runner(**feed)
    ran[batch] = dict((k, list(v.shape)) for k, v in out.items())
print(json.dumps({"inputs": sorted(sig["inputs"]), "outputs": sorted(sig["outputs"]),
                  "dtypes": dict((n, np.dtype(d["dtype"]).name) for n, d in inputs.items()), "ran": ran}))
"""


def tflite_signature(path: Path, batches=(1,)) -> dict:
    proc = subprocess.run(
        [str(local_convert_python()), "-c", SIGNATURE, str(path), json.dumps(list(batches))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(model: Path, out: Path, *extra, modes=ALL):
    args = ["run", model, "--out", out, "--runtime", "local", "--latency-runs", "0", *extra]
    for mode in modes:
        args += ["--quant", mode]
    proc = convertctl(*args)
    return proc, load_json(out / "report.json") if (out / "report.json").exists() else None


def test_an_image_and_token_ids_convert_with_their_names(format_models, tmp_path):
    proc, report = run(format_models / "two_inputs.pt", tmp_path, *TWO)
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    assert report["model"]["inputs"] == [
        {"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32", "range": "standard normal"},
        {"name": "tokens", "shape": [1, 8], "dtype": "int64", "range": [0, 49]},
    ]
    for art in report["artifacts"]:
        names = {t["name"]: t["dtype"] for t in art["inputs"]}
        assert set(names) == {"image", "tokens"}, art["inputs"]
        # token ids stay integers in every mode; the contract takes int64 or int32 for them
        assert names["tokens"] in ("int64", "int32")
        assert names["image"] == ("int8" if art["mode"] == "int8" else "float32")
    checks = {c["mode"]: c for c in report["checks"] if c["stage"] == "tflite"}
    assert checks["fp32"]["outputs"][0]["max_abs"] <= 1e-4
    assert all(c["status"] == "passed" and c["failures"] == [] for c in checks.values())
    sig = tflite_signature(tmp_path / "two_inputs_fp32.tflite")
    assert sig["inputs"] == ["image", "tokens"] and sig["outputs"] == ["output"]
    assert sig["dtypes"]["tokens"] in ("int64", "int32") and sig["ran"] == {"1": {"output": [1, 6]}}
    assert "the model calls them" not in proc.stdout, "names given: no naming notice"


def test_unnamed_inputs_get_a_notice_with_the_models_names(format_models, tmp_path):
    proc, report = run(format_models / "torchscript.pt", tmp_path, "--input-shape", "1,3,16,16", modes=["fp32"])
    assert proc.returncode == EXIT_OK
    notice = next(n for n in report["notices"] if "the model calls them" in n)
    assert "named input; the model calls them image" in notice and "--input image:1,3,16,16" in notice


def test_token_ids_outside_the_vocabulary_are_a_clear_error(format_models, tmp_path):
    proc, _ = run(
        format_models / "two_inputs.pt",
        tmp_path,
        "--input",
        "image:1,3,32,32",
        "--input",
        "tokens:1,8:int64:0..999",
        modes=["fp32"],
    )
    assert proc.returncode == EXIT_USAGE
    text = " ".join(proc.stdout.split())
    assert "the model rejects inputs of shape image=[1, 3, 32, 32], tokens=[1, 8] int64" in text
    assert "give their range with --input NAME:SHAPE:int64:LOW..HIGH" in text


def test_a_dynamic_batch_program_with_two_inputs_runs_at_batch_1_and_4(format_models, tmp_path):
    """Names, dtypes and the free batch dimension all come from the ExportedProgram."""
    proc, report = run(format_models / "two_inputs_dynamic.pt2", tmp_path, "--dynamic-batch", modes=["fp32", "int8"])
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    assert report["model"]["dynamic_batch"] is True and report["inputs"]["batch"] == {"count": 1, "batch": 4}
    assert [i["name"] for i in report["model"]["inputs"]] == ["image", "tokens"]
    assert report["model"]["inputs"][1]["range"] == [0, 9], "integer inputs default to 0..9"
    for art in report["artifacts"]:
        for tensor in art["inputs"] + art["outputs"]:
            assert tensor["shape_signature"][0] == -1 and tensor["shape"][0] == 1, tensor
    at4 = {c["mode"]: c for c in report["checks"] if c["input_set"] == "batch"}
    assert sorted(at4) == ["fp32", "int8"] and all(c["status"] == "passed" for c in at4.values())
    assert at4["fp32"]["outputs"][0]["shape"] == [4, 6] and at4["fp32"]["outputs"][0]["max_abs"] <= 1e-4
    assert "tflite vs torch (batch 4)" in proc.stdout
    sig = tflite_signature(tmp_path / "two_inputs_dynamic_int8.tflite", batches=[1, 4])
    assert sig["inputs"] == ["image", "tokens"]
    assert sig["ran"] == {"1": {"output": [1, 6]}, "4": {"output": [4, 6]}}


def test_a_dynamic_batch_torchscript_model(format_models, tmp_path):
    proc, report = run(
        format_models / "dynamic.pt", tmp_path, "--input", "image:1,3,16,16", "--dynamic-batch", modes=["fp16"]
    )
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    at4 = next(c for c in report["checks"] if c["input_set"] == "batch")
    assert at4["status"] == "passed" and at4["outputs"][0]["shape"] == [4, 7]
    assert tflite_signature(tmp_path / "dynamic_fp16.tflite", batches=[4])["ran"] == {"4": {"output": [4, 7]}}


def test_dynamic_batch_on_a_program_with_a_fixed_batch_is_refused(format_models, tmp_path):
    proc, _ = run(format_models / "fixed_batch.pt2", tmp_path / "o", "--dynamic-batch", modes=["fp32"])
    assert proc.returncode == EXIT_USAGE
    err = " ".join(proc.stderr.split())
    assert "fixed_batch.pt2: --dynamic-batch, but input(s) image have a fixed batch size" in err
    assert "torch.export.Dim('batch')" in err
    assert not (tmp_path / "o").exists()
