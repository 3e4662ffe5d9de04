"""Local runtime: each stage in its variant's virtualenv, as a child process
in its own process group that dies with convertctl (procs.py). The stage's
HOME, caches and temp files point into the run directory: a stage writes
nothing on the host outside it (onnxruntime, for one, writes telemetry ids
under ~/.cache/Microsoft otherwise)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from convertctl.config import runtimes
from convertctl.config.catalog import Variant, images_dir
from convertctl.runtimes.base import (
    LogTail,
    Prepared,
    Runtime,
    Say,
    StageRun,
    Step,
    read_result,
    stage_environ,
    write_request,
)
from convertctl.runtimes.freezes import remembered, venv_stamp
from convertctl.store import procs, safefs
from convertctl.store.envstore import MARKER, EnvStore, env_key, find_uv
from convertctl.store.rundir import SCRATCH

FREEZE_MEMO = ".convertctl-freeze.json"  # in the venv: it goes when the venv does
PYCACHE = ".pycache"  # in the venv: the stages' bytecode (see process_environ)


def scratch_environ(run_dir: Path) -> dict:
    dirs = {
        "HOME": SCRATCH,
        "XDG_CACHE_HOME": f"{SCRATCH}/.cache",
        "XDG_CONFIG_HOME": f"{SCRATCH}/.config",
        "XDG_DATA_HOME": f"{SCRATCH}/.local/share",
        "XDG_STATE_HOME": f"{SCRATCH}/.local/state",
        "TMPDIR": f"{SCRATCH}/tmp",
        "MPLCONFIGDIR": f"{SCRATCH}/.config/matplotlib",
        "KERAS_HOME": f"{SCRATCH}/.keras",
        "TORCH_HOME": f"{SCRATCH}/.cache/torch",
    }
    # An earlier stage may have left links in its scratch home: made without following any.
    return {k: str(safefs.make_dirs(run_dir, v)) for k, v in dirs.items()}


def venv_environ(venv: Path) -> dict:
    """The venv's bin first on PATH, as activating it does (and as the images'
    PATH has /opt/venv/bin): converters run their tools as commands (onnx2tf
    runs `onnxsim`, and without it silently skips simplifying)."""
    path = stage_environ().get("PATH", os.defpath)
    return {"PATH": str(venv / "bin") + os.pathsep + path}


def process_environ(venv: Path, run_dir: Path) -> dict:
    """What a stage process in venv gets. Bytecode: compiled on first import
    into the venv's own folder (PYTHONPYCACHEPREFIX), not for every file at
    install time. A stage imports a fraction of what its venv holds (3,053
    of TensorFlow's env's 7,878 files, measured), so the first run pays ~14 s
    of compiling instead of the 34 s an install-time compile took (and 67 MB
    instead of 168 MB; bench/first_run.py); Python writes each .pyc by an
    atomic rename, so concurrent stages are safe, and the venv's own files
    (and so its freeze stamp) never change. It goes with the venv."""
    env = {**stage_environ(), **scratch_environ(run_dir), **venv_environ(venv)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(venv / PYCACHE)
    return env


class LocalRuntime(Runtime):
    name = "local"
    sandboxed = runtimes.BY_NAME[name].sandboxed

    def __init__(self, store: EnvStore):
        super().__init__()
        self.store = store
        stopped = procs.reap_orphans()  # left by a convertctl killed with its guard
        if stopped:
            self.notices.append(f"stopped {stopped} stage process(es) left running by a convertctl that was killed")

    @classmethod
    def create(cls, settings, say: Say, options: dict, flag: str = "") -> LocalRuntime:
        return cls(EnvStore(settings=settings))

    def prepare(self, variants: Iterable[Variant], say: Say) -> list[Prepared]:
        out = []
        for variant in variants:
            env = self.store.ensure(variant, say)
            out.append(Prepared(variant, str(env.path), env.created, env.seconds))
        return out

    def preflight(self, variants: Iterable[Variant]) -> None:
        """Raise EnvironmentProblem now for a variant whose environment is
        not built and whose Python is missing here."""
        for variant in variants:
            path = self.store.path_for(variant)
            if not ((path / MARKER).is_file() and not self.store.broken(path)):
                self.store.check_python(variant)

    def run(self, step: Step, run_dir: Path, say: Say) -> StageRun:
        variant = step.variant
        env = self.store.ensure(variant, say)
        write_request(run_dir, step.work, step.request)
        tail = LogTail(run_dir, step, say)
        started = time.monotonic()
        with self.store.using(env):  # `envs prune` leaves an environment in use alone
            proc = procs.start(
                [str(env.python), str(images_dir() / step.script_rel), str(run_dir), step.work],
                stdout=procs.PIPE,
                stderr=procs.STDOUT,
                text=True,
                env=process_environ(env.path, run_dir),
                cwd=str(run_dir),
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.add(line)
                code, peak = procs.finish_measured(proc)
            except BaseException:  # Ctrl-C: do not leave the stage (or its children) running
                procs.stop(proc)
                raise
            finally:
                lines = tail.close()
        return StageRun(
            variant.stage, variant, code, read_result(run_dir, step.work), time.monotonic() - started, lines, peak
        )

    def identity(self, variant: Variant) -> dict:
        return {"runtime": "local", "venv_key": env_key(variant), "python": variant.python}

    def freeze(self, variant: Variant) -> dict:
        env = self.store.ensure(variant)

        def ask() -> list[str] | None:
            uv = find_uv()  # stage venvs made by uv hold no pip
            cmd = [uv, "pip", "freeze", "--python", str(env.python)] if uv else [str(env.python), "-m", "pip", "freeze"]
            # A query: uv would otherwise cache interpreter facts under the user's home.
            environ = {**stage_environ(), "UV_NO_CACHE": "1"}
            out = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=120)
            return out.stdout.splitlines() if out.returncode == 0 else None

        lines = remembered(env.path / FREEZE_MEMO, venv_stamp(env.path, MARKER), ask)
        return {"path": str(env.path), "pip_freeze": lines or []}
