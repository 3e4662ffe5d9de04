"""The run directory (the stages' shared volume) and the move of finished
artifacts into --out. Stages write only into the run directory; --out is
touched only when a run has passed, as one set (see promote), so a failed or
interrupted run never damages what an earlier run left there, and a passed
one never leaves an earlier run's files looking current.

A run directory is private (0700) and locked by its run (flock on .lock,
released by the kernel however the run ends), so a later run can tell a
run that is still going from one that was killed."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from convertctl.errors import ConversionError, ConvertError, MachineProblem, UsageError
from convertctl.store import safefs

RUNS = Path(".convertctl") / "runs"
SCRATCH = ".stage-home"  # a local stage's home, caches and temp files: the stage's own, never read by the host
MARKER = ".convertctl-run"  # written when convertctl makes a run directory: only such folders are ever removed
LOCK = ".lock"
KILLED = ".killed"
OUT_LOCK = Path(".convertctl") / "out.lock"  # held by the run placing its files in OUT
_held: dict = {}  # run dir -> open lock file, for as long as this process runs it
PREVIOUS = Path(".convertctl") / "previous"


def create_run_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    run = out.resolve() / RUNS / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    try:
        run.mkdir(parents=True, mode=0o700)
        run.chmod(0o700)  # whatever the umask: only the owner (and a stage user it is given to) may look
        (run / MARKER).write_text(json.dumps({"token": uuid.uuid4().hex, "pid": os.getpid()}))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    hold(run)
    return run


def marker(run: Path) -> str:
    """The token in a run directory's marker, or '' when the folder is not
    one convertctl made where it makes them (OUT/.convertctl/runs/NAME),
    or is a link."""
    try:
        if run.is_symlink() or not run.is_dir() or run.parent.parts[-2:] != RUNS.parts:
            return ""
        data = json.loads(safefs.read_text(run, MARKER))
        token = data.get("token") if isinstance(data, dict) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    return token if isinstance(token, str) else ""


def hold(run: Path) -> None:
    """Lock the run directory for this process's lifetime. The lock file is
    made and locked under a name of its own, then renamed into place: a
    concurrent run never sees a .lock not yet locked and takes the live run
    for a killed one (it did, between this open and its flock)."""
    tmp = run / f"{LOCK}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    handle = open(tmp, "x+")
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    handle.flush()
    os.replace(tmp, run / LOCK)
    _held[str(run)] = handle


@contextmanager
def out_lock(out: Path, say: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold OUT for one run at a time: concurrent runs on one --out take
    turns placing their files (each then sees the folder the other left),
    saying whom they wait for. The lock file goes when its run is done; a
    run that locked a file since removed (by the run before it) tries again."""
    path = out / OUT_LOCK
    told = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+")
        except FileNotFoundError:  # .convertctl/ removed by the run before, just now
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                handle.seek(0)
                owner = handle.read().strip() or "?"
                say(f"waiting for another convertctl run writing to {out} (pid {owner})")
                told = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()  # the run before removed it as it finished: lock the one there now
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        try:
            path.unlink()  # while still held: a waiter that wakes on it sees it gone and retries
            path.parent.rmdir()  # leave no empty .convertctl/ behind
        except OSError:
            pass
        handle.close()


def release(run: Path) -> None:
    handle = _held.pop(str(run), None)
    if handle is not None:
        handle.close()


def live(run: Path) -> bool:
    """Whether some process still holds the run directory's lock."""
    if str(run) in _held:
        return True
    try:
        with open(run / LOCK) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except OSError:
        return False


def killed_runs(out: Path) -> list[str]:
    """Run directories whose run was killed (lock free, no report written),
    each told once: its lock is renamed so the next run does not say it again."""
    runs = out.resolve() / RUNS
    notices: list[str] = []
    if not runs.is_dir():
        return notices
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        if not (run / LOCK).is_file() or (run / "report.json").is_file() or live(run):
            continue
        try:
            owner = json.loads((run / LOCK).read_text() or "{}")
            os.replace(run / LOCK, run / KILLED)
        except (OSError, ValueError):
            continue
        notices.append(
            f"an earlier run (pid {owner.get('pid', '?')}, started {owner.get('started', '?')}) was killed "
            f"before it finished; what it made is kept in {run}"
        )
    return notices


def left_unsafe(run: Path) -> str:
    """What a stage left in the run directory that the host must never
    follow (a symbolic link, a FIFO, a device), in words; '' when nothing.
    A local stage's scratch home is the stage's own and never read."""
    try:
        safefs.walk_files(run, skip=(SCRATCH,))
    except safefs.Unsafe as exc:
        return f"the stage left {exc.strerror}"
    except OSError:
        return ""
    return ""


def grant(run: Path, work: str, uid: int, gid: int) -> None:
    """Give the run directory and the folders down to WORK to the stage
    user (a container's unprivileged uid when convertctl runs as root), so
    the stage can write there without anything being world-writable."""
    if os.getuid() != 0:
        return
    folders = [run]
    for part in Path(safefs.rel(work, "a step folder")).parts:
        folders.append(folders[-1] / part)
    for folder in folders:
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):  # a link a stage left: never chown through it
            raise safefs.Unsafe(f"{folder} is not a folder; refused", folder)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(folder, uid, gid, follow_symlinks=False)


# Every run writes these three; an earlier run's copies go aside with its files.
REPORTS = ("report.json", "report.md", "report.html")


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
            dest = out / name
            if dest.is_symlink() or (dest.exists() and dest.is_dir() != (safefs.kind(run_dir, rel) == "dir")):
                kind = "a link" if dest.is_symlink() else "a folder" if dest.is_dir() else "a file"
                raise UsageError(f"--out {out}: {name} is {kind} there, where this run would put its own; move it")
            tmp = out / f".{name}.{os.getpid()}.convertctl-tmp"
            _remove(tmp)
            staged.append((tmp, name))
            safefs.copy_out(run_dir, rel, tmp)  # no link a stage left is followed
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    if stale:
        assert aside is not None, "stale files need a place to go"
        aside.mkdir(parents=True, exist_ok=True)
        for name in REPORTS:  # the earlier report goes with the files it described
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
    not write; the reports are always replaced."""
    keep = made | set(REPORTS)
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
    """Remove a finished run's directory. Its lock is held until the folder
    is gone: released first, a concurrent run could find the lock free and
    report.json already deleted, and tell the user this run was killed."""
    shutil.rmtree(run_dir, ignore_errors=True)
    release(run_dir)
    runs = run_dir.parent
    if runs.parts[-2:] != RUNS.parts:
        return
    for parent in (runs, runs.parent):  # leave no empty .convertctl/ behind
        try:
            parent.rmdir()
        except OSError:
            break


# OS errors that mean the machine (disk, quota, limits, permissions), not the model.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOMEM: "out of memory",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files on the system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}


def os_error(exc: BaseException, where: str | Path | None = None) -> BaseException:
    """An OSError as a ConvertError with an exit code and words (a full disk
    is exit 5, not an internal error); anything else unchanged. ``where``
    names the place when the error does not (numpy's writers do not)."""
    if not isinstance(exc, OSError) or isinstance(exc, ConvertError):
        return exc
    if isinstance(exc, safefs.Unsafe):  # a stage left a link, or a name leaves its folder
        return ConversionError(exc.strerror or str(exc))
    where = f" ({exc.filename})" if exc.filename else f" (in {where})" if where else ""
    if exc.errno in ENVIRONMENT_ERRNOS:
        hint = "free some space there and run again" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return MachineProblem(f"{ENVIRONMENT_ERRNOS[exc.errno]}{where}", hint=hint)
    return ConversionError(f"{exc.strerror or exc}{where}")
