"""`convertctl batch` on the local pool, for real: four small models of
different families converted and validated; two batches at once sharing
one stage cache and one environment store; Ctrl-C keeps the finished
models, and a rerun takes them from the cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_models import batch_file, check_converted, make_zoo
from conftest import convertctl, load_json
from convertctl.store.cache import StageCache

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return make_zoo(tmp_path_factory.mktemp("batch-zoo"))


def two_models(zoo: Path, path: Path) -> Path:
    """A batch file of the zoo's two smallest models."""
    return batch_file(zoo.parent, ("gru", "transformer"), path)


def test_two_batches_at_once_share_one_cache_and_one_environment_store(zoo, tmp_path):
    """Both write the same steps into one cache at the same time (entries are
    built aside and renamed into place) and use the same venvs: both pass,
    with the same bytes, and every cache entry is whole."""
    cache = tmp_path / "cache"
    env = {**os.environ, "CONVERTCTL_NO_CACHE": "0", "CONVERTCTL_CACHE_DIR": str(cache), "COLUMNS": "160"}
    batch = two_models(zoo, tmp_path / "two.toml")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "convertctl", "batch", batch, "--out", tmp_path / name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("a", "b")
    ]
    said = [p.communicate(timeout=1800)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(s[-3000:] for s in said)
    for name in ("a", "b"):
        check_converted(tmp_path / name, names=("gru", "transformer"))
    for model in ("gru", "transformer"):
        for mode in ("fp32", "fp16"):
            a = (tmp_path / "a" / model / f"{model}_{mode}.tflite").read_bytes()
            assert a == (tmp_path / "b" / model / f"{model}_{mode}.tflite").read_bytes()
    entries = StageCache(cache).entries()
    assert entries and all(row["valid"] for row in entries)
    assert not [p for p in (cache / "tmp").iterdir() if not p.name.startswith("discard-")]


def test_the_local_pool_converts_the_zoo_and_a_rerun_after_ctrl_c_picks_up(zoo, tmp_path):
    """The four models on the local pool. Ctrl-C once one has finished and
    another is converting: exit 130, the finished ones kept, the running ones
    stopped (their run directories kept, saying 130), nothing left running;
    the rerun converts the rest, and takes the finished ones from the cache."""
    env = {**os.environ, "CONVERTCTL_NO_CACHE": "0", "CONVERTCTL_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "out"
    command = [sys.executable, "-m", "convertctl", "batch", zoo, "--out", out]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, finished = time.monotonic() + 900, []
    while time.monotonic() < deadline and driver.poll() is None:
        finished = [p.parent.name for p in out.glob("*/report.json")]
        running = [p for p in out.glob(".convertctl/batch/*/*.log") if p.stem not in finished]
        if finished and any("running in" in p.read_text() for p in running):
            break
        time.sleep(0.5)
    assert driver.poll() is None, "the batch ended before it could be interrupted"
    driver.send_signal(signal.SIGINT)
    said = driver.communicate(timeout=300)[0]
    assert driver.returncode == 130, said[-3000:]
    report = load_json(out / "batch-report.json")
    assert report["exit_code"] == 130 and report["status"] == "interrupted"
    states = {m["name"]: m["state"] for m in report["models"]}
    passed = sorted(n for n, st in states.items() if st == "passed")
    assert set(finished) <= set(passed) and "interrupted" in states.values(), states
    for name, state in states.items():
        made = list((out / name).glob("*.tflite"))
        assert bool(made) == (state == "passed"), (name, state)
        if state == "interrupted":
            kept = list((out / name).glob(".convertctl/runs/*/report.json"))
            assert kept and load_json(kept[0])["exit_code"] == 130  # the stopped run says so, and is kept
    left = subprocess.run(["pgrep", "-f", f"convertctl.batch.worker {out}"], capture_output=True, text=True)
    assert not left.stdout.strip(), "a conversion outlived the batch"

    again = convertctl("batch", zoo, "--out", out, env=env)
    assert again.returncode == 0, again.stdout[-3000:]
    batch = check_converted(out)  # every model, every file there and validated
    rows = {m["name"]: m for m in batch["models"]}
    assert all(rows[name]["cached"] for name in passed)  # finished before Ctrl-C: from the cache
    assert not all(row["cached"] for row in rows.values())
    assert batch["executor"] == "local" and batch["workers"] == len(os.sched_getaffinity(0))
    assert batch["sizing"]["family_peaks_mb"]  # learnt from the first model of each family
    assert "PASSED: 4 of 4 model(s) passed" in again.stdout
    md = (out / "batch-report.md").read_text()
    assert all(f"`{name}`" in md for name in rows)
    page = (out / "batch-report.html").read_text()
    assert all(f'<tr data-model="{name}">' in page for name in rows) and all(
        (out / n / "report.html").is_file() for n in rows
    )
