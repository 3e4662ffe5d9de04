"""The host package never imports torch, tensorflow or onnx: it must import
and answer --help with them made unimportable."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import convertctl

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'tensorflow', 'onnx', 'onnx_tf', 'onnxruntime', 'keras'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code],
        capture_output=True,
        text=True,
        cwd=Path(convertctl.__file__).parent.parent,
    )


def test_every_host_module_imports_without_ml_libraries():
    names = [
        m.name for m in pkgutil.walk_packages(convertctl.__path__, "convertctl.") if not m.name.endswith("__main__")
    ]
    assert "convertctl.runtimes.docker" in names and "convertctl.cli.app" in names
    proc = run_blocked(
        "import importlib\n"
        + "".join(f"importlib.import_module({n!r})\n" for n in names)
        + "print('imported', len(sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported" in proc.stdout


def test_the_blocker_really_blocks():
    proc = run_blocked("import onnx")
    assert proc.returncode != 0 and "blocked for this test: onnx" in proc.stderr


def test_help_works_without_ml_libraries():
    proc = run_blocked("import sys; sys.argv = ['convertctl', '--help']\nfrom convertctl.cli.app import main\nmain()")
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "envs", "images", "report", "example"):
        assert command in proc.stdout
    proc = run_blocked(
        "import sys; sys.argv = ['convertctl', 'run', '--help']\nfrom convertctl.cli.app import main\nmain()"
    )
    assert proc.returncode == 0 and "--quant" in proc.stdout and "--input-shape" in proc.stdout


def test_the_cli_does_not_import_pydantic():
    """Settings and the catalog are checked by schema.py: importing pydantic
    and building the models cost ~90 ms on every command, --help included.
    Nothing of convertctl's may bring it back unnoticed, nor a typer that
    parses options with it (0.29 does: pyproject keeps typer below it): a
    `run` whose options are all parsed and checked, up to the missing model."""
    proc = run_blocked(
        "import atexit, sys\n"
        "atexit.register(lambda: print('loaded:', sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('pydantic', 'pydantic_core'))))\n"
        "sys.argv = ['convertctl', 'run', 'missing.pt', '--input-shape', '1,3,8,8', '--quant', 'fp16', "
        "'--quant', 'int8', '--atol', 'fp16=0.1', '--runtime', 'local', '--int8-float-layers', 'auto']\n"
        "from convertctl.cli.app import main\nmain()"
    )
    assert "missing.pt: no such file" in proc.stderr, proc.stderr
    assert "loaded: []" in proc.stdout
