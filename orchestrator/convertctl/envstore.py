"""Local stage environments: one virtualenv per variant, keyed by a content
hash of what defines it (Python version + lock file), as pre-commit keys its
hook environments. A venv is usable only once its marker exists; the marker
is written last and atomically, so a half-built venv is never reused. Two
runs that need the same venv take a file lock, then look again."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from convertctl.catalog import Variant
from convertctl.errors import EnvironmentProblem
from convertctl.lockfile import sources
from convertctl.pipconfig import IndexSettings

# Bump when the way venvs are built changes: the key changes, so old ones
# are rebuilt instead of reused. 2: bytecode compiled at install time.
# 3: hashed locks installed with hash checking.
STORE_FORMAT = 3
MARKER = ".convertctl-ready"


def default_root() -> Path:
    if os.environ.get("CONVERTCTL_HOME"):
        return Path(os.environ["CONVERTCTL_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "convertctl"


def env_key(variant: Variant) -> str:
    """Hash of canonical JSON: same inputs, same key, on any machine."""
    spec = {"format": STORE_FORMAT, "python": variant.python, "lock": variant.lock_digest()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def find_uv() -> str | None:
    try:
        from uv import find_uv_bin  # the uv wheel ships its binary

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


@dataclass
class Env:
    variant: Variant
    path: Path
    created: bool = False
    seconds: float = 0.0

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


class EnvStore:
    def __init__(self, root: Path | None = None, settings: IndexSettings | None = None):
        self.root = root or default_root()
        self.settings = settings or IndexSettings()

    @property
    def envs_dir(self) -> Path:
        return self.root / "envs"

    def path_for(self, variant: Variant) -> Path:
        # The lock's hash, not the variant name, decides identity: variants
        # that share a lock (convert and quantize) share one venv.
        return self.envs_dir / f"py{variant.python}-{env_key(variant)}"

    @contextmanager
    def _locked(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(path) + ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure(self, variant: Variant, say: Callable[[str], None] = lambda _: None) -> Env:
        path = self.path_for(variant)
        if (path / MARKER).is_file():
            return Env(variant, path)
        with self._locked(path):
            if (path / MARKER).is_file():  # another run built it while we waited
                return Env(variant, path)
            started = time.monotonic()
            if path.exists():
                say(f"removing half-built environment {path.name}")
                shutil.rmtree(path)
            try:
                self._build(variant, path, say)
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            marker = {
                "variant": variant.name,
                "stage": variant.stage,
                "python": variant.python,
                "lock": variant.requirements,
                "lock_sha256": variant.lock_digest(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            tmp = path / (MARKER + ".tmp")
            tmp.write_text(json.dumps(marker, indent=2))
            os.replace(tmp, path / MARKER)
            return Env(variant, path, created=True, seconds=time.monotonic() - started)

    def _build(self, variant: Variant, path: Path, say: Callable[[str], None]) -> None:
        env = {**os.environ, **self.settings.env(), "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)  # the host's venv must not leak into the stage's
        log = self.root / "logs" / f"{path.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        # Hash checking: every file installed is one the lock names by its
        # sha256, whichever index, mirror or wheelhouse it came from.
        src = sources(variant.lock_text(), self.settings.find_links, variant.torch_index)
        if src.missing:
            raise EnvironmentProblem(
                f"lock {variant.requirements} pins {', '.join(src.missing)}, which no index has",
                hint="give --wheelhouse DIR holding that file, or set CONVERTCTL_TORCH_INDEX",
            )
        torch = ["--extra-index-url", src.torch_index] if src.torch_index else []
        uv = find_uv()
        if uv:
            args = self.settings.uv_args(constraints=False) + torch
            if torch and "--index-strategy" not in args:
                args += ["--index-strategy", "unsafe-best-match"]
            # --compile-bytecode: stages run with PYTHONDONTWRITEBYTECODE, so
            # without it every stage would compile TensorFlow from source on
            # every run (~6 s of the ~10 s an import takes).
            steps = [
                [uv, "venv", "--quiet", "--python", variant.python, str(path)],
                [
                    uv,
                    "pip",
                    "install",
                    "--require-hashes",
                    "--compile-bytecode",
                    "--python",
                    str(path / "bin" / "python"),
                    "-r",
                    str(variant.lock_path),
                    *args,
                ],
            ]
        else:
            pip = [
                str(path / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--require-hashes",
                "-r",
                str(variant.lock_path),
            ]
            steps = [[f"python{variant.python}", "-m", "venv", str(path)], pip + torch]
        say(f"creating {variant.stage} environment {variant.name} (Python {variant.python})")
        with open(log, "w") as out:
            for cmd in steps:
                out.write("$ " + " ".join(cmd) + "\n")
                out.flush()
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                assert proc.stdout is not None
                for line in proc.stdout:
                    out.write(line)
                    if line.strip():
                        say(line.strip()[:120])
                if proc.wait() != 0:
                    out.flush()
                    tail = "".join(log.read_text().splitlines(keepends=True)[-12:])
                    raise EnvironmentProblem(
                        f"could not create the {variant.name} environment (lock {variant.requirements}):\n{tail}",
                        hint=f"full log: {log}",
                    )

    def entries(self) -> list[dict]:
        rows = []
        if not self.envs_dir.is_dir():
            return rows
        for path in sorted(p for p in self.envs_dir.iterdir() if p.is_dir()):
            marker = path / MARKER
            info = json.loads(marker.read_text()) if marker.is_file() else {}
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            rows.append(
                {
                    "name": path.name,
                    "path": str(path),
                    "ready": marker.is_file(),
                    "variant": info.get("variant", "?"),
                    "created": info.get("created", ""),
                    "size_bytes": size,
                }
            )
        return rows

    def prune(self, keep: set[str], dry_run: bool = False) -> list[str]:
        """Remove environments no current variant maps to, and half-built ones."""
        removed = []
        for row in self.entries():
            if row["name"] in keep and row["ready"]:
                continue
            path = Path(row["path"])
            with self._locked(path):
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
            removed.append(row["name"])
        return removed
