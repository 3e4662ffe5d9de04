"""--reference-run DIR read as data: only a convertctl run directory, its
report's rung name never a path, no link inside followed, inputs laid out as
the made file has them, and one clear usage error for each way it is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from convertctl.errors import EXIT_USAGE, UsageError
from convertctl.inputs import referencerun
from convertctl.store.rundir import MARKER

SHAPES = {"serving_default_x:0": (1, 8, 8, 3)}  # the float file's input, channels last


def earlier_run(folder: Path, rung: str = "export-torch2.13", perm=(0, 2, 3, 1), source: str = "torch") -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 3, 8, 8)).astype(np.float32)
    y = rng.standard_normal((4, 1, 10)).astype(np.float32)
    (folder / "inputs").mkdir(parents=True)
    (folder / "export" / rung).mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("{}")
    np.savez(folder / "inputs" / "samples.npz", x=x)
    np.savez(folder / "export" / rung / "reference_samples.npz", logits=y)
    report = {
        "model": {"path": "/m/net.pt", "sha256": "ab" * 32, "reference": source,
                  "inputs": [{"name": "x"}], "outputs": [{"name": "logits"}]},
        "ladder": [{"stage": "export", "variant": rung, "status": "used"}],
        "artifacts": [{"mode": "fp32", "path": "/o/net_fp32.tflite",
                       "layout": {"inputs": {"x": list(perm)}, "outputs": {}}}],
        "manifest": {"outputs": {"net_fp32.tflite": "cd" * 32}},
    }  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))
    return {"x": x, "y": y}


def test_the_runs_inputs_in_the_made_files_layout_and_pytorchs_outputs(tmp_path):
    arrays = earlier_run(tmp_path / "run")
    ref = referencerun.read(tmp_path / "run", SHAPES, "cd" * 32)
    assert ref.made_it and ref.source == "torch" and ref.model == "/m/net.pt"
    ((name, x),) = ref.samples.items()
    assert name == "serving_default_x:0" and x.shape == (4, 1, 8, 8, 3)
    np.testing.assert_array_equal(x, arrays["x"].transpose(0, 1, 3, 4, 2))
    np.testing.assert_array_equal(ref.outputs["logits"], arrays["y"])
    assert "PyTorch's outputs of /m/net.pt, on the inputs of run" in ref.describe()


def test_a_file_that_run_did_not_make_is_said(tmp_path):
    earlier_run(tmp_path / "run", perm=(0, 1, 2, 3))
    ref = referencerun.read(tmp_path / "run", {"x": (1, 3, 8, 8)}, "ef" * 32)
    assert not ref.made_it and ref.samples["x"].shape == (4, 1, 3, 8, 8)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda f: (f / MARKER).unlink(), "not a convertctl run directory"),
        (lambda f: (f / "report.json").unlink(), "no report.json"),
        (lambda f: (f / "report.json").write_text("[1, 2"), "cannot read its report.json"),
        (lambda f: (f / "report.json").write_text("[]"), "not a convertctl report"),
        (lambda f: _edit(f, lambda r: r["model"].update(reference="litert")), "computed by 'litert'"),
        (lambda f: _edit(f, lambda r: r["ladder"][0].update(variant="../../etc")), "names no export step"),
        (lambda f: _edit(f, lambda r: r["ladder"][0].update(variant=["x"])), "names no export step"),
        (lambda f: (f / "inputs" / "samples.npz").unlink(), "inputs/samples.npz is missing"),
        (
            lambda f: _link(f / "inputs" / "samples.npz", "/etc/passwd"),
            "inputs/samples.npz is missing or not a regular",
        ),
        (lambda f: _link(f / "report.json", "/etc/hostname"), "cannot read its report.json"),
        (
            lambda f: np.savez(f / "inputs" / "samples.npz", x=np.zeros((2, 1, 3, 8, 8), np.float32)),
            "different numbers",
        ),
        (lambda f: np.savez(f / "inputs" / "samples.npz", x=np.zeros((4, 1, 3, 5, 5), np.float32)), "has shape"),
    ],
)
def test_each_wrong_folder_is_one_usage_error_naming_it(tmp_path, damage, words):
    folder = tmp_path / "run"
    earlier_run(folder)
    damage(folder)
    with pytest.raises(UsageError) as raised:
        referencerun.read(folder, SHAPES, "cd" * 32)
    assert raised.value.exit_code == EXIT_USAGE and words in raised.value.message
    assert str(folder) in raised.value.message


def test_a_file_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        referencerun.read(tmp_path / "f", SHAPES, "")


def _edit(folder: Path, change) -> None:
    report = json.loads((folder / "report.json").read_text())
    change(report)
    (folder / "report.json").write_text(json.dumps(report))


def _link(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)
