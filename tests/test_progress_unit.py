"""Build progress that tells the truth: installer lines become a step
counter, the time so far and what is being installed; an unchanged status
is said again as time passes; a log gets a line at least every 15 s; the
results table says how long the environments took. One real (tiny) venv
build shows the installer's own words reaching the status."""

from __future__ import annotations

import threading

import pytest
from convertctl.cli import ui
from convertctl.report.model import Report
from convertctl.report.render import rows
from convertctl.store import buildprogress
from convertctl.store.buildprogress import BuildProgress
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from test_envstore import variant


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# What uv pip install and pip print (their formats, shortened), and a docker build.
UV = [
    "Using Python 3.11.7 environment at: /x/py3.11-abc",
    "Resolved 45 packages in 12ms",
    "Downloading torch (190.0MiB)",
    "Downloading numpy (15.6MiB)",
    " Downloaded numpy",
    "Prepared 45 packages in 1m 37s",
    "Installed 45 packages in 2.1s",
    "Bytecode compiled 9876 files in 6.5s",
    " + torch==2.13.0+cpu",
]
PIP = [
    "Collecting six==1.16.0",
    "  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)",
    "Installing collected packages: six, numpy",
    "Successfully installed numpy-1.26.4 six-1.16.0",
]
DOCKER = ["Step 1/12 : ARG BASE_IMAGE", " ---> abc", "Step 7/12 : RUN /opt/venv/bin/pip install -r requirements.txt"]


def said_for(lines, steps=2, step=(2, "installing the lock")):
    clock, said = Clock(), []
    progress = BuildProgress(said.append, "export-torch2.13", steps, clock=clock)
    progress.step(*step)
    for line in lines:
        clock.now += 3
        progress.line(line)
    return said, progress, clock


def test_uv_lines_become_a_step_a_time_and_a_package():
    said, _, _ = said_for(UV)
    assert said[0] == "export-torch2.13: step 2/2 installing the lock, 0s: starting"
    assert "export-torch2.13: step 2/2 installing the lock, 6s: resolved 45 packages" in said
    assert "export-torch2.13: step 2/2 installing the lock, 9s: downloading torch (190.0MiB) (1 of 45)" in said
    assert said[-2].endswith("21s: installed 45 packages") and said[-1].endswith("24s: compiled 9876 files")
    assert not any("Using Python" in s or "+ torch" in s or "Downloaded" in s for s in said), "no raw line"


def test_pip_and_docker_lines_too():
    said, _, _ = said_for(PIP)
    assert any(s.endswith("resolving six==1.16.0") for s in said)
    assert any(s.endswith("downloading six (11 kB)") for s in said)
    assert said[-1].endswith("installed 2 packages")
    said, _, _ = said_for(DOCKER, steps=0, step=(0, ""))
    assert said[-1] == "export-torch2.13: step 7/12 RUN /opt/venv/bin/pip install -r requirements.txt, 9s: running"
    assert not any("--->" in s for s in said)


def test_an_unchanged_status_is_said_again_with_the_time_moved_on():
    said, progress, clock = said_for(UV[:3])
    count = len(said)
    progress.line("something uv says that means nothing here")
    assert len(said) == count, "a line that changes nothing says nothing"
    clock.now += 60
    progress.tick()
    assert len(said) == count + 1 and said[-1].endswith("69s: downloading torch (190.0MiB) (1 of 45)")


def test_the_ticker_runs_while_the_build_does(monkeypatch):
    monkeypatch.setattr(buildprogress, "TICK", 0.01)
    said: list = []
    enough = threading.Event()

    def say(line):
        said.append(line)
        if len(said) >= 4:
            enough.set()

    with BuildProgress(say, "v", 1):
        assert enough.wait(30), said  # said again and again while nothing else happens
    count = len(said)
    enough.wait(0.05)
    assert len(said) == count, "and not after the build ended"


@pytest.mark.parametrize("terminal", [False, True])
def test_a_log_gets_a_line_at_least_every_15_seconds(monkeypatch, capsys, terminal):
    monkeypatch.setattr(type(ui.console), "is_terminal", property(lambda self: terminal))
    clock = Clock()
    progress = ui.Progress(clock=clock)
    for second in range(0, 61, 5):  # a build saying its status every 5 s for a minute
        clock.now = 100.0 + second
        progress(f"export-torch2.13: step 2/2 installing, {second}s: downloading torch (190.0MiB)")
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "downloading torch" in ln]
    if terminal:
        assert printed == [], "a terminal has the spinner line"
    else:
        assert [ln.split(", ")[1].split(":")[0] for ln in printed] == ["15s", "30s", "45s", "60s"]


def test_the_table_says_how_long_the_environments_took():
    report = Report(model={}, runtime="local", modes=["fp32"])
    report.environments = [
        {"variant": "export-torch2.13", "stage": "export", "created": True, "seconds": 61.2, "location": "x"},
        {"variant": "onnx2tf-tf2.19", "stage": "convert", "created": False, "seconds": 0.0, "location": "y"},
    ]
    first = rows(report)[0]
    assert first == ("environments", "", True, "1 created (export-torch2.13 61.2s), 1 ready before; 61.2s in all")
    report.environments[0]["created"] = False
    assert rows(report)[0][3] == "2 ready before, none created (61.2s)"


def test_a_real_build_says_its_steps_and_its_installer(tmp_path):
    said: list = []
    EnvStore(tmp_path / "store", load_settings()).ensure(variant(tmp_path), said.append)
    assert said[0].startswith("creating export environment tiny")
    assert any(s.startswith("tiny: step 1/2 making the virtualenv") for s in said), said
    assert any(s.startswith("tiny: step 2/2 installing tiny.txt") for s in said), said
    assert any(s.endswith("resolved 1 packages") for s in said), said  # uv's own words, read
    assert any(s.endswith("installed 1 packages") for s in said), said
    assert not any(s.startswith(("Resolved", "Installed", " +", "Using")) for s in said), "no raw installer line"
