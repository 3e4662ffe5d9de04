"""Content hashes: of a file, of a directory tree (canonically: the same
files with the same bytes give the same hash wherever they sit and whatever
order the file system lists them in), and of canonical JSON, as DVC keys its
run cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from convertctl.store import safefs
from convertctl.store.filestate import FileState, stamp

__all__ = ["Hasher", "canonical", "sha256_file", "sha256_json", "tree_files"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical(data) -> bytes:
    """One byte string per value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_json(data) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def tree_files(root: Path) -> list[Path]:
    """Every regular file under root, sorted by relative path (symlinks to
    files count as the file they point to; the stages write none)."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out += [Path(folder) / f for f in files if (Path(folder) / f).is_file()]
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


class Hasher:
    """sha256 of files and trees, each file read once per run: a SavedModel
    feeds one quantize step per mode, and its hash is asked for each time.
    A file is known by its stamp (path, size, inode, mtime, ctime): rewritten,
    it is hashed again.
    With a FileState, the files asked with remember=True (the user's model
    and data, not a run's own arrays) are read once per version, across runs."""

    def __init__(self, state: FileState | None = None):
        self._known: dict = {}
        self.state = state

    def file(self, path: Path, remember: bool = False) -> str:
        key = stamp(path)
        if key not in self._known:
            state = self.state if remember else None
            digest = state.get(path, "sha256") if state else None
            if not isinstance(digest, str):
                digest = sha256_file(path)
                if state:
                    state.put(path, "sha256", digest)
            self._known[key] = digest
        return self._known[key]

    def seed(self, path: Path, digest: str) -> None:
        """A digest computed while the file was written (restored from the cache)."""
        self._known[stamp(path)] = digest

    def tree(self, root: Path, remember: bool = False) -> str:
        """A directory: the hash of its sorted (relative path, file hash) list."""
        return sha256_json([[p.relative_to(root).as_posix(), self.file(p, remember)] for p in tree_files(root)])

    def path(self, path: Path, remember: bool = False) -> str:
        return self.tree(path, remember) if path.is_dir() else self.file(path, remember)

    def inside(self, root: Path, name: str) -> str:
        """A file or folder a stage wrote (name relative to root): checked to
        stay inside root and to be no link or special file, then hashed."""
        name = safefs.rel(name, "an output")
        if safefs.kind(root, name) == "dir":
            files = sorted(safefs.walk_files(root, name))
            return sha256_json([[f[len(name) + 1 :], self.file(root / f)] for f in files])
        return self.file(root / name)
