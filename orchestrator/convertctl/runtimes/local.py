"""Local runtime: each stage runs as a subprocess of a venv from the store."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from convertctl.catalog import Variant, images_dir
from convertctl.envstore import EnvStore, env_key, find_uv
from convertctl.runtimes.base import (
    LogTail,
    Prepared,
    Say,
    StageRun,
    Step,
    read_result,
    stage_environ,
    write_request,
)


class LocalRuntime:
    name = "local"

    def __init__(self, store: EnvStore):
        self.store = store

    def prepare(self, variants: Iterable[Variant], say: Say) -> list[Prepared]:
        out = []
        for variant in variants:
            env = self.store.ensure(variant, say)
            out.append(Prepared(variant, str(env.path), env.created, env.seconds))
        return out

    def run(self, step: Step, run_dir: Path, say: Say) -> StageRun:
        variant = step.variant
        env = self.store.ensure(variant, say)
        write_request(run_dir, step.work, step.request)
        tail = LogTail(run_dir, step, say)
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(env.python), str(images_dir() / step.script_rel), str(run_dir), step.work],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=stage_environ(),
            cwd=str(run_dir),
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.add(line)
            code = proc.wait()
        except BaseException:  # Ctrl-C: do not leave the stage running
            proc.kill()
            proc.wait()
            raise
        finally:
            lines = tail.close()
        return StageRun(
            variant.stage, variant, code, read_result(run_dir, step.work), time.monotonic() - started, lines
        )

    def identity(self, variant: Variant) -> dict:
        return {"runtime": "local", "venv_key": env_key(variant), "python": variant.python}

    def freeze(self, variant: Variant) -> dict:
        env = self.store.ensure(variant)
        uv = find_uv()  # stage venvs made by uv hold no pip
        cmd = [uv, "pip", "freeze", "--python", str(env.python)] if uv else [str(env.python), "-m", "pip", "freeze"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=stage_environ(), timeout=120)
        return {"path": str(env.path), "pip_freeze": out.stdout.splitlines()}
