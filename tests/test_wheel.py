"""convertctl works installed from a built wheel, not only from a checkout:
stage scripts, Dockerfiles, locks and the catalog travel as package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, load_json
from convertctl.envstore import find_uv

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [find_uv(), "build", "--wheel", "--out-dir", str(out), str(ROOT)], check=True, capture_output=True, text=True
    )
    return next(out.glob("convertctl-*.whl"))


def test_wheel_carries_the_stage_side(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (
        "catalog.toml",
        "common/contract.py",
        "export/export.py",
        "export/Dockerfile",
        "convert/convert.py",
        "quantize/quantize.py",
        "quantize/selective.py",
        "common/tflite_run.py",
        "measure/measure.py",
        "measure/Dockerfile",
        "convert/requirements-tf2.15-py3.11.txt",
        "base/make-base.sh",
    ):
        assert f"convertctl/_images/{rel}" in names, rel
    assert "convertctl/report.schema.json" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_converts(wheel, smallcnn, tmp_path):
    venv = tmp_path / "venv"
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)], check=True)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from convertctl.catalog import images_dir; print(images_dir())"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("convertctl/_images")
    proc = subprocess.run(
        [
            str(venv / "bin" / "convertctl"),
            "run",
            str(smallcnn),
            "--input-shape",
            "1,3,64,64",
            "--quant",
            "fp16",
            "--out",
            "out",
            "--runtime",
            "local",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    report = load_json(tmp_path / "out" / "report.json")
    assert report["status"] == "passed"
    assert not any(e["created"] for e in report["environments"]), "same locks, same environments"
