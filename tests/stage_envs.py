"""Test helpers that run small scripts inside convertctl's own local stage
environments (the host test process has no torch and no TFLite): building
the zoo models, and looking inside a .tflite file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from convertctl.config.catalog import load_catalog
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings

HERE = Path(__file__).resolve().parent


def env_python(variant: str) -> Path:
    """The python of a variant's local venv, created if missing."""
    return EnvStore(settings=load_settings()).ensure(load_catalog().get(variant)).python


def run_in(variant: str, script: str, *args, cwd: Path | None = None, timeout: int = 1800) -> str:
    proc = subprocess.run(
        [str(env_python(variant)), str(HERE / script), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} failed in {variant}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def build_zoo(out_dir: Path, *names: str) -> dict:
    """tests/zoo_models.py in the local export venv: {name: facts}, models in out_dir/<name>.pt."""
    export = load_catalog().ladder("local", "export")[0].name
    run_in(export, "zoo_models.py", out_dir, *names)
    return json.loads((out_dir / "zoo.json").read_text())


def tflite_layout(path: Path) -> dict:
    """tests/tflite_layout.py in the litert-torch venv: I/O shapes and where the transposes are."""
    litert = next(v.name for v in load_catalog().variants.values() if v.family == "litert-torch")
    return json.loads(run_in(litert, "tflite_layout.py", path).strip().splitlines()[-1])
