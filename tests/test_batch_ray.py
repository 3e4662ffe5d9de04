"""`convertctl batch --executor ray` on a real two-node Ray cluster, on
loopback only: each test runs tests/ray_cluster.py in a network and PID
namespace of its own (unshare), which starts the head and a second node on
127.0.0.1, runs the batch against them and stops both. The stage
environments are made before, outside the namespace (no package index is
reachable inside it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from batch_models import check_converted, make_zoo
from conftest import requires_ray

pytestmark = [pytest.mark.acceptance, requires_ray]
HERE = Path(__file__).resolve().parent


def in_namespace(tmp_path: Path, ray_bin: Path, batch: list, *flags: str) -> dict:
    """flags: ray_cluster.py's (--kill-second-node, --interrupt, --client)."""
    result = tmp_path / "cluster.json"
    helper = [sys.executable, str(HERE / "ray_cluster.py"), str(result), str(ray_bin), *flags]
    proc = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", *helper, "--", *map(str, batch)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert proc.returncode == 0 and result.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    said = json.loads(result.read_text())
    print(said.get("output", "")[-6000:])
    return said


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """The four models, and every environment their conversions start with, made here."""
    from convertctl.batch.plan import make_plan
    from convertctl.batch.prepare import prepare_local

    path = make_zoo(tmp_path_factory.mktemp("ray-zoo"))
    prepare_local(make_plan([str(path)], {}, tmp_path_factory.mktemp("unused")).models, print)
    return path


def test_a_two_node_cluster_converts_the_zoo_and_survives_a_lost_node(zoo, tmp_path):
    """With --shared-dir (the nodes of this cluster share one filesystem): the
    conversions read the zoo's files where they are, none is shipped."""
    out = tmp_path / "out"
    batch = [zoo, "--out", out, "--shared-dir", zoo.parent]
    said = in_namespace(tmp_path, Path(sys.executable).parent, batch, "--kill-second-node")
    assert said["killed"], "no conversion ever ran on the second node"
    assert Path(said["killed"]["model_file"]).parent == zoo.parent.resolve()  # read in place, not from the task's copy
    assert said["exit_code"] == 0, said["output"][-4000:]
    batch = check_converted(out)  # every model, every file there and validated
    assert batch["executor"] == "ray"
    rows = {m["name"]: m for m in batch["models"]}
    lost = rows[said["killed"]["model"]]
    # The model that was running on the killed node ran again elsewhere, and was made once.
    assert len(lost["attempts"]) >= 2 and lost["attempts"][0]["ended"].startswith("lost")
    assert lost["node"] != lost["attempts"][0]["node"]
    for row in rows.values():
        assert [a["ended"] for a in row["attempts"]].count("made it") == 1, row["attempts"]
        assert not (out / row["name"] / ".convertctl" / "previous").exists()  # nothing placed twice
    assert len({a["node"] for row in rows.values() for a in row["attempts"]}) == 2  # spread over both nodes


def test_ctrl_c_through_ray_client_keeps_the_finished_models_and_brings_back_the_stopped_ones(zoo, tmp_path):
    """Joined through Ray Client (ray://), Ctrl-C once a model is placed and
    another converts on a node: exit 130; the finished ones passed and
    placed; a running one stopped by SIGINT on its node (not killed), its
    run directory sent back and kept, saying 130; no conversion left
    running anywhere in the cluster."""
    out = tmp_path / "out"
    said = in_namespace(tmp_path, Path(sys.executable).parent, [zoo, "--out", out], "--interrupt", "--client")
    assert "2 node(s), 2 CPU(s), joined at ray://127.0.0.1:" in said["output"], said["output"][-2000:]
    assert said["interrupted"], "the batch ended before it could be interrupted"
    assert said["exit_code"] == 130, said["output"][-4000:]
    report = json.loads((out / "batch-report.json").read_text())
    assert report["status"] == "interrupted" and report["executor"] == "ray"
    states = {m["name"]: m["state"] for m in report["models"]}
    assert set(said["finished"]) <= {n for n, st in states.items() if st == "passed"}, states
    assert "interrupted" in states.values(), states
    for row in report["models"]:
        name, state = row["name"], row["state"]
        assert bool(list((out / name).glob("*.tflite"))) == (state == "passed"), (name, state)
        if state == "interrupted":
            assert "killed" not in row["failure"], row  # it stopped when told, within seconds
            kept = list((out / name).glob(".convertctl/runs/*/report.json"))
            assert kept and json.loads(kept[0].read_text())["exit_code"] == 130, name
            assert row["attempts"][-1]["ended"] == "stopped by Ctrl-C"
    assert not said["left"], said["left"]


def test_a_cluster_without_convertctl_on_its_nodes_is_exit_5_before_anything(tmp_path):
    """Nodes started from a Python that has Ray but not convertctl: the batch
    says which node and what to install, in one line, and converts nothing."""
    import ray

    venv = tmp_path / "ray-only"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"ray=={ray.__version__}"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(venv)},
    )
    model = tmp_path / "m.pt"
    from fakes import torchscript_file

    torchscript_file(model)
    said = in_namespace(tmp_path, venv / "bin", [model, "--input-shape", "1,3,8,8", "--out", tmp_path / "out"])
    lines = [ln for ln in said["output"].splitlines() if ln.startswith("error:")]
    assert said["exit_code"] == 5, said["output"][-3000:]
    assert len(lines) == 1 and "convertctl is not installed" in lines[0] and "convertctl[ray]" in lines[0]
    assert not (tmp_path / "out").exists()
