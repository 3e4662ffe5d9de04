"""What the host itself computed from bytes, kept beside the stage cache so a
rerun does not compute it again: a comparison of two output files (keyed by
their hashes, the tolerance and the comparing code), seeded synthetic inputs
(keyed by what generates them). With both, a rerun whose every step is cached
never imports numpy (~50 ms, plus generating and writing the arrays).

MEMO/<kind>/<key>.json holds a value, or the facts of MEMO/<kind>/<key>.npz
(sha256, size, stat). Written to a temporary name and renamed; a file is
trusted as the stage cache trusts its entries (same stat, else its hash is
checked); anything missing or damaged is a miss. Listed and pruned with the
stage cache (`convertctl cache list | prune`)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from convertctl.store.digests import Hasher
from convertctl.store.filestate import copy_checked, file_stat, write_quietly


class Memo:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _json(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.json"

    def recall(self, kind: str, key: str) -> dict | None:
        path = self._json(kind, key)
        try:
            value = json.loads(path.read_text())
            os.utime(path)  # last used, for `cache prune --older-than`
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def keep(self, kind: str, key: str, value: dict) -> None:
        write_quietly(self._json(kind, key), json.dumps(value, sort_keys=True))  # else computed again

    def recall_file(self, kind: str, key: str, dst: Path, hasher: Hasher) -> bool:
        """Copy the kept file to dst (its hash seeded in hasher); False on a miss."""
        facts, src = self.recall(kind, key), self.root / kind / f"{key}.npz"
        if not facts or not src.is_file():
            return False
        try:
            if not copy_checked(src, dst, facts):
                dst.unlink()
                return False
        except OSError:
            return False
        hasher.seed(dst, facts["sha256"])
        return True

    def keep_file(self, kind: str, key: str, src: Path, hasher: Hasher) -> None:
        dst = self.root / kind / f"{key}.npz"
        tmp = dst.with_name(f"{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            stat = file_stat(dst)
            self.keep(kind, key, {"sha256": hasher.file(src), "size": stat[0], "stat": stat})
        except OSError:
            tmp.unlink(missing_ok=True)

    # -- listing and pruning (with the stage cache) ------------------------
    def rows(self) -> list[dict]:
        """One row per kept value: key, kind, size (with its file), last used."""
        rows = []
        for path in sorted(self.root.glob("*/*.json")):
            data = path.with_suffix(".npz")
            try:
                size = path.stat().st_size + (data.stat().st_size if data.exists() else 0)
                rows.append(
                    {"key": path.stem, "kind": path.parent.name, "size_bytes": size, "last_used": path.stat().st_mtime}
                )
            except OSError:
                continue
        return rows

    def remove(self, kind: str, key: str) -> None:
        for suffix in (".json", ".npz"):
            (self.root / kind / f"{key}{suffix}").unlink(missing_ok=True)
