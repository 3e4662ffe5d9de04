"""The stage cache, determinism, verify and the output folder with real
conversions: the local runtime (torch 2.13, onnx-tf + TF 2.15) on the small
CNN, and Docker with the tutorial's pins (torch 1.7, TF 2.8).

The tests of one runtime share a sequence of runs (module fixtures) and a
cache folder of their own: a clean run into an empty cache, a clean run with
--no-cache, then reruns that should take what they can from the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.errors import EXIT_OK, EXIT_VALIDATION
from convertctl.store.digests import sha256_file

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]
FIRST = ["fp32", "dynamic", "fp16"]  # the first run's modes: int8 is added later
SHAPE = "1,3,64,64"


class Runs:
    """`convertctl run` of one model on one runtime, with a cache folder of its own."""

    def __init__(self, model: Path, runtime: str, root: Path):
        self.model, self.runtime, self.root = model, runtime, root
        self.env = {"CONVERTCTL_CACHE_DIR": str(root / "cache"), "CONVERTCTL_NO_CACHE": ""}

    def run(self, out: Path, modes, *extra, env: dict | None = None):
        args = ["run", self.model, "--input-shape", SHAPE, "--out", out, "--runtime", self.runtime, *extra]
        if self.runtime == "local":  # the step and environment names below are the onnx-tf rung's
            args += ["--converter", "onnx-tf"]
        for mode in modes:
            args += ["--quant", mode]
        proc = convertctl(*args, env={**self.env, **(env or {})})
        assert proc.returncode == EXIT_OK, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc, load_json(out / "report.json")

    def entries(self) -> list:
        stages = self.root / "cache" / "stages"
        return [json.loads((p / "entry.json").read_text()) | {"dir": p} for p in stages.iterdir()]


def hashes(report: dict) -> dict:
    return {a["mode"]: a["sha256"] for a in report["artifacts"]}


def ran(report: dict) -> list:
    """The steps that really ran (were not taken from the cache); latency is
    measured on every run (test_cache_unit: never cached), so not counted."""
    return [st["work"] for st in report["stages"] if not st["cached"] and st["stage"] != "measure"]


# -- local -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local(smallcnn, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-local")
    runs = Runs(smallcnn, "local", root)
    first = runs.run(root / "a", FIRST)  # clean: the cache is empty
    clean = runs.run(root / "b", ALL, "--no-cache")
    return runs, first, clean


def test_manifest_fields_are_present(local):
    runs, (_, report), _ = local
    m = report["manifest"]
    assert m["tool"]["version"] == report["convertctl_version"] and m["runtime"] == "local"
    assert m["options"]["quant"] == FIRST and m["options"]["input_shape"] == [[1, 3, 64, 64]]
    assert m["inputs"]["model"]["sha256"] == sha256_file(runs.model)
    # TF 2.15's "dynamic" file of a model this small keeps float weights, so LiteRT Quantizer makes that one.
    made_by = {"export-torch2.13", "convert-tf2.15", "quantize-tf2.15", "quantize-litertq0.11", "measure-litert2.3"}
    assert set(m["environments"]) == made_by
    for env in m["environments"].values():
        assert len(env["venv_key"]) == 16 and Path(env["path"]).is_dir()
        assert any(line.startswith(("torch==", "tensorflow", "ai-edge-litert")) for line in env["pip_freeze"]), env[
            "pip_freeze"
        ][:5]
    assert all(len(s["key"]) == 64 and s["outputs"] for s in m["stages"])
    works = [s["work"] for s in m["stages"]]
    quantize = [s for s in m["stages"] if s["stage"] == "quantize"]
    assert list(dict.fromkeys(s["request"]["mode"] for s in quantize)) == FIRST
    for step in quantize:  # every file made is run in LiteRT by its own recorded step
        assert step["work"] + "/litert" in works, step["work"]
    assert not any("calibration" in s["request"] for s in quantize), "only int8 reads it"
    for art in report["artifacts"]:
        assert m["outputs"][Path(art["path"]).name] == art["sha256"] == sha256_file(art["path"])


def test_two_clean_runs_give_identical_files(local):
    _, (_, first), (_, clean) = local
    assert not any(st["cached"] for st in first["stages"] + clean["stages"])
    assert hashes(first) == {m: hashes(clean)[m] for m in FIRST}
    steps = {s["work"]: s["outputs"] for s in clean["manifest"]["stages"]}
    assert {s["work"]: s["outputs"] for s in first["manifest"]["stages"]} == {
        s["work"]: steps[s["work"]] for s in first["manifest"]["stages"]
    }, "the ONNX file and the SavedModel too"


def test_a_rerun_takes_every_stage_from_the_cache(local):
    runs, (_, first), _ = local
    proc, again = runs.run(runs.root / "c", FIRST, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert ran(again) == []
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "convertctl.run.pipeline" in imported and "numpy" not in imported, (
        "inputs and comparisons come from the cache: no array is made or read"
    )
    assert hashes(again) == hashes(first)
    steps = [st for st in first["stages"] if st["stage"] != "measure"]
    assert [st["saved_seconds"] for st in again["stages"] if st["stage"] != "measure"] == [
        st["seconds"] for st in steps
    ]
    steps_made = len(first["manifest"]["stages"])  # each file made, and its run in LiteRT
    assert "cached, saved" in proc.stdout and f"{steps_made} of {steps_made} steps reused" in proc.stdout
    assert [c["outputs"] for c in again["checks"]] == [c["outputs"] for c in first["checks"]]


def test_an_added_mode_runs_only_its_quantize_step(local, tmp_path):
    runs, _, (_, clean) = local
    runs.run(tmp_path, ["fp16"])
    _, added = runs.run(tmp_path, ["fp16", "int8"])
    assert ran(added) == ["quantize/convert-tf2.15/int8"]
    assert hashes(added) == {m: hashes(clean)[m] for m in ("fp16", "int8")}


def test_a_corrupted_entry_is_rebuilt(local, tmp_path):
    runs, (_, first), _ = local
    entry = next(e for e in runs.entries() if e["work"] == "quantize/convert-tf2.15/fp16")
    (entry["dir"] / "files" / "model.tflite").write_bytes(b"TFL3 corrupted on disk")
    _, report = runs.run(tmp_path, ["fp16"])
    assert ran(report) == ["quantize/convert-tf2.15/fp16"]
    assert hashes(report) == {"fp16": hashes(first)["fp16"]}
    rebuilt = next(e for e in runs.entries() if e["work"] == "quantize/convert-tf2.15/fp16")
    assert sha256_file(rebuilt["dir"] / "files" / "model.tflite") == hashes(first)["fp16"]


def test_a_fp16_run_moves_the_earlier_modes_aside(local):
    """The issue's case: --quant fp16 into a folder holding an earlier run's
    fp32, dynamic and int8 files."""
    runs, _, (_, clean) = local
    out = runs.root / "stale"
    shutil.copytree(runs.root / "b", out)  # the --no-cache run's folder: all four modes
    proc, report = runs.run(out, ["fp16"])
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == ["report.html", "report.json", "report.md", "smallcnn_fp16.tflite"]
    moved = sorted(s["name"] for s in report["stale"])
    # int8's layer ranking goes with its file
    assert moved == [
        "smallcnn_dynamic.tflite",
        "smallcnn_fp32.tflite",
        "smallcnn_int8.layer_errors.json",
        "smallcnn_int8.tflite",
    ]
    aside = Path(report["stale"][0]["moved_to"]).parent
    assert load_json(aside / "report.json")["modes"] == ALL, "the earlier report went with its files"
    assert sha256_file(aside / "smallcnn_int8.tflite") == hashes(clean)["int8"]
    assert "moved aside" in proc.stdout and "moved aside" in (out / "report.md").read_text()


def test_keep_intermediates_puts_onnx_and_savedmodel_in_out(local, tmp_path):
    runs, (_, first), _ = local
    _, report = runs.run(tmp_path, ["fp32"], "--keep-intermediates")
    assert ran(report) == []
    onnx = next(s for s in first["manifest"]["stages"] if s["stage"] == "export")["outputs"]["model.onnx"]
    assert sha256_file(tmp_path / "smallcnn.onnx") == onnx
    assert (tmp_path / "smallcnn_saved_model" / "saved_model.pb").is_file()
    assert set(report["manifest"]["outputs"]) == {"smallcnn_fp32.tflite", "smallcnn.onnx", "smallcnn_saved_model"}


def test_verify_passes_then_names_a_file_changed_by_hand(local):
    runs, _, _ = local
    out = runs.root / "b"  # the --no-cache run's folder
    proc = convertctl("verify", out / "report.json", env=runs.env)
    assert proc.returncode == EXIT_OK, proc.stdout[-3000:]
    assert "VERIFIED: 4 file(s)" in proc.stdout
    (out / "smallcnn_int8.tflite").write_bytes((out / "smallcnn_int8.tflite").read_bytes() + b"\0")
    proc = convertctl("verify", out / "report.json", env=runs.env)
    assert proc.returncode == EXIT_VALIDATION
    assert "NOT VERIFIED: smallcnn_int8.tflite" in proc.stdout and "changed since the run" in proc.stdout


SHUFFLE = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow as tf
import tflite_canon
from tensorflow.lite.tools import flatbuffer_utils as fu

blob = open(sys.argv[2], "rb").read()
model = fu.convert_bytearray_to_object(bytearray(blob))
sg = model.subgraphs[0]
# Another valid order, as a converter might write it: the ops that read only
# constants (fp16 DEQUANTIZE) first and reversed; tensors and buffers reversed.
const = lambda t: t < 0 or (sg.tensors[t].buffer and model.buffers[sg.tensors[t].buffer].data is not None)
free = [op for op in sg.operators if all(const(int(t)) for t in op.inputs)]
assert len(free) >= 5, len(free)
sg.operators = free[::-1] + [op for op in sg.operators if not any(op is f for f in free)]
n = len(sg.tensors)
new = lambda t: n - 1 - int(t) if int(t) >= 0 else int(t)
sg.tensors = sg.tensors[::-1]
sg.inputs, sg.outputs = [new(t) for t in sg.inputs], [new(t) for t in sg.outputs]
for op in sg.operators:
    op.inputs, op.outputs = [new(t) for t in op.inputs], [new(t) for t in op.outputs]
for sig in model.signatureDefs:
    for m in list(sig.inputs) + list(sig.outputs):
        m.tensorIndex = new(m.tensorIndex)
b = len(model.buffers)
model.buffers = model.buffers[:1] + model.buffers[1:][::-1]
for t in sg.tensors:
    t.buffer = b - t.buffer if t.buffer else 0
for md in model.metadata:
    md.buffer = b - md.buffer
shuffled = bytes(fu.convert_object_to_bytearray(model))
assert shuffled != blob
x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
def run(content):
    it = tf.lite.Interpreter(model_content=content)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])
assert np.array_equal(run(shuffled), run(blob))
assert tflite_canon.canonical(shuffled) == blob, "one graph, one byte layout"
print("CANONICAL OK", len(free))
"""


def test_the_canonical_layout_undoes_another_valid_order(local, tmp_path):
    """The quantize stage writes canonical files: the same graph written in
    another valid order (as TF 2.8 does for fp16) comes back to the same bytes."""
    import subprocess

    from convertctl.config.catalog import images_dir, load_catalog
    from convertctl.store.envstore import EnvStore

    runs, _, _ = local
    python = EnvStore().ensure(load_catalog().get("quantize-tf2.15")).python
    script = tmp_path / "shuffle.py"
    script.write_text(SHUFFLE)
    fp16 = runs.root / "b" / "smallcnn_fp16.tflite"
    proc = subprocess.run(
        [str(python), str(script), str(images_dir() / "common"), str(fp16)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "CANONICAL OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]


def test_cache_list_and_prune(local, tmp_path):
    runs, (_, first), _ = local
    entries = runs.entries()
    # Every step of the first run (its files' runs in LiteRT are measure steps, as are the
    # latency measurements), the files of its modes among them.
    works = {e["work"] for e in entries if e["stage"] != "measure"}
    assert {s["work"] for s in first["manifest"]["stages"] if s["stage"] != "measure"} <= works
    assert set(FIRST) <= {w.split("/")[2].split("-")[0] for w in works if w.startswith("quantize/")}
    listed = convertctl("cache", "list", env=runs.env)
    assert listed.returncode == EXIT_OK and f"stage cache: {len(entries)} entries" in listed.stdout
    copy = tmp_path / "cache"
    shutil.copytree(runs.root / "cache", copy)
    env = {**runs.env, "CONVERTCTL_CACHE_DIR": str(copy)}
    assert "removed 0 entries and 0 host results" in convertctl("cache", "prune", "--older-than", "30d", env=env).stdout
    memos = len(list((copy / "memo").glob("*/*.json")))
    assert memos >= 2, "the inputs made and the comparisons made"
    said = convertctl("cache", "prune", "--all", env=env).stdout
    assert f"removed {len(entries)} entries and {memos} host results" in said
    assert not list((copy / "memo").glob("*/*")) and not list((copy / "stages").iterdir())


# -- Docker, the tutorial's pins ------------------------------------------------------------
@pytest.fixture(scope="module")
def docker_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models-docker") / "smallcnn.pt"
    convertctl("example", path, "--name", "smallcnn", "--input-shape", SHAPE, "--runtime", "docker", check=True)
    return path


@requires_docker
@pytest.mark.docker
def test_docker_two_clean_runs_give_identical_files_and_a_rerun_is_cached(docker_model, tmp_path):
    runs = Runs(docker_model, "docker", tmp_path)
    _, first = runs.run(tmp_path / "a", ALL)
    _, clean = runs.run(tmp_path / "b", ALL, "--no-cache")
    # LiteRT Quantizer makes dynamic where TF 2.8's "dynamic" file keeps float weights.
    dynamic = next(a for a in first["artifacts"] if a["mode"] == "dynamic")
    second = {"quantize-litertq0.11"} if dynamic["quantizer"].startswith("litert-quantizer") else set()
    assert {st["variant"] for st in first["stages"]} == {
        "export-torch1.7",
        "convert-tf2.8",
        "quantize-tf2.8",
        "measure-litert2.3",
    } | second
    assert hashes(first) == hashes(clean) and len(hashes(first)) == 4
    env = first["manifest"]["environments"]["quantize-tf2.8"]
    assert env["image_id"].startswith("sha256:") and "tensorflow-cpu==2.8.4" in env["pip_freeze"]
    _, again = runs.run(tmp_path / "c", ALL)
    assert ran(again) == [] and hashes(again) == hashes(first)
