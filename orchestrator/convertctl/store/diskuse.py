"""Disk usage as du counts it (allocated blocks, each inode once), and what
removing the folders would free. The two differ for stage environments:
uv hard-links the files it installs from its cache, so a venv's files are
often also the cache's (and another venv's), and removing the venv frees
only the files no other link holds. Links are never followed."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    total: int  # bytes on disk under the folders
    freed: int  # bytes that removing all of them would give back


class Tally:
    """Folders added one by one (a prune measures each just before it
    removes it): each inode counted once, with the link count it had when
    first seen, so a file two removed folders shared is freed with both."""

    def __init__(self) -> None:
        self._seen: dict = {}  # (device, inode) -> [blocks, links, links seen, is a folder]

    def add(self, *folders: Path) -> Tally:
        for folder in folders:
            try:
                top = os.lstat(folder)
            except OSError:
                continue
            self._count(top)
            if not stat.S_ISDIR(top.st_mode):
                continue
            for dirpath, dirnames, filenames in os.walk(folder):  # never into a linked folder
                for name in dirnames + filenames:
                    try:
                        self._count(os.lstat(os.path.join(dirpath, name)))
                    except OSError:  # removed meanwhile
                        continue
        return self

    def _count(self, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self._seen:
            self._seen[key][2] += 1
        else:
            self._seen[key] = [st.st_blocks * 512, st.st_nlink, 1, stat.S_ISDIR(st.st_mode)]

    @property
    def usage(self) -> Usage:
        total = sum(blocks for blocks, _, _, _ in self._seen.values())
        # A folder's link count counts its subfolders' "..": it goes when its tree goes.
        freed = sum(blocks for blocks, links, found, folder in self._seen.values() if folder or found >= links)
        return Usage(total, freed)


def usage(*folders: Path) -> Usage:
    return Tally().add(*folders).usage


def human(size: float) -> str:
    """1.23 GB, 456 MB, 12 kB: decimal units, as pip and uv print them."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}" if unit == "GB" else f"{size / scale:.0f} {unit}"
    return f"{size:.0f} B"
