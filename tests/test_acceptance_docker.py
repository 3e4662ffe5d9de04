"""The Docker runtime for real: a real dockerd, the pinned images (torch 1.7
/ TF 2.8 and TF 2.15), real conversions, the hardening verified from inside
a container."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_ENVIRONMENT, EXIT_OK

pytestmark = [pytest.mark.acceptance, pytest.mark.docker, requires_docker]
ALL = ["fp32", "dynamic", "int8", "fp16"]


@pytest.fixture(scope="module")
def model17(tmp_path_factory) -> Path:
    """Built in the torch 1.7 export image, so both runtimes can load it."""
    path = tmp_path_factory.mktemp("docker-models") / "small17.pt"
    convertctl("example", path, "--name", "smallcnn", "--input-shape", "1,3,64,64", "--runtime", "docker", check=True)
    return path


def convert_all(model, out, *extra):
    args = ["run", model, "--input-shape", "1,3,64,64", "--out", out, *extra]
    for mode in ALL:
        args += ["--quant", mode]
    proc = convertctl(*args)
    return proc, load_json(out / "report.json") if (out / "report.json").exists() else None


def assert_validated(report):
    assert report["status"] == "passed", report["failure"]
    checks = {(c["stage"], c["mode"]): c for c in report["checks"]}
    assert checks[("tflite", "fp32")]["outputs"][0]["max_abs"] <= 1e-4
    assert checks[("savedmodel", None)]["outputs"][0]["max_abs"] <= 1e-4
    assert checks[("tflite", "fp16")]["status"] == "passed"
    for mode in ALL:
        assert checks[("tflite", mode)]["outputs"][0]["top1"] >= 0.75
    int8 = next(a for a in report["artifacts"] if a["mode"] == "int8")
    assert [t["dtype"] for t in int8["inputs"] + int8["outputs"]] == ["int8", "int8"]
    assert int8["ops"]["flex_ops"] == [] and int8["ops"]["float_ops"] == 0


@pytest.fixture(scope="module")
def docker_default(model17, tmp_path_factory):
    out = tmp_path_factory.mktemp("docker-out")
    return convert_all(model17, out, "--runtime", "docker")


def test_docker_runtime_all_modes(docker_default):
    proc, report = docker_default
    assert proc.returncode == EXIT_OK
    assert report["runtime"] == "docker"
    versions = {s["stage"]: s["versions"] for s in report["stages"]}
    assert versions["export"]["torch"].startswith("1.7.1")
    assert versions["convert"]["tensorflow"] == "2.8.4" and versions["convert"]["onnx_tf"] == "1.10.0"
    assert_validated(report)


def test_same_model_with_local_runtime(model17, docker_default, tmp_path):
    proc, report = convert_all(model17, tmp_path, "--runtime", "local")
    assert proc.returncode == EXIT_OK
    assert report["runtime"] == "local"
    assert_validated(report)
    # Both runtimes agree with PyTorch, and so with each other.
    ref_docker = {c["mode"]: c for c in docker_default[1]["checks"] if c["stage"] == "tflite"}
    for c in (c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] in ("fp32", "fp16")):
        assert abs(c["outputs"][0]["cosine"] - ref_docker[c["mode"]]["outputs"][0]["cosine"]) < 1e-3


def test_swapping_the_convert_image_to_tf_2_15(model17, tmp_path):
    variant = load_catalog().get("convert-tf2.15")
    proc, report = convert_all(model17, tmp_path, "--runtime", "docker", "--convert-image", variant.tag)
    assert proc.returncode == EXIT_OK
    versions = {s["stage"]: s["versions"] for s in report["stages"]}
    assert versions["convert"]["tensorflow"] == "2.15.1"
    assert versions["quantize"]["tensorflow"] == "2.15.1", "the SavedModel is quantized by the TF that wrote it"
    assert versions["export"]["torch"].startswith("1.7.1")
    assert_validated(report)


def test_convert_image_from_the_model_config(model17, tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(model17.read_bytes())
    (tmp_path / "convertctl.toml").write_text('convert_image = "convert-tf2.15"\ninput_shape = ["1,3,64,64"]\n')
    proc = convertctl("run", model, "--quant", "fp32", "--out", tmp_path / "o", "--runtime", "docker")
    assert proc.returncode == EXIT_OK
    stages = load_json(tmp_path / "o" / "report.json")["stages"]
    # The fp32 file is made by TF 2.15's converter, then run in LiteRT (the judge) and timed there.
    assert [(s["variant"], s["script"].rsplit("/", 1)[-1]) for s in stages] == [
        ("export-torch1.7", "export.py"),
        ("convert-tf2.15", "convert.py"),
        ("quantize-tf2.15", "quantize.py"),
        ("measure-litert2.3", "judge.py"),
        ("measure-litert2.3", "measure.py"),
    ]


def test_outputs_belong_to_the_invoking_user(docker_default):
    report = docker_default[1]
    for art in report["artifacts"]:
        assert Path(art["path"]).stat().st_uid == os.getuid()


def test_no_daemon_is_a_clear_error(model17, tmp_path):
    proc = convertctl(
        "run",
        model17,
        "--input-shape",
        "1,3,64,64",
        "--runtime",
        "docker",
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert proc.returncode == EXIT_ENVIRONMENT
    err = " ".join(proc.stderr.split())
    assert "--runtime docker: no Docker daemon answers (nothing at unix:///nonexistent/docker.sock" in err
    assert "dockerd" in err


def test_auto_falls_back_to_local_with_a_notice(smallcnn, tmp_path):
    proc = convertctl(
        "run",
        smallcnn,
        "--input-shape",
        "1,3,64,64",
        "--quant",
        "fp32",
        "--out",
        tmp_path,
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert proc.returncode == EXIT_OK
    warning = "run in local virtualenvs WITHOUT the container sandbox"
    assert " ".join(proc.stderr.split()).count(warning) == 1, "said once, clearly"
    report = load_json(tmp_path / "report.json")
    assert report["runtime"] == "local" and any(warning in n for n in report["notices"])


def test_images_list_shows_current_images(docker_default):
    proc = convertctl("images", "list")
    assert proc.returncode == EXIT_OK
    used = [e["variant"] for e in docker_default[1]["environments"]]
    assert {"export-torch1.7", "convert-tf2.8", "quantize-tf2.8"} <= set(used)
    for name in used:
        line = next(ln for ln in proc.stdout.splitlines() if name in ln)
        assert "current" in line and "MB" in line
