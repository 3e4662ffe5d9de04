"""convertctl.convert() for real, on the local runtime: an in-memory
nn.Module and an ExportedProgram from a torch user's Python (tests/
api_in_torch.py, run in the local export venv, the one with torch), and
each model file format from the test process itself (which has no torch).
Every Result is checked against the files on disk; the in-memory run's
report.html (four modes, int8 with --int8-float-layers auto) is opened in
chromium and its Model Explorer overlay read back."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import convertctl
import pytest
from browser import chromium, open_page
from conftest import ROOT, local_export_python
from convertctl.report.model import load_report
from convertctl.store.digests import sha256_file
from convertctl.store.envstore import find_uv
from test_report_browser import assert_renders

pytestmark = pytest.mark.acceptance
ALL = ["fp32", "dynamic", "int8", "fp16"]
MODEL_EXPLORER = "0.1.34"  # the version docs/report.md was checked with


def assert_matches_disk(files: dict, report_path: Path, stem: str) -> None:
    """Per mode: the Result's file is the one on disk (hash, size) and the one the report names."""
    report = load_report(report_path)
    assert report.status == "passed"
    for mode, f in files.items():
        f = f if isinstance(f, dict) else dataclasses.asdict(f)  # from a subprocess's JSON, or a ModeFile
        path = Path(f["path"])
        assert path == report_path.parent / f"{stem}_{mode}.tflite" and f["passed"]
        assert f["sha256"] == sha256_file(path) == report.manifest["outputs"][path.name]
        assert f["size_bytes"] == path.stat().st_size > 1000
        art = next(a for a in report.artifacts if a["mode"] == mode)
        assert f["variant"] == art["variant"] and f["sha256"] == art["sha256"]


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("api-torch")
    host_site = sysconfig.get_paths()["purelib"]  # rich, typer, pillow for convertctl's host side
    proc = subprocess.run(
        [str(local_export_python()), str(ROOT / "tests" / "api_in_torch.py"), str(out), str(ROOT / "orchestrator"),
         host_site],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONNOUSERSITE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads(proc.stdout.splitlines()[-1])


def test_an_in_memory_module_converts_in_all_four_modes(torch_runs):
    out, said = torch_runs
    assert said["light"], "import convertctl loaded the API before it was used"
    module = said["module"]
    assert module["status"] == "passed" and module["exit_code"] == 0, module["failure"]
    assert list(module["files"]) == ALL
    assert_matches_disk(module["files"], out / "module" / "report.json", "net")
    # Saved by the caller's torch as an ExportedProgram, kept where the report says.
    saved = Path(module["model"]["path"])
    assert saved.parent.parent == out / "module" / ".convertctl" / "models" and saved.name == "net.pt2"
    assert saved.is_file() and sha256_file(saved) == module["model"]["sha256"]
    assert module["model"]["file"]["format"] == "exported-program"
    assert module["model"]["inputs"][0]["name"] == "image", "forward()'s own name, from the saved program"
    assert all(f["latency_ms"] for f in module["files"].values())
    assert module["files"]["int8"]["accuracy"] is not None and module["files"]["int8"]["layer_errors"] > 0
    assert 'data-mode="int8"' in module["html"]


def test_an_exported_program_converts_under_its_given_name(torch_runs):
    out, said = torch_runs
    program = said["program"]
    assert program["status"] == "passed" and list(program["files"]) == ["fp16"]
    assert_matches_disk(program["files"], out / "program" / "report.json", "prog")
    assert Path(program["model"]["path"]).name == "prog.pt2"


def test_the_runs_report_html_renders_in_chromium(torch_runs):
    out, _ = torch_runs
    page = out / "module" / "report.html"
    size = page.stat().st_size
    print(f"report.html of a four-mode run: {size} bytes")
    assert size < 1_000_000
    if chromium() is None and os.environ.get("CONVERTCTL_REQUIRE_BROWSER") != "1":
        pytest.skip("no chromium")
    visit, dom = open_page(page)
    assert_renders(visit, dom, page, {"parity", "scatter", "curve", "layers"})
    assert dom["cards"] == ALL


def test_the_overlay_is_read_by_model_explorer_onto_the_int8_files_nodes(torch_runs, tmp_path):
    """Model Explorer (ai-edge-model-explorer, in a throwaway venv) rebuilds the
    overlay with its own node-data classes, and every key is the output
    tensor of a node in the graph its TFLite adapter makes of the file."""
    out, _ = torch_runs
    overlay = out / "module" / "net_int8.layer_errors.json"
    report = load_report(out / "module" / "report.json")
    int8 = next(a for a in report.artifacts if a["mode"] == "int8")
    data = json.loads(overlay.read_text())
    assert set(data["results"]) == {layer["name"] for layer in int8["layer_errors"]["layers"]}
    uv, venv = find_uv(), tmp_path / "model-explorer"
    made = subprocess.run(
        f"{uv} venv -q --python 3.11 {venv} && {uv} pip install -q --python {venv}/bin/python "
        f"ai-edge-model-explorer=={MODEL_EXPLORER}",
        shell=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"ai-edge-model-explorer did not install: {made.stderr[-500:]}")
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "tests" / "model_explorer_check.py"),
         str(out / "module" / "net_int8.tflite"), str(overlay)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = json.loads(proc.stdout.splitlines()[-1])
    assert said["rebuilt"] and said["keys"] == len(data["results"]) > 0
    assert said["unmatched"] == [], "every value lands on a node of the graph"


ARCH = {"arch": "formatnets:build", "arch_kwargs": {"classes": 7}}
FORMATS = {
    "torchscript.pt": ({"inputs": ["image:1,3,16,16"]}, "torchscript"),
    "program.pt2": ({}, "exported-program"),
    "weights.pt": ({"inputs": [(1, 3, 16, 16)], **ARCH}, "state-dict"),
    "model.onnx": ({}, "onnx"),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_file_format_converts_through_the_api(format_models, tmp_path, name):
    kwargs, fmt = FORMATS[name]
    if "arch" in kwargs:
        kwargs = {**kwargs, "code": format_models / "code"}
    result = convertctl.convert(
        format_models / name, quant=["fp32"], out=tmp_path, runtime="local", latency_runs=0, **kwargs
    )
    assert result.ok, result.failure
    assert result.report.model["file"]["format"] == fmt
    assert_matches_disk(result.files, tmp_path / "report.json", Path(name).stem)
    assert (tmp_path / "report.html").is_file() and result.report_path == tmp_path / "report.json"
