"""The local executor: a pool of worker processes on this machine, one
conversion each (worker.py), as many at once as sizing.py allows. Each
worker writes into its own --out/NAME and run directory; the stage cache
and the environment store are shared (both are safe for concurrent writers:
cache entries are built aside and renamed into place, environments are
built under a file lock).

Ctrl-C: no new model starts; each running worker gets SIGINT, as `convertctl
run` would from the terminal (it stops its stage, keeps its run directory
and ends with 130); one that has not ended within STOP_SECONDS is killed
with its process group. Finished models keep their outputs."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from convertctl.batch.outcome import INTERRUPTED, NOT_RUN, PASSED, Outcome
from convertctl.batch.sizing import Sizing, usable_cores
from convertctl.store import procs

STOP_SECONDS = 60  # a stage stopped on Ctrl-C saves its report in a second or two
POLL = 0.25
TAIL_BYTES = 4096


def write_job(state_dir: Path, model, result: Path) -> Path:
    job = state_dir / f"{model.name}.job.json"
    job.write_text(json.dumps({"options": asdict(model.options), "result": str(result)}, default=list))
    return job


def last_line(log: Path) -> str:
    """The latest thing a worker said, read from the end of its log."""
    try:
        with open(log, "rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - TAIL_BYTES, 0))
            lines = [ln for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def read_result(path: Path, code: int) -> dict:
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    name = signal.Signals(-code).name if code < 0 and -code in signal.Signals._value2member_map_ else ""
    how = f"was killed ({name})" if name else f"exited with code {code}"
    return {"exit_code": 130 if name == "SIGINT" else 3, "failure": f"the conversion process {how} and said nothing"}


# Thread pools of the libraries in the stages (torch and numpy through OpenMP and
# BLAS, TensorFlow's own): each would take every core, and N conversions at once
# would then fight over them. A worker gets its share, as Ray gives a task its
# CPUs (bench/batch.py: 2 conversions at once on 2 cores ran 1.5x slower each
# without this); what the user set is kept.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def thread_share(slots: int) -> dict:
    share = str(max(1, usable_cores() // max(slots, 1)))
    return {name: os.environ.get(name, share) for name in THREAD_VARS}


class Running:
    def __init__(self, model, outcome: Outcome, state_dir: Path, environ: dict | None = None):
        self.model, self.outcome = model, outcome
        self.result = state_dir / f"{model.name}.result.json"
        self.result.unlink(missing_ok=True)
        self.log = state_dir / f"{model.name}.log"
        outcome.log = str(self.log)
        job = write_job(state_dir, model, self.result)
        with open(self.log, "ab") as log:
            # Its own session (procs.start): the terminal's Ctrl-C reaches the batch only, which passes it on.
            self.proc = procs.start(
                [sys.executable, "-m", "convertctl.batch.worker", str(job)],
                stdout=log,
                stderr=procs.STDOUT,
                stdin=procs.DEVNULL,
                env={**os.environ, **(environ or {})},
            )
        outcome.start()

    def finish(self) -> float | None:
        code, peak = procs.finish_measured(self.proc)
        self.outcome.end(read_result(self.result, code), peak)
        return self.outcome.peak_rss_mb


class LocalPool:
    name = "local"

    def __init__(self, sizing: Sizing, fail_fast: bool, state_dir: Path):
        self.sizing, self.fail_fast, self.state_dir = sizing, fail_fast, state_dir
        self.running: list[Running] = []

    @property
    def workers(self) -> int:
        return self.sizing.slots

    def run(self, models: list, outcomes: list, display) -> bool:
        """Convert every model; True when interrupted (Ctrl-C)."""
        pending = list(zip(models, outcomes))
        stop = False
        try:
            while pending or self.running:
                while pending and not stop and self.sizing.may_start(pending[0][1].family, self._outcomes()):
                    # The next model that fits: in order, but a model waiting for its family's
                    # first measurement lets one of another family go first.
                    model, outcome = pending[0]
                    # Off the queue once started: a Ctrl-C while it starts (procs.start stops it) leaves it "not run".
                    self.running.append(Running(model, outcome, self.state_dir, thread_share(self.sizing.slots)))
                    pending.pop(0)
                    display.update()
                if pending and not stop and self.running:
                    self._reorder(pending)
                for run in [r for r in self.running if procs.exited(r.proc)]:
                    self.running.remove(run)
                    self.sizing.learn(run.outcome.family, run.finish(), run.outcome.cached)
                    stop = stop or (self.fail_fast and run.outcome.state != PASSED)
                for run in self.running:
                    run.outcome.last_line = last_line(run.log)
                if stop:
                    for _, outcome in pending:
                        outcome.state = NOT_RUN
                    pending = []
                display.update()
                time.sleep(POLL)
        except KeyboardInterrupt:
            self.interrupt()
            for _, outcome in pending:
                outcome.state = NOT_RUN
            display.update()
            return True
        return False

    def _outcomes(self) -> list:
        return [r.outcome for r in self.running]

    def _reorder(self, pending: list) -> None:
        """Move the first model that may start now to the front (the head waits for a measurement)."""
        for i, (_, outcome) in enumerate(pending):
            if self.sizing.may_start(outcome.family, self._outcomes()):
                pending.insert(0, pending.pop(i))
                return

    def interrupt(self) -> None:
        for run in self.running:
            try:
                os.kill(run.proc.pid, signal.SIGINT)
            except OSError:
                pass
        deadline = time.monotonic() + STOP_SECONDS
        while self.running:
            for run in [r for r in self.running if procs.exited(r.proc) or time.monotonic() > deadline]:
                if not procs.exited(run.proc):
                    procs.stop(run.proc)
                    run.outcome.state, run.outcome.exit_code = INTERRUPTED, 130
                    run.outcome.failure = "killed: it did not stop within a minute of Ctrl-C"
                else:
                    run.finish()  # 130 from its result, or its own ending if it was just done
                self.running.remove(run)
            time.sleep(POLL)

    def close(self) -> None:
        return None  # the workers have all ended by now
