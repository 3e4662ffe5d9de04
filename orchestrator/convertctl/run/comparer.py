"""Outputs of two steps compared (checks/validate.py on two npz files of the
run directory), remembered by their bytes, the tolerance and the comparing
code: a rerun whose steps all come from the cache compares (and loads)
nothing again."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from convertctl import lazy
from convertctl.checks import validate
from convertctl.checks.validate import Check
from convertctl.config.tolerance import Tolerance
from convertctl.store import safefs
from convertctl.store.digests import Hasher, sha256_json
from convertctl.store.memo import Memo

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy.numpy


class Comparer:
    def __init__(self, run_dir: Path, hasher: Hasher, memo: Memo | None = None):
        self.run_dir, self.hasher, self.memo = run_dir, hasher, memo

    def compare(self, stage: str, mode, input_set: str, ref_rel: str, got_rel: str, tol: Tolerance) -> Check | None:
        """The check of got against ref (None when either file is missing)."""
        if not (safefs.is_file(self.run_dir, ref_rel) and safefs.is_file(self.run_dir, got_rel)):
            return None
        key = ""
        if self.memo is not None:
            key = sha256_json(
                {
                    "compare": [stage, mode, input_set],
                    "ref": self.hasher.file(self.run_dir / ref_rel),
                    "got": self.hasher.file(self.run_dir / got_rel),
                    "tolerance": asdict(tol),
                    "code": validate.code_hash(),
                }
            )
            known = self.memo.recall("compare", key)
            if known is not None:
                try:
                    return Check(**known)
                except TypeError:  # written by another version of Check
                    pass
        check = validate.compare(stage, mode, input_set, self.outputs(ref_rel) or {}, self.outputs(got_rel) or {}, tol)
        if self.memo is not None:
            self.memo.keep("compare", key, check.__dict__)
        return check

    def outputs(self, rel: str) -> dict | None:
        """An npz of stacked outputs in the run directory, or None."""
        if not safefs.is_file(self.run_dir, rel):
            return None
        with safefs.open_read(self.run_dir, rel) as f, np.load(f, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
