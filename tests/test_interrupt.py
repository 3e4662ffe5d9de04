"""Ctrl-C in the middle of a stage: the stage process or container is gone
afterwards, the exit code is 130, --out is untouched, the run dir is kept."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import requires_docker

pytestmark = pytest.mark.acceptance


def start(model, out, runtime):
    cmd = [
        sys.executable,
        "-m",
        "convertctl",
        "run",
        str(model),
        "--input-shape",
        "1,3,64,64",
        "--quant",
        "fp32",
        "--out",
        str(out),
        "--runtime",
        runtime,
    ]
    # Ctrl-C as at a terminal: a shell starts background jobs with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler (CI may run the tests so).
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(predicate, seconds=600):  # a loaded machine starts stages slowly
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def stage_processes(out):
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in ps.splitlines() if "/convert.py" in ln and str(out) in ln]  # any family's convert stage


def interrupt_during_convert(model, tmp_path, runtime, running):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    proc = start(model, out, runtime)
    try:
        wait_for(lambda: (out / ".convertctl").exists() and running(out))
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()[0][-3000:]) from None
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    print(stdout[-2000:], stderr[-2000:])
    assert proc.returncode == 130 and "interrupted" in stderr
    assert sorted(p.name for p in out.iterdir()) == [".convertctl", "keep.txt"]
    run_dir = next((out / ".convertctl" / "runs").iterdir())
    assert list(run_dir.glob("export/*/model.onnx")), "what was made before Ctrl-C is kept"
    assert str(run_dir) in " ".join(stderr.split()), "and where it is kept is said"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["exit_code"] == 130 and report["status"] == "failed", "the report agrees with the exit code"
    return out


def test_ctrl_c_stops_the_local_stage_process(smallcnn, tmp_path):
    out = interrupt_during_convert(smallcnn, tmp_path, "local", stage_processes)
    time.sleep(0.5)
    assert stage_processes(out) == []


@pytest.mark.docker
@requires_docker
def test_ctrl_c_removes_the_stage_container(tmp_path):
    import docker
    from conftest import convertctl

    model = tmp_path / "m17.pt"
    convertctl("example", model, "--name", "smallcnn", "--input-shape", "1,3,64,64", "--runtime", "docker", check=True)
    client = docker.from_env()

    def containers(out):
        return [
            c
            for c in client.containers.list(all=True)
            if str(out) in c.labels.get("org.convertctl.run", "") and c.labels.get("org.convertctl.stage") == "convert"
        ]

    out = interrupt_during_convert(model, tmp_path, "docker", containers)
    assert not [c for c in client.containers.list(all=True) if str(out) in c.labels.get("org.convertctl.run", "")]
