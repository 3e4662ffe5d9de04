"""The battery's cases where the process boundary matters, through the real
CLI in a subprocess: special files that would block a read (a hang shows as
a timeout), the bytes a terminal receives, repeated Ctrl-C during a real
stage, concurrent runs on one --out, and hostile models refused on the
Docker runtime before any container starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from battery_cases import MARKER, RAW_TERMINAL, evil_pickle, fifo, pt2, torch_save_bytes, torchscript
from conftest import requires_docker

TIMEOUT = 120  # generous for a loaded machine; a blocked read never ends


def cli(*args, cwd, env=None, timeout=TIMEOUT):
    full = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "convertctl", *map(str, args)], cwd=cwd, env=full, capture_output=True, timeout=timeout
    )


@pytest.fixture
def world(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    torchscript(tmp_path / "net.pt", tmp_path)
    return tmp_path


SPECIAL = {
    "calib": (["-q", "int8", "--calib"], "FIFO"),
    "eval": (["--eval-data"], "FIFO"),
    "samples": (["--sample-inputs"], "FIFO"),
}


@pytest.mark.parametrize("role", sorted(SPECIAL))
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "dev-urandom"])
def test_a_special_file_as_data_is_refused_without_blocking(world, role, kind):
    data = world / "d.npz"
    if kind == "fifo":
        fifo(data, world)
    else:
        data.symlink_to("/dev/zero" if kind == "dev-zero" else "/dev/urandom")
    flags, _ = SPECIAL[role]
    proc = cli(
        "run",
        world / "net.pt",
        "--input-shape",
        "1,3,8,8",
        "--out",
        world / "out",
        *flags,
        data,
        "--runtime",
        "local",
        cwd=world,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert str(data) in err and ("FIFO" in err or "device" in err)
    assert sorted(p.name for p in (world / "out").iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("command", [("report", "show"), ("report", "show", "--markdown"), ("verify",)])
def test_a_fifo_as_a_report_is_refused_without_blocking(world, command):
    fifo(world / "r.json", world)
    proc = cli(*command[:2], world / "r.json", *command[2:], cwd=world)
    assert proc.returncode == 2 and b"FIFO" in proc.stderr


@pytest.mark.parametrize(
    "name",
    [
        "m\x1b[2J\x1b[H.pt",
        "m\x1b]0;owned\x07.pt",
        "m\x9b31m.pt",
        "m\rFAKE.pt",
        "m\u202egnp.pt",
        "d[/]x.pt",
        "[bold]x[/bold].pt",
    ],
)
def test_a_terminal_receives_no_escape_sequence_from_a_name(world, name):
    """The bytes on stdout and stderr of the real process: nothing from a name
    moves the cursor, retitles the window, rewrites a line or styles text."""
    if "/" in name:
        (world / name).parent.mkdir(parents=True, exist_ok=True)
    (world / name).write_bytes(b"not a model")
    proc = cli("run", world / name, "--input-shape", "1,3,8,8", "--out", world / "out", "--runtime", "local", cwd=world)
    said = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 2, said
    assert not any(ch in said for ch in RAW_TERMINAL), repr(said)
    if "[" in name and name.isprintable():
        assert name.split("/")[-1].replace(".pt", "") in said, "markup shown as the text it is"


# -- with real stages -----------------------------------------------------------------
@pytest.mark.acceptance
def test_three_ctrl_c_in_a_row_still_exit_130(smallcnn, tmp_path):
    """Ctrl-C, then two more while the run stops its stage and keeps its files."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "convertctl", "run", str(smallcnn), "--input-shape", "1,3,64,64", "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--runtime", "local", "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(out.glob(".convertctl/runs/*/export")):
        time.sleep(0.2)
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert "interrupted" in stderr and "Traceback" not in stderr
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(out) not in ps, "a stage of the interrupted run is still running"


@pytest.mark.acceptance
def test_concurrent_runs_on_one_out_each_finish_correctly(smallcnn, tmp_path):
    """Ten rounds of four runs started together on one --out, every step from
    the stage cache: each exits 0, none is told another was killed, and
    --out ends holding one consistent set."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, "CONVERTCTL_CACHE_DIR": str(cache), "CONVERTCTL_NO_CACHE": "0", "COLUMNS": "160"}
    cmd = [sys.executable, "-m", "convertctl", "run", str(smallcnn), "--input-shape", "1,3,64,64", "-q", "fp16"]
    cmd += ["--out", str(out), "--runtime", "local", "--latency-runs", "0"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-2000:]

    def one(_):
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    for _ in range(10):
        with ThreadPoolExecutor(4) as pool:
            done = list(pool.map(one, range(4)))
        for proc in done:
            said = proc.stdout + proc.stderr
            assert proc.returncode == 0, said[-3000:]
            assert "was killed" not in said and "stopped" not in said, said[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "passed"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md", "smallcnn_fp16.tflite"]


# -- Docker: refused on the host, no container started ----------------------------------
@pytest.mark.docker
@requires_docker
@pytest.mark.parametrize(
    "name,writer,says",
    [
        ("net.pt2", pt2({"m/data/sample_inputs/model.pt": lambda w: torch_save_bytes(evil_pickle(w))}), "posix.system"),
        ("net.pt2", pt2({"m/data/constants/c0": evil_pickle}), "m/data/constants/c0"),
        ("net.pt", lambda p, w: torchscript(p, w, {"net/extra.pkl": evil_pickle(w)}), "net/extra.pkl"),
    ],
)
def test_a_payload_is_refused_on_the_docker_runtime_before_any_container(tmp_path, name, writer, says):
    import docker

    client = docker.from_env()
    before = {c.id for c in client.containers.list(all=True)}
    writer(tmp_path / name, tmp_path)
    (tmp_path / "out").mkdir()
    proc = cli(
        "run",
        tmp_path / name,
        "--input-shape",
        "1,3,8,8",
        "--out",
        tmp_path / "out",
        "--runtime",
        "docker",
        cwd=tmp_path,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and says in err and name in err, err
    assert not (tmp_path / MARKER).exists()
    assert not list((tmp_path / "out").iterdir())
    assert {c.id for c in client.containers.list(all=True)} <= before, "a container was started"


def test_the_battery_has_at_least_400_cases():
    from battery_cases import all_cases

    assert len(all_cases()) >= 400
    assert Path(__file__).with_name("test_battery_cli.py").is_file()
