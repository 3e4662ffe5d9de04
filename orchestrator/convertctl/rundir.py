"""The run directory (the stages' shared volume) and the move of finished
artifacts into --out. Stages write only into the run directory; --out is
touched only when a run has passed, as one set (see promote), so a failed or
interrupted run never damages what an earlier run left there, and a passed
one never leaves an earlier run's files looking current."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from convertctl.errors import UsageError

RUNS = Path(".convertctl") / "runs"
PREVIOUS = Path(".convertctl") / "previous"


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


def promote(run_dir: Path, out: Path, files: dict, stale: list | None = None, aside: Path | None = None) -> None:
    """Put a run's outputs into out as one set: {run-dir source: name}.

    Every file (or folder) is first copied next to its destination; only
    when all are there are files of an earlier run that this run did not
    make moved into ``aside`` (with the report that described them), and the
    copies renamed over their destinations, report.json last: readers never
    see a half-written file, and a report never sits next to files it does
    not describe. A copy that fails leaves out as it was.
    """
    staged = []
    try:
        for rel, name in files.items():
            tmp = out / f".{name}.convertctl-tmp"
            _remove(tmp)
            src = run_dir / rel
            shutil.copytree(src, tmp) if src.is_dir() else shutil.copyfile(src, tmp)
            staged.append((tmp, name))
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    if stale:
        aside.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "report.md"):  # the earlier report goes with the files it described
            if (out / name).is_file():
                shutil.copy2(out / name, aside / name)
        for name in stale:
            os.replace(out / name, aside / name)
    for tmp, name in sorted(staged, key=lambda s: s[1] == "report.json"):
        dest = out / name
        if tmp.is_dir() and dest.exists():  # a folder cannot be renamed over a full one
            old = out / f".{name}.convertctl-old"
            _remove(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            os.replace(tmp, dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def previous_dir(out: Path) -> Path:
    """OUT/.convertctl/previous/<time>: where an earlier run's leftovers go."""
    base = out / PREVIOUS / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def stale_files(out: Path, made: set, candidates: set) -> list:
    """Names in out, among the candidates (what an earlier report in out
    listed, and the names a run of this model writes), that this run does
    not write; report.json and report.md are always replaced."""
    keep = made | {"report.json", "report.md"}
    return sorted(n for n in candidates if n not in keep and "/" not in n and (out / n).exists())


def earlier_outputs(out: Path) -> set:
    """The files the report.json now in out says it placed there."""
    try:
        data = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    names = set((data.get("manifest") or {}).get("outputs") or {})
    for art in data.get("artifacts") or []:
        path = Path(str(art.get("path", "")))
        if path.parent.resolve() == out.resolve():
            names.add(path.name)
    return names


def discard(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    runs = run_dir.parent
    for parent in (runs, runs.parent):  # leave no empty .convertctl/ behind
        try:
            parent.rmdir()
        except OSError:
            break
