"""The battery's cases that need the pipeline or the OS rather than the CLI's
parsing: a full disk inside a stage, the cache folder unusable, --threads,
replayed timings, concurrent runs on one --out and their locks, a live run's
processes. The pipeline runs against the fake runtime (the one fake);
locks and processes are real."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_ENVIRONMENT, EXIT_OK, EnvironmentProblem, MachineProblem
from convertctl.report.render import markdown, rows
from convertctl.report.text import md_code, md_text, term, visible
from convertctl.run.pipeline import Pipeline
from convertctl.runtimes.base import StageRun
from convertctl.store import procs, rundir
from convertctl.store.cache import open_cache
from fakes import FakeRuntime, options, torchscript_file


@pytest.fixture
def model(tmp_path) -> Path:
    return torchscript_file(tmp_path / "net.pt")


def run(model, out, runtime=None, say=None, **kw):
    opts = options(model=model, shapes=[(1, 3, 8, 8)], modes=kw.pop("modes", ["fp16"]), out=out, **kw)
    runtime = runtime or FakeRuntime()
    runtime.name = "local"
    return Pipeline(opts, runtime, load_catalog(), say or (lambda _: None)).run()


class FullDisk(FakeRuntime):
    """A stage that meets a full disk, as a converter writing its SavedModel does."""

    def __init__(self, stage: str, where: str = "error"):
        super().__init__()
        self.stage, self.where = stage, where

    def run(self, step, run_dir, say):
        if step.variant.stage != self.stage:
            return super().run(step, run_dir, say)
        said = "OSError: [Errno 28] No space left on device: '/run/saved_model/variables'"
        self.calls.append("full disk")
        if self.where == "error":
            return StageRun(step.stage, step.variant, 1, {"status": "failed", "error": said}, 0.1, [])
        return StageRun(step.stage, step.variant, -9, {}, 0.1, ["writing variables", said])


@pytest.mark.parametrize("stage", ["export", "convert", "quantize"])
@pytest.mark.parametrize("where", ["error", "log"])
def test_a_full_disk_inside_a_stage_is_exit_5(model, tmp_path, stage, where):
    """It ends the run where it is met: no other rung or quantizer is tried on a full disk."""
    runtime = FullDisk(stage, where)
    with pytest.raises(EnvironmentProblem) as raised:
        run(model, tmp_path / "out", runtime, latency_runs=0)
    assert raised.value.exit_code == EXIT_ENVIRONMENT
    assert "no space left on the device" in raised.value.message
    assert not any(p.name.endswith(".tflite") for p in (tmp_path / "out").iterdir())
    report = json.loads((Path(raised.value.run_dir) / "report.json").read_text())
    assert report["exit_code"] == EXIT_ENVIRONMENT and "no space left" in report["failure"]
    assert any(st["status"] == "failed" and st["stage"] == stage for st in report["stages"]), "the stage is recorded"
    assert runtime.calls.count("full disk") == 1 and runtime.calls[-1] == "full disk", "nothing ran after it"


class FullDiskBuild(FakeRuntime):
    """The first convert environment cannot be built: the disk is full (envstore, images)."""

    def __init__(self):
        super().__init__()
        self.built: list = []

    def prepare(self, variants, say):
        for v in variants:
            self.built.append((v.stage, v.name))
            if v.stage == "convert":
                raise MachineProblem(
                    f"could not create the {v.name} environment in /store: no space left on the device"
                )
        return super().prepare(variants, say)


def test_a_full_disk_while_building_an_environment_ends_the_ladder(model, tmp_path):
    """No next rung's environment is built on the same full disk: exit 5 at the first."""
    runtime = FullDiskBuild()
    with pytest.raises(MachineProblem) as raised:
        run(model, tmp_path / "out", runtime, latency_runs=0, modes=["fp16", "int8"])
    assert raised.value.exit_code == EXIT_ENVIRONMENT and "no space left" in raised.value.message
    assert len([name for stage, name in runtime.built if stage == "convert"]) == 1, runtime.built
    report = json.loads((Path(raised.value.run_dir) / "report.json").read_text())
    assert report["exit_code"] == EXIT_ENVIRONMENT and "no space left" in report["failure"]


def test_a_stage_failure_that_is_not_the_disk_stays_exit_3(model, tmp_path):
    report = run(model, tmp_path / "out", FakeRuntime(crash="convert"), latency_runs=0)
    assert report.exit_code == 3


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_an_unusable_cache_folder_is_a_notice_and_an_uncached_run(model, tmp_path, monkeypatch, kind):
    cache = tmp_path / "cache"
    if kind == "file":
        cache.write_text("not a folder")
    else:
        if os.getuid() == 0:  # root writes through any mode bits: a read-only mount it is
            (cache.parent / "ro").mkdir()
            if subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(cache.parent / "ro")]
            ).returncode:
                pytest.skip("needs mount(8) to make a read-only folder as root")
            cache = cache.parent / "ro" / "cache"
        else:
            cache.mkdir()
            cache.chmod(0o500)
    monkeypatch.setenv("CONVERTCTL_CACHE_DIR", str(cache))
    monkeypatch.delenv("CONVERTCTL_NO_CACHE", raising=False)
    try:
        got, notice = open_cache()
        assert got is None and str(cache) in notice and "cannot be written" in notice
        report = run(model, tmp_path / "out", latency_runs=0)
        assert report.exit_code == EXIT_OK
        assert any("cannot be written" in n for n in report.notices), report.notices
        assert not any(st.get("cached") for st in report.stages)
    finally:
        if kind == "readonly" and os.getuid() == 0:
            subprocess.run(["umount", "-l", str(tmp_path / "ro")])


def test_threads_times_one_and_n_and_flags_more_than_the_cpus(model, tmp_path):
    fake = FakeRuntime()
    report = run(model, tmp_path / "a", fake, latency_runs=3, threads=4)
    asked = [r for r in fake.requests if "files" in r][-1]
    assert asked["threads"] == [1, 4]
    art = report.artifacts[0]
    assert {(c["xnnpack"], c["threads"]) for c in art["latency"]["configs"]} == {
        (True, 1),
        (True, 4),
        (False, 1),
        (False, 4),
    }
    # The fake host has 2 CPUs: 4 threads is flagged in the report, the terminal rows and report.md
    assert any("4 threads" in n and "2 CPU" in n for n in report.notices), report.notices
    latency = next(numbers for stage, _, _, numbers in rows(report) if stage == "latency")
    assert "MORE THREADS (4) THAN CPUS (2)" in latency
    assert "MORE THREADS (4) THAN CPUS (2)" in markdown(report)


def test_threads_one_times_one_thread_only_and_flags_nothing(model, tmp_path):
    fake = FakeRuntime()
    report = run(model, tmp_path / "a", fake, latency_runs=3)
    assert [r for r in fake.requests if "files" in r][-1]["threads"] == [1]
    assert not any("threads" in n for n in report.notices)


# -- concurrent runs on one --out ---------------------------------------------------
def _place_with_lock(out: str, hold: float, log: str) -> None:
    with rundir.out_lock(Path(out)):
        with open(log, "a") as f:
            f.write(f"in {os.getpid()} {time.monotonic()}\n")
        time.sleep(hold)
        with open(log, "a") as f:
            f.write(f"out {os.getpid()} {time.monotonic()}\n")


def test_runs_on_one_out_take_turns_and_leave_no_lock(tmp_path):
    out, log = tmp_path / "out", tmp_path / "log"
    out.mkdir()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_place_with_lock, args=(str(out), 0.2, str(log))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert all(w.exitcode == 0 for w in workers)
    events = log.read_text().split()
    kinds = events[0::3]
    assert kinds == ["in", "out"] * 4, "never two inside at once"
    assert not (out / ".convertctl").exists(), "the lock goes with the last run"


def test_a_waiting_run_says_whom_it_waits_for(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    said: list = []
    inside = threading.Event()
    release = threading.Event()

    def holder():
        with rundir.out_lock(out):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(10)
    waiter = threading.Thread(target=lambda: rundir.out_lock(out, said.append).__enter__())
    waiter.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    t.join(10)
    waiter.join(10)
    assert said and said[0].startswith(f"waiting for another convertctl run writing to {out} (pid {os.getpid()})")


def _killed_runs_loop(out: str, stop_at: float, found) -> None:
    while time.monotonic() < stop_at:
        found.extend(rundir.killed_runs(Path(out)))


def test_a_live_run_is_never_told_killed_while_it_starts(tmp_path):
    """A run directory's lock is held from the moment its name exists: a
    concurrent run scanning for killed runs never finds it free."""
    out = tmp_path / "out"
    out.mkdir()
    found: list = []
    scanner = threading.Thread(target=_killed_runs_loop, args=(str(out), time.monotonic() + 3, found))
    scanner.start()
    made = []
    while scanner.is_alive():
        run = out / rundir.RUNS / f"r{len(made)}"
        run.mkdir(parents=True)
        rundir.hold(run)
        made.append(run)
    scanner.join()
    assert found == [], found[:3]
    assert all(rundir.live(r) for r in made)
    for r in made:
        rundir.release(r)


def test_a_finishing_run_is_never_told_killed_while_its_folder_goes(tmp_path, monkeypatch):
    """A passed run removes its directory: a concurrent scan that looks while
    report.json is already gone and the lock file is still there must find
    the lock held (it was released first, and the run reported killed)."""
    import shutil

    out = tmp_path / "out"
    run = out / rundir.RUNS / "r0"
    run.mkdir(parents=True)
    rundir.hold(run)
    (run / "report.json").write_text("{}")
    seen: list = []
    real_rmtree = shutil.rmtree

    def rmtree_report_first(path, *args, **kwargs):  # the unlucky order: report.json before .lock
        (Path(path) / "report.json").unlink()
        seen.extend(rundir.killed_runs(out))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(rundir.shutil, "rmtree", rmtree_report_first)
    rundir.discard(run)
    assert seen == []
    assert not run.exists() and not rundir.live(run)


def test_a_live_runs_stage_process_is_never_reaped(tmp_path):
    """Another convertctl's sweep for orphans leaves a live run's stage alone."""
    proc = procs.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sweep = subprocess.run(
            [sys.executable, "-c", "from convertctl.store import procs; print(procs.reap_orphans())"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sweep.stdout.strip() == "0", sweep.stderr
        assert proc.poll() is None, "the live run's stage was killed"
    finally:
        procs.stop(proc)


def test_an_orphans_stage_process_is_reaped(tmp_path):
    """The same sweep does stop a stage whose convertctl is gone."""
    code = (
        "import sys, time\n"
        "from convertctl.store import procs\n"
        "p = procs.start([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "import os; os._exit(0)\n"  # the owner dies without cleaning up (as under kill -9, guard aside)
    )
    owner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    orphan = int(owner.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(orphan):  # PDEATHSIG or the guard may take it first
        assert procs.reap_orphans() >= 0
        time.sleep(0.1)
    assert not _alive(orphan)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- repeated Ctrl-C -------------------------------------------------------------------
def test_ctrl_c_during_cleanup_is_counted_not_obeyed():
    """The first SIGINT interrupts; those that follow while cleanup runs are
    ignored, so the command still ends with its exit code 130."""
    code = r"""
import os, signal, sys, time
import typer
from convertctl.cli.ui import handled

@handled
def command():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    finally:  # cleanup, during which two more Ctrl-C arrive
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        print("cleaned up", flush=True)

try:
    command()
except typer.Exit as exc:
    os.kill(os.getpid(), signal.SIGINT)  # one more, while the process exits
    time.sleep(0.2)
    sys.exit(exc.exit_code)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "cleaned up" in proc.stdout and "interrupted" in proc.stderr
    assert "still cleaning up" in proc.stderr


# -- text from outside -----------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["[/]", "\x1b[31mred", "a\rb", "x\ny", "\u202eabc", "\x9b2J", "tab\there", "\x00nul", "\udcff"],
)
def test_terminal_text_is_visible_and_inert(text):
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(f"[bold]{term(text)}[/]")  # never raises a MarkupError
    shown = console.export_text()
    assert not any(ch in shown for ch in "\x1b\r\x9b\u202e\x00"), repr(shown)
    assert shown.strip() == visible(text)


@pytest.mark.parametrize("text", ["`", "``a``", "a`b", "|", "` `", "", " ", "````x"])
def test_a_code_span_cannot_be_broken_out_of(text):
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(f"before {md_code(text, table=False)} after")
    assert html.count("<code>") == 1 and "before" in html and "after" in html
    inner = html.split("<code>")[1].split("</code>")[0]
    assert inner.strip() == text.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"), html


def test_markdown_text_keeps_file_names_readable():
    assert md_text("net_int8.tflite") == "net_int8.tflite"
    assert md_text("<b>") == "&lt;b&gt;"
