"""The composite action (.github/actions/convert) run here step by step, as a
runner would: its shell steps for real (install into a fresh Python, choose
the runtime, convert, verdict) with fake GITHUB_OUTPUT / GITHUB_STEP_SUMMARY
files; its `uses:` steps (setup-python, cache, upload-artifact) stood in for
by tests/gha.py, which checks what GitHub would be handed: paths that exist,
keys that match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, docker_available, load_json
from gha import Actions, read_outputs

pytestmark = pytest.mark.acceptance

ACTION = ROOT / ".github" / "actions" / "convert"


@pytest.fixture(scope="module")
def pythons(tmp_path_factory) -> Path:
    """Where setup-python's stand-in keeps its venvs, one per version, for this test session."""
    return tmp_path_factory.getbasetemp() / "gha-pythons"


def run_action(pythons: Path, workspace: Path, **inputs):
    actions = Actions(ROOT, pythons)
    runner = actions.runner_for(workspace)
    run = runner.run_action(ACTION, {k.replace("_", "-"): v for k, v in inputs.items()})
    print(run.log[-8000:])
    return run, actions.calls, runner.summary.read_text()


def test_passing_conversion_sets_outputs_summary_artifacts_and_cache(pythons, smallcnn, tmp_path):
    out = tmp_path / "out"
    run, calls, summary = run_action(
        pythons, tmp_path, model=str(smallcnn), quant="fp16", input_shape="1,3,64,64", runtime="local", out=str(out)
    )
    assert not run.failed
    assert [s.name for s in run.steps if s.kind == "skipped"] == []
    (setup,) = calls["setup-python"]
    assert "3.11" in setup["python-version"].split()  # the local runtime's stage environments need it
    o = run.outputs  # read back from the GITHUB_OUTPUT files the steps wrote
    assert (o["status"], o["exit-code"], o["runtime"], o["run-dir"]) == ("passed", "0", "local", "")
    files = o["files"].splitlines()
    assert [Path(f).name for f in files] == ["smallcnn_fp16.tflite"]
    assert Path(files[0]).parent == out
    assert json.loads(o["sizes"]) == {"fp16": Path(files[0]).stat().st_size}
    report = load_json(o["report"])
    assert report["status"] == "passed" and Path(o["report"]).parent == out
    assert Path(o["report-md"]).read_text().strip() in summary  # the report is the job summary

    (upload,) = calls["upload"]
    assert upload["name"] == "convertctl-smallcnn" and upload["include-hidden-files"] == "true"
    assert set(upload["path"].splitlines()) == {*files, o["report"], o["report-md"], o["report-html"]}
    assert Path(o["report-html"]).parent == out and "<svg" in Path(o["report-html"]).read_text()
    (restore,), (save,) = calls["restore"], calls["save"]
    assert save["key"].startswith(restore["key"])  # this lock set's entry, named by what it holds
    # Restored: every environment the local ladders may use; saved: those of them that are ready.
    from convertctl.config.catalog import load_catalog
    from convertctl.store.envstore import MARKER, EnvStore

    catalog, store = load_catalog(), EnvStore()
    ladder = [v for stage in ("export", "convert", "measure", "metadata") for v in catalog.ladder("local", stage)]
    ladder += [catalog.get(q) for v in ladder for q in v.quantize]
    restored, saved = set(restore["path"].splitlines()), set(save["path"].splitlines())
    assert restored <= {str(store.path_for(v)) for v in ladder}
    # Those setup-python gave the Python of (3.11) all; another only where the runner has its Python.
    assert {str(store.path_for(v)) for v in ladder if v.python == "3.11"} <= restored
    assert saved == {p for p in restored if (Path(p) / MARKER).is_file()}
    assert {e["location"] for e in report["environments"]} <= saved


def test_failed_validation_fails_the_step_and_uploads_the_run_dir(pythons, smallcnn, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model = model_dir / "strict.pt"
    shutil.copyfile(smallcnn, model)
    # A tolerance no fp16 file can meet: float16 weights move outputs by ~1e-4.
    (model_dir / "convertctl.toml").write_text(
        'input_shape = "1,3,64,64"\nquant = "fp16"\n[tolerance.fp16]\natol = 1e-9\nrtol = 0.0\n'
    )
    out = tmp_path / "out"
    run, calls, summary = run_action(pythons, tmp_path, model=str(model), runtime="local", out=str(out))
    assert run.failed
    assert run.step("Convert and validate").ok and not run.step("Verdict").ok  # the verdict step fails the action
    o = run.outputs
    assert (o["status"], o["exit-code"]) == ("failed", "4")
    assert "::error title=convertctl failed (exit code 4)::" in run.step("Verdict").log
    assert not list(out.glob("*.tflite")), "a failed run leaves --out alone"
    run_dir = Path(o["run-dir"])
    assert run_dir.is_dir() and Path(o["report"]) == run_dir / "report.json"
    assert load_json(o["report"])["exit_code"] == 4
    assert [Path(f).suffix for f in o["files"].splitlines()] == [".tflite"]  # the failing file, kept to look at
    assert Path(o["report-md"]).read_text().strip() in summary
    (upload,) = calls["upload"]
    assert upload["path"].splitlines() == [str(run_dir)]
    assert calls["save"], "environments are saved even when the conversion failed"


def test_usage_error_without_a_report_still_writes_the_summary(pythons, tmp_path):
    run, calls, summary = run_action(
        pythons, tmp_path, model=str(tmp_path / "missing.pt"), input_shape="1,3,8,8", runtime="local", cache="false"
    )
    assert run.failed and run.outputs["exit-code"] == "2" and run.outputs["report"] == ""
    assert "failed (exit code 2)" in summary and "missing.pt" in summary
    assert "upload" not in calls and "restore" not in calls  # nothing to upload, caching off


def test_auto_runtime_is_what_convertctl_would_pick(pythons, tmp_path):
    """The install and prepare steps alone, with runtime auto and a model in a folder."""
    actions = Actions(ROOT, pythons)
    runner = actions.runner_for(tmp_path)
    actions.setup_python({"python-version": "3.11"})
    env = {**os.environ, "PATH": os.pathsep.join([*runner.path_prefix, os.environ["PATH"]])}
    subprocess.run([str(ACTION / "run.sh"), "install"], env=env, check=True)
    outputs = tmp_path / "output"
    step_env = {"GITHUB_OUTPUT": str(outputs), "INPUT_RUNTIME": "auto", "INPUT_MODEL": "zoo/resnet.pt"}
    # This checkout as the workspace: the action is a local one (uses: ./.github/actions/convert).
    step_env.update(GITHUB_REPOSITORY="Someone/convertctl", GITHUB_WORKSPACE=str(ROOT))
    proc = subprocess.run([str(ACTION / "run.sh"), "prepare"], env={**env, **step_env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    o = read_outputs(outputs)
    assert o["runtime"] == ("docker" if docker_available() else "local")
    assert o["cache"] == ("true" if o["runtime"] == "local" else "false")
    assert o["artifact-name"] == "convertctl-resnet"
    assert o["registry"] == "ghcr.io/someone"  # where images.yml publishes, lower-cased as registries want
    # (every other layout: tests/test_action_unit.py)
