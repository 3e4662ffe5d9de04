"""The content-addressed stage cache: a step whose code, environment,
parameters and input bytes were seen before gets its outputs back instead of
running again.

A step's key is the sha256 of the canonical JSON of those four (DVC's run
cache works so). An entry is a folder STAGES/<key>/ holding the step's WORK
files and entry.json (what the step said, how long it took, the hash of every
file), built in a temporary folder and renamed into place, so a reader sees a
whole entry or none. entry.json is written last, like pre-commit's marker.
Every file is checked while it is copied back: against its recorded hash,
or, when it is the very file stored (same size, inode, mtime and ctime, the
test git's index and DVC's state make; any write changes the ctime), by that.
A corrupt or partial entry is a miss (and is removed), never a crash, never
a wrong answer.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from convertctl.store import safefs
from convertctl.store.digests import Hasher, sha256_json, tree_files
from convertctl.store.envstore import default_root
from convertctl.store.filestate import FileState, copy_checked, copy_hashed, file_stat
from convertctl.store.memo import Memo

# Bump when what an entry holds or how keys are made changes: old entries
# then simply never match again (and age out through `cache prune`).
CACHE_FORMAT = 1
ENTRY = "entry.json"
# WORK files that describe one execution rather than what it made; the
# request is written afresh by each run.
NOT_STORED = {"request.json"}
TMP_MAX_AGE = 24 * 3600  # leftovers of killed writers


def cache_root() -> Path:
    """$CONVERTCTL_CACHE_DIR, else <user cache dir>/convertctl/cache."""
    override = os.environ.get("CONVERTCTL_CACHE_DIR")
    return Path(override) if override else default_root() / "cache"


def disabled_by_env() -> bool:
    return os.environ.get("CONVERTCTL_NO_CACHE", "").strip().lower() in ("1", "true", "yes", "on")


def open_cache(no_cache: bool = False) -> tuple[StageCache | None, str]:
    """(the cache a run uses, a notice): None with --no-cache /
    CONVERTCTL_NO_CACHE=1, and None with a notice saying why when the
    cache folder cannot be written (read-only, not a folder, no room): a
    cache is a saving, never a reason for a run to fail."""
    if no_cache or disabled_by_env():
        return None, ""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or str(exc)
        return None, f"the stage cache {root} cannot be written ({why}): this run neither reuses nor stores steps"
    return StageCache(root), ""


@dataclass
class Hit:
    entry: dict
    seconds: float  # time taken to restore


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def stages_dir(self) -> Path:
        return self.root / "stages"

    def entry_dir(self, key: str) -> Path:
        return self.stages_dir / key

    @property
    def memo(self) -> Memo:
        """What the host computed from files (comparisons, generated inputs)."""
        return Memo(self.root / "memo")

    def file_state(self) -> FileState:
        """What is known of the user's files (hash, CRC check) while unchanged."""
        return FileState(self.root / "files.json")

    # -- read -------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        """The entry's description if it looks whole, else None."""
        try:
            entry = json.loads((self.entry_dir(key) / ENTRY).read_text())
        except (OSError, ValueError):
            return None
        ok = (
            isinstance(entry, dict)
            and entry.get("format") == CACHE_FORMAT
            and entry.get("key") == key
            and isinstance(entry.get("files"), dict)
            and isinstance(entry.get("result"), dict)
        )
        return entry if ok else None

    def restore(self, key: str, dest: Path | str, hasher: Hasher | None = None, root: Path | None = None) -> Hit | None:
        """Copy the entry's files into dest (with root: dest is a folder name
        under root, every folder on the way checked to be no link), each
        checked against its hash. None (and the entry removed, so the next
        run rebuilds it) when anything is missing or differs."""
        if root is None:
            root, prefix = Path(dest), ""
            root.mkdir(parents=True, exist_ok=True)
        else:
            prefix = safefs.rel(str(dest), "a step folder") + "/"
        started = time.monotonic()
        entry = self.get(key)
        if entry is None:
            if self.entry_dir(key).exists():
                self.discard(key)
            return None
        files = self.entry_dir(key) / "files"
        written: list = []
        try:
            for name, facts in sorted(entry["files"].items()):
                # An entry is a file like any other: its names stay inside the step's folder,
                # and nothing is read or written through a link.
                name = safefs.rel(name, "a cache entry's file")
                if not isinstance(facts, dict) or safefs.kind(files, name) != "file":
                    raise ValueError(f"{name}: not a stored file")
                written.append(name)
                if not copy_checked(files / name, prefix + name, facts, root=root):
                    raise ValueError(f"{name}: content differs from its recorded hash")
                if hasher is not None:
                    hasher.seed(root / (prefix + name), facts["sha256"])
        except (OSError, ValueError, TypeError, KeyError):
            for name in written:  # leave no mix of cached and missing files
                try:
                    safefs.remove_file(root, prefix + name)
                except OSError:
                    pass
            self.discard(key)
            return None
        try:
            os.utime(self.entry_dir(key) / ENTRY)  # last used: what `cache prune --older-than` reads
        except OSError:
            pass
        return Hit(entry, time.monotonic() - started)

    # -- write ------------------------------------------------------------
    def put(self, key: str, work_dir: Path, meta: dict) -> dict | None:
        """Store work_dir's files under key; the entry written, or None when
        it could not be (a full disk or an unreadable file costs the cache
        entry, never the run)."""
        tmp_root = self.root / "tmp"
        staging = tmp_root / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            files = {}
            for rel in safefs.walk_files(work_dir):  # a link a stage left is never stored (Unsafe: no entry)
                if rel in NOT_STORED:
                    continue
                with safefs.open_read(work_dir, rel) as src:
                    digest, size = copy_hashed(src, staging / "files" / rel)
                files[rel] = {"sha256": digest, "size": size, "stat": file_stat(staging / "files" / rel)}
            entry = {
                **meta,
                "format": CACHE_FORMAT,
                "key": key,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": files,
            }
            (staging / ENTRY).write_text(json.dumps(entry, indent=2, sort_keys=True))
            self.stages_dir.mkdir(parents=True, exist_ok=True)
            if self.entry_dir(key).exists():
                if self.get(key) is not None:  # another run stored the same key meanwhile
                    shutil.rmtree(staging, ignore_errors=True)
                    return entry
                self.discard(key)
            os.rename(staging, self.entry_dir(key))
            return entry
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            # Another writer renamed the same key into place between the check and the rename
            # (a folder cannot be renamed over a full one): its entry is as good as ours.
            return self.get(key)

    def discard(self, key: str) -> None:
        """Remove an entry: renamed away first, so no reader sees it half-deleted."""
        path = self.entry_dir(key)
        trash = self.root / "tmp" / f"discard-{key}.{uuid.uuid4().hex[:8]}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, trash)
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    # -- listing and pruning --------------------------------------------------
    def entries(self) -> list[dict]:
        """One row per entry, newest use first: key, stage, variant, mode,
        size, seconds it saves, created, last used (epoch seconds)."""
        rows: list[dict] = []
        if not self.stages_dir.is_dir():
            return rows
        for path in self.stages_dir.iterdir():
            entry = self.get(path.name)
            size = sum(f.stat().st_size for f in tree_files(path)) if path.is_dir() else 0
            try:
                used = (path / ENTRY).stat().st_mtime
            except OSError:
                used = path.stat().st_mtime
            row = {"key": path.name, "size_bytes": size, "last_used": used, "valid": entry is not None}
            if entry is not None:
                row.update({k: entry.get(k) for k in ("stage", "variant", "mode", "work", "seconds", "created")})
            rows.append(row)
        return sorted(rows, key=lambda r: -r["last_used"])

    def prune(self, older_than: float | None = None, dry_run: bool = False) -> list[dict]:
        """Remove entries not used for older_than seconds (None: all), and
        broken ones; also leftovers of interrupted writers."""
        now = time.time()
        removed = []
        for row in self.entries():
            if older_than is None or not row["valid"] or now - row["last_used"] > older_than:
                if not dry_run:
                    self.discard(row["key"])
                removed.append(row)
        for row in self.memo.rows():
            if older_than is None or now - row["last_used"] > older_than:
                if not dry_run:
                    self.memo.remove(row["kind"], row["key"])
                removed.append({**row, "stage": "memo"})
        tmp = self.root / "tmp"
        leftovers = [*(tmp.iterdir() if tmp.is_dir() else []), *self.memo.root.glob("*/*.tmp")]
        for leftover in [] if dry_run else leftovers:  # of killed writers (staging, discards, memos)
            try:
                if now - leftover.stat().st_mtime > TMP_MAX_AGE:
                    if leftover.is_dir():
                        shutil.rmtree(leftover, ignore_errors=True)
                    else:
                        leftover.unlink()
            except OSError:
                pass
        return removed


def step_key(parts: dict) -> str:
    """The cache key of a step: sha256 of the canonical JSON of its code,
    environment, parameters and input hashes (see steps.Steps.run)."""
    return sha256_json({"format": CACHE_FORMAT, **parts})


def parse_age(text: str, flag: str = "--older-than") -> float:
    """'30d', '12h', '90m', '45s' or plain seconds -> seconds; an age is a
    finite number >= 0 (a negative one made every entry "older" than it)."""
    from convertctl.errors import UsageError

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "w": 7 * 86400}
    shown = text
    text = text.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise UsageError(f"{flag} {shown!r}: not an age (e.g. 30d, 12h, 90m)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{flag} {shown!r}: an age is a finite number >= 0 (e.g. 30d, 12h, 90m)")
    return seconds
