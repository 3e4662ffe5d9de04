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

from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem, MachineProblem, machine_sign
from convertctl.store import procs
from convertctl.store.buildprogress import BuildProgress
from convertctl.store.lockfile import sources
from convertctl.store.pipconfig import IndexSettings

# Bump when the way venvs are built changes: the key changes, so old ones
# are rebuilt instead of reused. 2: bytecode compiled at install time.
# 3: hashed locks installed with hash checking. (Not bumped when install-time
# bytecode went: a venv made either way runs the same, so old ones stay good.)
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
        self._healthy: set = set()  # venvs whose interpreter ran, in this process
        self._pythons: dict = {}  # major.minor -> (interpreter, why not)

    @property
    def envs_dir(self) -> Path:
        return self.root / "envs"

    @property
    def uv_cache(self) -> Path:
        """uv's download cache, unless UV_CACHE_DIR names the user's own."""
        return self.root / "uv-cache"

    def path_for(self, variant: Variant) -> Path:
        # The lock's hash, not the variant name, decides identity: variants
        # that share a lock (convert and quantize) share one venv.
        return self.envs_dir / f"py{variant.python}-{env_key(variant)}"

    @contextmanager
    def locked(self, path: Path, mode: int = fcntl.LOCK_EX):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(path) + ".lock", "a") as handle:
            fcntl.flock(handle, mode)  # LOCK_NB in mode: BlockingIOError when busy
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def using(self, env: Env):
        """Hold a shared lock while a stage runs in env: a build or a prune
        (exclusive) waits or steps aside. The env is checked again under the
        lock, since a prune may have run between ensure() and here."""
        while True:
            with self.locked(env.path, fcntl.LOCK_SH):
                if (env.path / MARKER).is_file():
                    yield env
                    return
            self.ensure(env.variant)

    def broken(self, path: Path) -> str:
        """'' when the venv's interpreter runs, else why not (its base
        Python was removed or upgraded away, the venv was moved...)."""
        if path in self._healthy:
            return ""
        python = path / "bin" / "python"
        try:
            proc = subprocess.run([str(python), "-I", "-S", "-c", "pass"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{python} does not run ({getattr(exc, 'strerror', None) or exc})"
        if proc.returncode != 0:
            said = proc.stderr.decode(errors="replace").strip().splitlines()
            return f"{python} exits with code {proc.returncode}" + (f": {said[-1]}" if said else "")
        self._healthy.add(path)
        return ""

    def ensure(self, variant: Variant, say: Callable[[str], None] = lambda _: None) -> Env:
        path = self.path_for(variant)
        if (path / MARKER).is_file() and not self.broken(path):
            return Env(variant, path)
        with self.locked(path):
            broken = ""
            if (path / MARKER).is_file():  # another run built it while we waited
                broken = self.broken(path)
                if not broken:
                    return Env(variant, path)
            started = time.monotonic()
            if path.exists():
                why = f"broken environment {path.name}: {broken}" if broken else f"half-built environment {path.name}"
                say(f"removing {why}")
                shutil.rmtree(path)
            self.check_python(variant)
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
            # Nothing compiled at install time (stages compile into .pycache): uv 0.4
            # (the lowest allowed) leaves the .pyc of the venv's _virtualenv.py beside it.
            for pyc in path.glob("lib/python*/site-packages/__pycache__/_virtualenv.*.pyc"):
                pyc.unlink()
            tmp = path / (MARKER + ".tmp")
            tmp.write_text(json.dumps(marker, indent=2))
            os.replace(tmp, path / MARKER)
            return Env(variant, path, created=True, seconds=time.monotonic() - started)

    def find_python(self, version: str) -> tuple[str, str]:
        """(interpreter path, '') for a Python major.minor, or ('', why not)."""
        if version in self._pythons:
            return self._pythons[version]
        uv = find_uv()
        # A query: no downloads, and no cache written under the user's home.
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CACHE": "1"}
        cmd = [uv, "python", "find", version] if uv else [f"python{version}", "-c", "import sys; print(sys.executable)"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
            out, why = proc.stdout.strip(), " ".join(proc.stderr.split())
            found = (
                (out.splitlines()[-1], "") if proc.returncode == 0 and out else ("", why or f"exit {proc.returncode}")
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            found = ("", str(exc))
        self._pythons[version] = found
        return found

    def check_python(self, variant: Variant) -> None:
        """A clear EnvironmentProblem when the variant's Python is missing,
        naming what to use instead, rather than an installer's stack of errors."""
        _, why = self.find_python(variant.python)
        if not why:
            return
        from convertctl.config.catalog import load_catalog

        others = [
            f"{v.name} (Python {v.python})"
            for v in load_catalog().variants.values()
            if v.stage == variant.stage and v.python != variant.python and not self.find_python(v.python)[1]
        ]
        instead = f"use {' or '.join(others)}, " if others else ""
        raise EnvironmentProblem(
            f"{variant.name} needs Python {variant.python}, which is not installed here: {instead}"
            f"or --runtime docker (its image brings its own Python), or install Python {variant.python} "
            f"(e.g. `uv python install {variant.python}`)",
            hint=f"looking for Python {variant.python}: {why[:400]}",
        )

    def _build(self, variant: Variant, path: Path, say: Callable[[str], None]) -> None:
        env = {**os.environ, **self.settings.env(), "UV_PYTHON_DOWNLOADS": "never"}
        # uv's download cache lives in the store (unless the user points it elsewhere): nothing
        # is written outside it, and a venv made again from the same lock installs offline.
        env.setdefault("UV_CACHE_DIR", str(self.uv_cache))
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
        # One installer, tested on every lock: uv (a dependency of convertctl). pip
        # refused locks uv installs (a pin whose Requires-Python has an upper bound
        # uv ignores), and a rebuild retried with it failed the same way every run.
        uv = find_uv()
        if not uv:
            raise EnvironmentProblem(
                f"uv is missing, and convertctl builds its local environments with it ({variant.name})",
                hint="pip install uv (convertctl depends on it; reinstall convertctl)",
            )
        args = self.settings.uv_args(constraints=False) + torch
        if torch and "--index-strategy" not in args:
            args += ["--index-strategy", "unsafe-best-match"]
        # No --compile-bytecode: it compiled every file of torch and TensorFlow
        # (75 s of the 100 s a cold first run spent building venvs, and 350 MB);
        # stages compile what they import, once, into the venv's .pycache
        # (runtimes/local.py process_environ).
        # --no-deps (as the images install it): a lock holds every pin, and
        # may leave out what a package declares but does not need (onnx2tf's
        # and tf-keras's `tensorflow`, where tensorflow-cpu stands in).
        steps = [
            [uv, "venv", "--quiet", "--python", variant.python, str(path)],
            [
                uv,
                "pip",
                "install",
                "--require-hashes",
                "--no-deps",
                "--python",
                str(path / "bin" / "python"),
                "-r",
                str(variant.lock_path),
                *args,
            ],
        ]
        say(f"creating {variant.stage} environment {variant.name} (Python {variant.python})")
        names = ("making the virtualenv", f"installing {Path(variant.requirements).name}")
        with open(log, "w") as out, BuildProgress(say, variant.name, len(steps)) as progress:
            for k, cmd in enumerate(steps, 1):
                progress.step(k, names[k - 1] if k <= len(names) else "")
                out.write("$ " + " ".join(cmd) + "\n")
                out.flush()
                proc = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                try:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        out.write(line)
                        progress.line(line)  # the installer's words as a step, a time and a package
                    code = procs.finish(proc)
                except BaseException:  # Ctrl-C: no installer left writing into the store
                    procs.stop(proc)
                    raise
                if code != 0:
                    out.flush()
                    lines = log.read_text().splitlines(keepends=True)[-12:]
                    tail = "".join(lines)
                    full = machine_sign(lines)
                    if full:  # every other rung's environment would meet it too: the run ends (exit 5)
                        raise MachineProblem(
                            f"could not create the {variant.name} environment in {path.parent}: {full}",
                            hint=f"free some space there and run again (full log: {log})",
                        )
                    raise EnvironmentProblem(
                        f"could not create the {variant.name} environment (lock {variant.requirements}):\n{tail}",
                        hint=f"full log: {log}",
                    )

    def state(self, path: Path) -> str:
        """ready | building | half-built | broken."""
        ready = (path / MARKER).is_file()
        try:
            with self.locked(path, fcntl.LOCK_SH | fcntl.LOCK_NB):
                pass
        except BlockingIOError:  # someone holds it exclusively: building (or pruning) it
            return "ready" if ready else "building"
        if not ready:
            return "half-built"
        return "broken" if self.broken(path) else "ready"
