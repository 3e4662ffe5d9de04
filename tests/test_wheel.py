"""convertctl works installed from a built wheel, not only from a checkout:
stage scripts, Dockerfiles, locks and the catalog travel as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import convertctl
import pytest
from conftest import ROOT, load_json
from convertctl.store.envstore import find_uv

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
        "Dockerfile.template",
        "common/smoke.py",
        "convert/convert.py",
        "quantize/quantize.py",
        "quantize/selective.py",
        "common/tflite_run.py",
        "measure/measure.py",
        "convert/requirements-tf2.15-py3.11.txt",
        "base/make-base.sh",
    ):
        assert f"convertctl/_images/{rel}" in names, rel
    assert "convertctl/report/report.schema.json" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_converts(wheel, smallcnn, tmp_path):
    venv = tmp_path / "venv"
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)], check=True)
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from convertctl.config.catalog import images_dir; print(images_dir())"],
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


def test_wheel_metadata_ships_the_license_and_says_what_is_tested(wheel):
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        license_name = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        assert z.read(license_name).decode().startswith("MIT License")
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == f">={SUPPORTED[0]}"
    classifiers = meta.get_all("Classifier")
    assert [c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Programming Language :: Python :: 3.")] == list(
        SUPPORTED
    )
    assert {u.split(",")[0] for u in meta.get_all("Project-URL")} >= {"Homepage", "Source", "Issues"}
    requires = meta.get_all("Requires-Dist")
    # Docker's client only with the docker extra; uv always (it builds the local
    # environments and is the one installer every lock is tested with).
    assert any(r.startswith("docker") and "extra == 'docker'" in r for r in requires)
    assert not any(r.startswith("docker") and "extra ==" not in r for r in requires)
    assert any(r.startswith("uv") and "extra ==" not in r for r in requires)


SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


@pytest.mark.parametrize("version", SUPPORTED)
def test_wheel_installs_and_answers_on_every_python(wheel, version, tmp_path):
    """A fresh venv per Python this machine has (pyenv's or Debian's): the
    installed command answers --help, run --help and --version with every
    option's settings intact (what a typer/click mismatch loses first)."""
    from gha import find_python

    python = find_python(version)
    if python is None:
        if version == "3.11":
            pytest.fail("no Python 3.11: the version convertctl is developed on")
        pytest.skip(f"no Python {version} on this machine")
    venv = tmp_path / "venv"
    uv = find_uv()
    subprocess.run([uv, "venv", "--quiet", "--python", str(python), str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel)], check=True)
    exe = str(venv / "bin" / "convertctl")
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}

    def answer(*args: str) -> str:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        return proc.stdout

    assert answer("--version").strip() == f"convertctl {convertctl.__version__}"
    top = answer("--help")
    assert "Show tracebacks." in top and "images" in top and "run" in top
    run_help = answer("run", "--help")
    for text in ("-q", "--quant", "-o", "--out", "TorchScript", "Output directory", "Mode, repeatable"):
        assert text in run_help, (version, text)
