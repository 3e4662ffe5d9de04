"""Failed run directories: kept where they failed (OUT/.convertctl/runs/...)
so the user can look inside, remembered in the user cache directory so that
`convertctl envs list` can count them and `convertctl runs prune` can remove
the old ones wherever they are."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from convertctl.store import rundir, safefs
from convertctl.store.cache import cache_root

DEFAULT_AGE = "7d"


def registry() -> Path:
    return cache_root() / "failed-runs"


def _record(run_dir: Path) -> Path:
    return registry() / (hashlib.sha256(str(run_dir).encode()).hexdigest()[:20] + ".json")


def remember(run_dir: Path) -> None:
    """Note a failed run's directory with its marker's token (a note that
    cannot be written costs only the listing, never the run)."""
    note = {"path": str(run_dir), "token": rundir.marker(run_dir), "created": time.time()}
    try:
        registry().mkdir(parents=True, exist_ok=True)
        _record(run_dir).write_text(json.dumps(note))
    except OSError:
        pass


def _failed(run_dir: Path) -> bool:
    """A kept run that did not pass: its report says failed, or it has none
    (killed). Runs kept with --keep-run that passed are the user's to keep."""
    try:
        return json.loads(safefs.read_text(run_dir, "report.json")).get("status") != "passed"
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return True


def failed_runs(outs: tuple = ()) -> list[dict]:
    """Failed run directories known to the registry, plus those under each
    of outs/.convertctl/runs: path, age in seconds, size."""
    now, rows, seen = time.time(), [], set()
    candidates = []
    if registry().is_dir():
        for note in sorted(registry().glob("*.json")):
            try:
                data = json.loads(note.read_text())
                path, token = Path(data["path"]), data.get("token")
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                note.unlink(missing_ok=True)
                continue
            # A registry is a file like any other: it names a folder to delete
            # only if that folder is a run directory convertctl made, the same one.
            if not token or rundir.marker(path) != token:
                note.unlink(missing_ok=True)  # removed by hand, or not ours: forget it
                continue
            candidates.append(path)
    for out in outs:
        runs = Path(out).resolve() / rundir.RUNS
        if runs.is_dir() and not runs.is_symlink():
            candidates += sorted(p for p in runs.iterdir() if rundir.marker(p))
    for path in candidates:
        if path in seen or not _failed(path):
            continue
        seen.add(path)
        size = folder_size(path)
        rows.append({"path": str(path), "age_seconds": now - path.stat().st_mtime, "size_bytes": size})
    return rows


def folder_size(path: Path) -> int:
    """Bytes of the regular files below path, links not followed."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def prune(older_than: float, outs: tuple = (), dry_run: bool = False) -> list[dict]:
    removed = []
    for row in failed_runs(outs):
        if row["age_seconds"] > older_than:
            if not dry_run and rundir.marker(Path(row["path"])):  # still ours, as listed a moment ago
                rundir.discard(Path(row["path"]))
                _record(Path(row["path"])).unlink(missing_ok=True)
            removed.append(row)
    return removed


def summary() -> str:
    rows = failed_runs()
    size = sum(r["size_bytes"] for r in rows)
    line = f"failed run directories: {len(rows)}, {size / 1e6:.1f} MB"
    if rows:
        line += f" (`convertctl runs prune --older-than {DEFAULT_AGE}` removes the older ones)"
    return line
