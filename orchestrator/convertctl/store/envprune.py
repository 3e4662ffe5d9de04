"""`convertctl envs list|prune` over the store's folder: which environments
convertctl made (and which entries it did not), their state and size, and
removing those no catalog variant uses.

Made by convertctl: a real folder (not a link) named py<X.Y>-<16 hex> as
EnvStore.path_for names them, with its ready marker, or with the .lock file
beside it that every build takes before it writes a byte (a half-built
one). Anything else in the folder is not convertctl's: listed as such,
never removed. Sizes are disk usage; uv hard-links installed files from its
cache, so what a removal frees is counted apart (store/diskuse.py)."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.store.diskuse import Tally, human, usage
from convertctl.store.envstore import MARKER, EnvStore, find_uv

NAME = re.compile(r"py\d+\.\d+-[0-9a-f]{16}")


def ours(path: Path) -> bool:
    if path.is_symlink() or not path.is_dir() or not NAME.fullmatch(path.name):
        return False
    marker, lock = path / MARKER, Path(str(path) + ".lock")
    return (marker.is_file() and not marker.is_symlink()) or (lock.is_file() and not lock.is_symlink())


def foreign(store: EnvStore) -> list[str]:
    """Entries of the envs folder convertctl did not make (its .lock files aside)."""
    if not store.envs_dir.is_dir():
        return []
    names = []
    for path in sorted(store.envs_dir.iterdir()):
        lock_of_ours = path.suffix == ".lock" and NAME.fullmatch(path.stem) and not path.is_symlink()
        if not lock_of_ours and not ours(path):
            names.append(path.name)
    return names


def entries(store: EnvStore) -> list[dict]:
    rows: list[dict] = []
    if not store.envs_dir.is_dir():
        return rows
    for path in sorted(p for p in store.envs_dir.iterdir() if ours(p)):
        marker = path / MARKER
        try:
            info = json.loads(marker.read_text()) if marker.is_file() else {}
        except (OSError, ValueError):
            info = {}
        state = store.state(path)
        rows.append(
            {
                "name": path.name,
                "path": str(path),
                "ready": state == "ready",
                "state": state,
                "variant": info.get("variant", "?") if isinstance(info, dict) else "?",
                "created": info.get("created", "") if isinstance(info, dict) else "",
                "size_bytes": usage(path).total,
            }
        )
    return rows


@dataclass
class Pruned:
    rows: list = field(default_factory=list)  # entries() rows of those removed (or that would be)
    size_bytes: int = 0  # their disk usage, each file once
    freed_bytes: int = 0  # what removing them gave back (a dry run: would give back)
    busy: list = field(default_factory=list)  # names left alone: a run is building or using them
    failed: list = field(default_factory=list)  # (name, why) that could not be removed


def prune(store: EnvStore, keep: set[str], dry_run: bool = False) -> Pruned:
    """Remove convertctl's environments not named in keep, and half-built or
    broken ones. Each is judged again under its lock, taken without
    waiting: one being built or used by a run is left alone, never deleted
    from under it."""
    done, tally = Pruned(), Tally()
    for row in entries(store):
        path = Path(row["path"])
        try:
            with store.locked(path, fcntl.LOCK_EX | fcntl.LOCK_NB):
                if row["name"] in keep and (path / MARKER).is_file() and not store.broken(path):
                    continue
                if not ours(path):  # replaced meanwhile
                    continue
                tally.add(path)  # just before it goes (see Tally)
                if not dry_run:
                    shutil.rmtree(path)
        except BlockingIOError:
            done.busy.append(row["name"])
            continue
        except OSError as exc:
            done.failed.append((row["name"], exc.strerror or str(exc)))
            continue
        done.rows.append(row)
    done.size_bytes, done.freed_bytes = tally.usage.total, tally.usage.freed
    return done


def clean_uv_cache(store: EnvStore, dry_run: bool = False, busy: bool = False) -> tuple[str, int]:
    """Remove uv's download cache in the store (only that one: a UV_CACHE_DIR of
    the user's is theirs) with `uv cache clean`, which waits while another uv
    process reads it. (What happened in one line, bytes freed.)"""
    cache = store.uv_cache
    if cache.is_symlink() or not cache.is_dir():
        return f"no uv download cache in {cache}", 0
    size = usage(cache)
    what = f"uv's download cache {cache}, {human(size.total)}"
    if dry_run:
        return f"would remove {what}", size.freed
    if busy:
        return f"left alone (a build is using it): {what}", 0
    uv = find_uv()
    if not uv:
        return f"left alone (uv is missing): {what}", 0
    proc = subprocess.run([uv, "cache", "clean", "--cache-dir", str(cache)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:  # its own words went to the terminal (stderr)
        return f"could not remove {what}: uv cache clean exited with {proc.returncode}", 0
    return f"removed {what}", size.freed
