"""What is known about a file while it stays unchanged: its sha256, and that
its zip members passed their CRC check. A rerun then reads a large model
once per version, not once per run (a 500 MB model costs ~0.6 s to hash and
as much to CRC-check).

DVC keeps such a state database and git its index: a file is taken to be
unchanged while its path, size, inode, mtime and ctime are. The ctime is the
one a user tool cannot set back, so rewriting a file and restoring its mtime
still shows. One small JSON file in the cache folder, replaced atomically;
two runs writing at once lose one's additions, and a damaged or missing
state only costs reading the files again."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from convertctl.store import safefs

MAX_FILES = 500  # the newest kept: models and data files, not every run's arrays


def file_stat(path: Path) -> list:
    """What changes when a file's bytes do: size, inode, mtime, ctime."""
    st = os.stat(path)
    return [st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def stamp(path: Path) -> str:
    return "|".join(map(str, [os.path.abspath(path), *file_stat(path)]))


def _writer(dst: Path | str, root: Path | None):
    """dst opened for writing: a path, or (with root) a name under root
    written without following any link (a run directory a stage may have shaped)."""
    if root is not None:
        return safefs.open_write(root, str(dst))
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    return open(dst, "wb")


def copy_hashed(src: Path | BinaryIO, dst: Path | str, root: Path | None = None) -> tuple[str, int]:
    """Copy a file (a path, or a file open for reading) to dst, hashing what
    was read: (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") if isinstance(src, (str, Path)) else nullcontext(src) as fin, _writer(dst, root) as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            digest.update(block)
            fout.write(block)
            size += len(block)
    return digest.hexdigest(), size


def copy_checked(src: Path, dst: Path | str, facts: dict, root: Path | None = None) -> bool:
    """Copy a stored file to dst (with root: a name under root); True when it
    is what facts ({sha256, size, stat} recorded when it was stored) say: the
    very file stored (same stat), else read and found to have that hash and
    size. Raises OSError."""
    if facts.get("stat") is not None and facts["stat"] == file_stat(src):
        with open(src, "rb") as fin, _writer(dst, root) as fout:  # untouched since stored: read once
            shutil.copyfileobj(fin, fout, 1 << 20)
        return True
    return copy_hashed(src, dst, root) == (facts.get("sha256"), facts.get("size"))


def write_quietly(path: Path, text: str) -> bool:
    """Write whole or not at all (a temporary name, then renamed); False
    instead of an error: what it keeps only saves work."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


class FileState:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._facts: dict | None = None
        self._changed = False

    def _load(self) -> dict:
        if self._facts is None:
            try:
                data = json.loads(self.path.read_text())
                self._facts = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._facts = {}
        return self._facts

    def get(self, path: Path, fact: str):
        """What is known of path as it is now, or None."""
        try:
            known = self._load().get(stamp(path))
        except OSError:
            return None
        return known.get(fact) if isinstance(known, dict) else None

    def put(self, path: Path, fact: str, value) -> None:
        try:
            key = stamp(path)
        except OSError:
            return
        facts = self._load()
        facts[key] = {**facts.pop(key, {}), fact: value}  # re-inserted: the newest last
        self._changed = True

    def save(self) -> None:
        """Write what was learnt (the newest MAX_FILES files); never raises."""
        if not self._changed or self._facts is None:
            return
        kept = dict(list(self._facts.items())[-MAX_FILES:])
        if write_quietly(self.path, json.dumps(kept)):
            self._changed = False
