"""Hashed locks, read on the host (stdlib only).

Each stage lock (images/<folder>/requirements-*.txt) is made from the .in
file beside it by images/lock.py (`uv pip compile --generate-hashes`) and
installed with hash checking, locally and in Docker. So a lock names the
same files on every machine: a package from PyPI, from PyTorch's CPU index
or from a wheelhouse is accepted only if its sha256 is in the lock. This
module reads what a lock pins, the digest of the .in it was made from, and
which files of a wheelhouse a lock can use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

DIGEST_PREFIX = "# input-sha256: "
OPTIONS_PREFIX = "# lock-options:"


@dataclass(frozen=True)
class Pin:
    name: str  # normalized (PEP 503)
    version: str
    hashes: frozenset
    marker: str = ""

    @property
    def local(self) -> bool:
        """A local version (torch==2.13.0+cpu) is on no public index: it
        comes from the variant's torch_index or from a wheelhouse."""
        return "+" in self.version


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> list[str]:
    """Requirement lines with continuations joined and comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            out.append(current.strip())
        current = ""
    if current.strip():
        out.append(current.strip())
    return out


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*(\S+)$")


def read_pins(text: str) -> dict[str, Pin]:
    """name -> Pin for every `name==version [; marker] [--hash=...]` line."""
    pins = {}
    for line in logical_lines(text):
        if line.startswith("-"):
            continue  # an option line (--index-url ...)
        requirement, _, options = line.partition(" --")
        spec, _, marker = requirement.partition(";")
        match = _PIN.match(spec.strip())
        if not match:
            raise ValueError(f"not a pinned requirement: {line[:80]}")
        name, version = normalize(match.group(1)), match.group(2)
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", "--" + options))
        pins[name] = Pin(name, version, hashes, marker.strip())
    return pins


def requirements_in(text: str) -> list[str]:
    """The requirement lines of a .in file (no comments, no options)."""
    return [line for line in logical_lines(text) if not line.startswith("-")]


def lock_options(in_text: str) -> list[str]:
    """uv pip compile options from the .in's `# lock-options:` line."""
    for line in in_text.splitlines():
        if line.startswith(OPTIONS_PREFIX):
            return shlex.split(line[len(OPTIONS_PREFIX) :])
    return []


def input_digest(in_text: str, python: str, torch_index: str = "") -> str:
    """What a lock is made from, as one hash: the .in (its pins and lock
    options) and the catalog's python and torch_index for it."""
    spec = {"in": in_text, "python": python, "torch_index": torch_index}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock_text: str) -> str:
    for line in lock_text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
        if not line.startswith("#"):
            break
    return ""


# -- wheelhouses -------------------------------------------------------------
def local_dirs(find_links: list) -> list[Path]:
    """The find-links entries that are local directories (paths or file: URLs)."""
    out = []
    for entry in find_links:
        path = Path(unquote(urlparse(entry).path)) if entry.startswith("file:") else Path(entry)
        if "://" not in entry.replace("file://", "") and path.is_dir():
            out.append(path)
    return out


def _name_version(filename: str) -> tuple[str, str] | None:
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (normalize(parts[0]), parts[1]) if len(parts) >= 5 else None
    for ext in (".tar.gz", ".zip"):
        if filename.endswith(ext):
            name, _, version = filename[: -len(ext)].rpartition("-")
            return (normalize(name), version) if name else None
    return None


_HASHES: dict = {}


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def wheelhouse_files(pins: dict[str, Pin], dirs: list[Path]) -> dict[str, list[Path]]:
    """pin name -> the files in DIRS the lock accepts for it (name, version
    and sha256 all match). Only these go into a build context."""
    found: dict = {}
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            nv = _name_version(path.name)
            if nv is None:
                continue
            pin = pins.get(nv[0])
            if pin and nv[1] == pin.version and path.is_file() and file_sha256(path) in pin.hashes:
                found.setdefault(pin.name, []).append(path)
    return found


@dataclass
class Sources:
    """Where an install of a lock takes its files from, besides the index."""

    files: list  # wheelhouse files the lock accepts (find-links / build context)
    torch_index: str  # the index for local-version pins no wheelhouse file provides ("" if none needed)
    missing: list  # local-version pins with neither a wheelhouse file nor a torch index


def torch_index_setting(variant_index: str) -> str:
    """CONVERTCTL_TORCH_INDEX overrides the catalog's torch_index (a mirror of PyTorch's CPU index)."""
    return os.environ.get("CONVERTCTL_TORCH_INDEX", "") or variant_index


def sources(lock_text: str, find_links: list, variant_index: str) -> Sources:
    pins = read_pins(lock_text)
    files = wheelhouse_files(pins, local_dirs(find_links))
    local = [p for p in pins.values() if p.local and p.name not in files]
    index = torch_index_setting(variant_index) if local else ""
    missing = [f"{p.name}=={p.version}" for p in local] if local and not index else []
    return Sources([f for paths in files.values() for f in paths], index, missing)
