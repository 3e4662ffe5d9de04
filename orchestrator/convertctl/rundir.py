"""The run directory (the stages' shared volume) and the move of finished
artifacts into --out. Stages write only into the run directory; --out is
touched only when a run has passed, file by file with an atomic rename, so
a failed or interrupted run never damages what an earlier run left there."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from convertctl.errors import UsageError

RUNS = Path(".convertctl") / "runs"


def create_run_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    run = out.resolve() / RUNS / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        run.mkdir(parents=True)
        probe = run / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    # Stage containers may run as another uid than the one that made this
    # directory; the stage subfolders must be writable for them all.
    run.chmod(0o777)
    return run


def promote(run_dir: Path, out: Path, files: dict) -> None:
    """Copy run-dir files {relative source: destination name} into out.

    Each file is staged next to its destination, then renamed over it, so
    readers never see a half-written file.
    """
    for rel, name in files.items():
        tmp = out / f".{name}.convertctl-tmp"
        shutil.copyfile(run_dir / rel, tmp)
        os.replace(tmp, out / name)


def discard(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    runs = run_dir.parent
    for parent in (runs, runs.parent):  # leave no empty .convertctl/ behind
        try:
            parent.rmdir()
        except OSError:
            break
