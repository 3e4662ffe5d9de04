"""Ctrl-C at the very end of a run: once its files start moving into --out
the run has passed, and a Ctrl-C then must not leave a report.json saying
"passed" beside a run (or a batch row) saying "interrupted"."""

from __future__ import annotations

import json
import os
import signal

import pytest
from convertctl.batch.worker import obeyed_until
from convertctl.config.catalog import load_catalog
from convertctl.run import pipeline as pipeline_module
from convertctl.run.pipeline import Pipeline
from convertctl.store.procs import held_interrupt
from fakes import FakeRuntime, options, torchscript_file


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # delivered to this (the main) thread before the next line


@pytest.fixture(autouse=True)
def sigint_handler():
    """Python's own SIGINT handler for the test, whatever an earlier test left
    (the CLI's Interrupts leaves SIG_IGN in a process on its way out)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_the_first_ctrl_c_is_held_and_a_second_is_obeyed():
    with held_interrupt() as held:
        ctrl_c()
        assert held == [signal.SIGINT]
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the caller's handler is back


def test_a_ctrl_c_while_the_files_are_placed_leaves_a_passed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVERTCTL_NO_CACHE", "1")
    real = pipeline_module.placement.place

    def place_pressed(*args, **kw):
        ctrl_c()  # the moment the batch stops its workers, or the user is one second late
        return real(*args, **kw)

    monkeypatch.setattr(pipeline_module.placement, "place", place_pressed)
    said: list = []
    out = tmp_path / "out"
    opts = options(model=torchscript_file(tmp_path / "net.pt"), shapes=[(1, 3, 8, 8)], modes=["fp16"], out=out)
    fake = FakeRuntime()
    fake.name = "local"
    pipe = Pipeline(opts, fake, load_catalog(), said.append)
    report = pipe.run()
    assert report.status == "passed" and pipe.placed
    assert json.loads((out / "report.json").read_text())["status"] == "passed"
    assert (out / "net_fp16.tflite").is_file()
    assert any("Ctrl-C came while the files were being placed" in line for line in said)


def test_the_worker_obeys_ctrl_c_until_the_files_are_placed_then_ignores_it():
    ended = {"placed": False}
    with pytest.raises(KeyboardInterrupt):
        with obeyed_until(lambda: ended["placed"]):
            ctrl_c()
    with obeyed_until(lambda: ended["placed"]):
        ended["placed"] = True
    ctrl_c()  # the runtime closing, the outcome being written: the model has passed
    assert signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, signal.SIG_DFL)


ARMED: list = []  # the at-fork hook below sends SIGINT only while a test arms it
os.register_at_fork(after_in_parent=lambda: ARMED and os.kill(os.getpid(), signal.SIGINT))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop shown: Python's words
def test_a_ctrl_c_while_a_process_starts_stops_it_and_is_raised():
    """Popen (with a preexec_fn, as procs.start has) runs the at-fork hooks in
    the parent, where Python prints an exception and drops it: a Ctrl-C
    landing there was lost (CI: a batch ran on to the end). procs.start
    holds it: the process it started is stopped, and the Ctrl-C raised."""
    import subprocess

    from convertctl.store import procs

    ARMED.append(1)
    try:
        subprocess.Popen(["true"], preexec_fn=lambda: None).wait()  # raised in the hook, and dropped
        with pytest.raises(KeyboardInterrupt):
            procs.start(["sleep", "31.7"])
    finally:
        ARMED.clear()
    left = subprocess.run(["pgrep", "-f", "sleep 31.7"], capture_output=True, text=True)
    assert not left.stdout.strip(), "the process started as Ctrl-C came was left running"
