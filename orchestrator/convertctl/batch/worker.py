"""One model of a batch, converted in a process of its own:

    python -m convertctl.batch.worker JOB.json

JOB.json holds the model's Options (merged and checked by plan.py) and where
to write the outcome (exit code, status, failure, the report's path). What
the conversion says goes to stdout, a line at a time, for the batch's
progress and log.

A process per model rather than Pipeline in the batch's own process: a
crash, a hang or a runaway memory of one conversion cannot take the batch
down; Ctrl-C reaches it as it reaches `convertctl run` (its stages stopped,
its run directory kept, exit 130) and ends nothing else; and its peak memory
is the kernel's own count for its process tree (wait4), which the pool sizes
itself on. Inside, it is `convertctl run`'s path: the same option checks,
runtime, preflight and Pipeline."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import sys
from pathlib import Path

from convertctl.config.options import Options
from convertctl.errors import EXIT_INTERNAL, ConvertError

EXIT_INTERRUPTED = 130


def convert(opts: Options, say):
    """One model, as `convertctl run` converts it (api/run.py's checks and
    execute): its Report."""
    from convertctl.api.run import Checked, check_before_work, execute

    check_before_work(opts)
    return execute(Checked(opts, None), say, watch=lambda pipeline: obeyed_until(lambda: pipeline.placed))


@contextlib.contextmanager
def obeyed_until(ended):
    """SIGINT stops the conversion until ended() says its files are placed;
    after that (the runtime closing, the outcome being written) it is
    ignored, so a model whose report says passed is reported passed."""

    def on_sigint(signum, frame):
        if not ended():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        if not ended():
            signal.signal(signal.SIGINT, previous)


def say(line: str) -> None:
    print(line.replace("\n", " "), flush=True)


def main(argv: list) -> int:
    # A Ray worker blocks SIGINT in its signal mask, and a process it starts
    # inherits the mask: a conversion started by a Ray task would never see
    # the batch's Ctrl-C (measured: SigBlk 0x2 in the task and its children).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    job = json.loads(Path(argv[1]).read_text())
    outcome: dict = {"exit_code": EXIT_INTERNAL, "status": "failed", "failure": "", "report": "", "run_dir": ""}
    try:
        opts = Options(**job["options"])
        report = convert(opts, say)
        where = Path(opts.out) if report.status == "passed" else Path(report.run_dir)
        outcome.update(exit_code=report.exit_code, status=report.status, failure=report.failure)
        outcome.update(report=str(where / "report.json"), run_dir=report.run_dir)
    except KeyboardInterrupt as exc:
        outcome.update(exit_code=EXIT_INTERRUPTED, failure="interrupted", run_dir=getattr(exc, "run_dir", ""))
    except BaseException as exc:  # noqa: BLE001 - every ending is an outcome the batch reports
        from convertctl.store.rundir import os_error

        mapped = os_error(exc, getattr(exc, "run_dir", None))
        if isinstance(mapped, ConvertError):
            outcome.update(exit_code=mapped.exit_code, failure=mapped.message)
        else:
            outcome.update(failure=f"internal error: {type(exc).__name__}: {exc}")
        outcome["run_dir"] = getattr(exc, "run_dir", "")
    if outcome["run_dir"] and not outcome["report"]:
        kept = Path(outcome["run_dir"]) / "report.json"
        outcome["report"] = str(kept) if kept.is_file() else ""
    # Its own peak and its waited-for stages': for a parent that could not wait4 for it.
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    outcome["peak_rss_mb"] = round(peak / 1024, 1)
    Path(job["result"]).write_text(json.dumps(outcome))
    print(f"[done] exit {outcome['exit_code']}", flush=True)
    return int(outcome["exit_code"])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
