#!/usr/bin/env python3
"""Make every stage lock from its .in file, one way for all of them.

    python images/lock.py                # (re)make every lock catalog.toml names
    python images/lock.py --check        # exit 1 if a lock is out of step with its .in
    python images/lock.py export/requirements-torch2.13-py3.11.txt   # only that lock
    options: --wheelhouse DIR  --online (with --check)  --images DIR (another images/ tree)

Run it with the Python that has convertctl installed (it uses convertctl's
uv and lock reader). For each lock images/<folder>/requirements-X.txt:

    uv pip compile requirements-X.in --generate-hashes --python-version <catalog python>
        <the .in's `# lock-options:`> <torch source> --output-file <a copy of the lock>

The copy of the current lock is uv's preference: its pins stay unless the
.in asks otherwise, so re-locking an unchanged .in changes nothing. The
torch source, for a lock whose variant has a torch_index: that index when it
answers, else the wheelhouse (--wheelhouse, then pip's find-links); the lock
pins torch==X+cpu with the file's hash either way. Index: pip's index-url
(a PyPI mirror) or PyPI; never pip's extra indexes, so every machine writes
the same hashes.

Out of step, for --check: the .in (or the catalog's python / torch_index
for it) changed since the lock was made (the lock records their digest), or
resolving the .in again, offline from uv's cache with the lock as the
preference, gives other pins than the lock holds. Exit 0 in step, 1 out of
step, 3 when it could not re-resolve (say, uv's cache lacks an index page:
run with --online).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from convertctl.store.envstore import find_uv
from convertctl.store.lockfile import (
    DIGEST_PREFIX,
    input_digest,
    local_dirs,
    lock_options,
    read_pins,
    recorded_digest,
)
from convertctl.store.pipconfig import load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent


def locks(images: Path) -> dict:
    """lock path (relative to images/) -> {python, torch_index, variants}, from the catalog."""
    catalog = tomllib.loads((images / "catalog.toml").read_text())
    out: dict = {}
    for name, v in catalog.get("variants", {}).items():
        entry = out.setdefault(v["requirements"], {"python": v["python"], "torch_index": "", "variants": []})
        if entry["python"] != v["python"]:
            sys.exit(f"catalog: variants sharing {v['requirements']} name different pythons")
        entry["torch_index"] = entry["torch_index"] or v.get("torch_index", "")
        entry["variants"].append(name)
    return out


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=10):
            return True
    except OSError:
        return False


def torch_source(info: dict, wheelhouse: list, offline: bool, say) -> list:
    if not info["torch_index"]:
        return []
    dirs = [arg for d in local_dirs(wheelhouse) for arg in ("--find-links", str(d))]
    if offline:  # nothing is fetched: whatever uv's cache and the wheelhouse hold
        return ["--extra-index-url", info["torch_index"], *dirs]
    if reachable(info["torch_index"]):
        return ["--extra-index-url", info["torch_index"]]
    say(f"  {info['torch_index']} does not answer; torch from {' '.join(dirs[1::2]) or 'nowhere'}")
    return dirs


def header(lock: str, info: dict, in_text: str, options: list) -> str:
    lines = [
        f"# Lock for {', '.join(info['variants'])} (Python {info['python']}): do not edit by hand.",
        f"# Made from {Path(lock).with_suffix('.in').name} by `python images/lock.py`.",
        f"# uv pip compile --generate-hashes {' '.join(options)}".rstrip(),
        "# Installed with hash checking (--require-hashes): any source gives the same files or fails.",
    ]
    if info["torch_index"]:
        lines.append(f"# torch: the +cpu build, from {info['torch_index']} or a wheelhouse holding the same file.")
    lines.append(DIGEST_PREFIX + input_digest(in_text, info["python"], info["torch_index"]))
    return "\n".join(lines) + "\n"


def compile_lock(images: Path, lock: str, info: dict, wheelhouse: list, offline: bool, say) -> str:
    """The lock text the .in gives now (raises RuntimeError with uv's message)."""
    lock_path = images / lock
    in_path = lock_path.with_suffix(".in")
    in_text = in_path.read_text()
    options = lock_options(in_text)
    settings = load_settings()
    index = ["--index-url", settings.index_url] if settings.index_url else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / lock_path.name
        if lock_path.is_file():
            out.write_text(lock_path.read_text())  # uv keeps these pins unless the .in disagrees
        cmd = [find_uv() or "uv", "pip", "compile", in_path.name, "--output-file", str(out), "--quiet"]
        cmd += ["--generate-hashes", "--no-header", "--python-version", info["python"], *options, *index]
        cmd += ["--index-strategy", "unsafe-best-match", *torch_source(info, wheelhouse, offline, say)]
        cmd += ["--offline"] if offline else []
        env = {**os.environ, **settings.env(), "UV_PYTHON_DOWNLOADS": "never"}
        for key in ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_CONSTRAINT"):
            env.pop(key, None)  # the same inputs on every machine
        proc = subprocess.run(cmd, cwd=in_path.parent, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip() or proc.stdout.strip())
        return header(lock, info, in_text, options) + out.read_text()


def pinned(text: str) -> set:
    return {(p.name, p.version, p.marker) for p in read_pins(text).values()}


def out_of_step(images: Path, lock: str, info: dict, fresh: str | None) -> list:
    """Why LOCK is out of step with its .in (empty: in step). FRESH: the
    re-resolved text, or None to check the recorded digest only."""
    problems = []
    current = (images / lock).read_text()
    in_text = (images / lock).with_suffix(".in").read_text()
    if recorded_digest(current) != input_digest(in_text, info["python"], info["torch_index"]):
        problems.append("its .in file (or the catalog's python/torch_index for it) changed since it was made")
    if fresh is not None:
        old, new = pinned(current), pinned(fresh)
        for name, version, _ in sorted(new - old):
            problems.append(f"the .in now resolves {name}=={version}")
        for name, version, _ in sorted(old - new):
            problems.append(f"it pins {name}=={version}, which the .in no longer resolves to")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="*", help="lock paths relative to images/ (default: all)")
    parser.add_argument("--check", action="store_true", help="say which locks are out of step; write nothing")
    parser.add_argument("--online", action="store_true", help="with --check: resolve with the index, not uv's cache")
    parser.add_argument("--wheelhouse", action="append", default=[], help="where a +cpu torch lies (repeatable)")
    parser.add_argument("--images", type=Path, default=HERE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    images = args.images.resolve()
    known = locks(images)
    chosen = [str(Path(p).resolve().relative_to(images)) if Path(p).is_absolute() else p for p in args.locks]
    for lock in chosen:
        if lock not in known:
            parser.error(f"{lock}: no catalog variant uses it; known: {', '.join(sorted(known))}")
    wheelhouse = args.wheelhouse + load_settings().find_links
    offline = args.check and not args.online
    stale = unchecked = False
    for lock in chosen or sorted(known):
        info = known[lock]
        if not (images / lock).with_suffix(".in").is_file():
            print(f"{lock}: OUT OF STEP: no {Path(lock).with_suffix('.in').name} beside it")
            stale = True
            continue
        try:
            fresh = compile_lock(images, lock, info, wheelhouse, offline, print)
        except RuntimeError as exc:
            if not args.check:
                print(f"{lock}: could not resolve:\n{exc}")
                return 3
            print(f"{lock}: could not re-resolve {'offline' if offline else ''} (checked the digest only):\n{exc}")
            unchecked, fresh = True, None
        if not args.check:
            changed = not (images / lock).is_file() or (images / lock).read_text() != fresh
            (images / lock).write_text(fresh)
            print(f"{lock}: {'written' if changed else 'unchanged'} ({len(read_pins(fresh))} pins)")
            continue
        problems = out_of_step(images, lock, info, fresh)
        for problem in problems:
            print(f"{lock}: OUT OF STEP: {problem}")
        if problems:
            print(f"{lock}: run `python images/lock.py {lock}`")
        elif fresh is not None:
            print(f"{lock}: in step")
        stale = stale or bool(problems)
    return 1 if stale else 3 if unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
