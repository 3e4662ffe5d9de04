"""`pip freeze` of an environment, asked once per version of it: the
manifest records it for every step, and asking costs a process (a local
venv: ~0.15 s) or a container (an image: ~1 s) each time.

A stage image is immutable, its ID is its content: the answer is kept by
that ID. A venv changes only when its site-packages folder does (every
install, upgrade or removal adds or removes entries there, which changes
the folder's mtime) or when it is rebuilt (a new marker): the answer is kept
next to it with both stamps. A missing or damaged memo only costs asking."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from convertctl.store.filestate import write_quietly


def remembered(memo: Path, stamp, ask: Callable[[], list[str] | None]) -> list[str] | None:
    """The freeze kept in memo for stamp, else ask() (None: could not tell,
    nothing kept)."""
    try:
        data = json.loads(memo.read_text())
        if data.get("stamp") == stamp and isinstance(data.get("pip_freeze"), list):
            return data["pip_freeze"]
    except (OSError, ValueError, AttributeError):
        pass
    lines = ask()
    if lines is not None:
        write_quietly(memo, json.dumps({"stamp": stamp, "pip_freeze": lines}))
    return lines


def venv_stamp(path: Path, marker: str) -> list:
    """What changes when a venv's packages do: its marker, its site-packages."""
    sites = sorted(path.glob("lib/python*/site-packages")) + sorted(path.glob("Lib/site-packages"))
    return [os.stat(p).st_mtime_ns for p in [path / marker, *sites]]
