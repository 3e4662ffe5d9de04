"""Shared fixtures. Acceptance tests use the real thing (real venvs, real
dockerd, real conversions); unit tests fake only the runtime seam."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The stage cache is off for the suite: a test that means to run a stage
# (to interrupt it, crash it, time it) must not get its outputs from an
# earlier test. The cache's own tests turn it on, each in a folder of its
# own. The cache folder (and the failed-runs registry in it) is a temporary
# one, never the user's.
os.environ.setdefault("CONVERTCTL_NO_CACHE", "1")
if "CONVERTCTL_CACHE_DIR" not in os.environ:
    os.environ["CONVERTCTL_CACHE_DIR"] = tempfile.mkdtemp(prefix="convertctl-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CONVERTCTL_CACHE_DIR"], True)


def convertctl(*args, cwd=None, env=None, check=False, timeout=3600) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    cwd = cwd or os.environ.get("CONVERTCTL_TEST_CWD") or tempfile.gettempdir()  # never litter the checkout
    proc = subprocess.run(
        [sys.executable, "-m", "convertctl", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(proc.stdout[-6000:])
    print(proc.stderr[-3000:], file=sys.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"convertctl {' '.join(map(str, args))} exited {proc.returncode}")
    return proc


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def smallcnn(tmp_path_factory) -> Path:
    """A small CNN built by convertctl itself in the local export env."""
    path = tmp_path_factory.mktemp("models") / "smallcnn.pt"
    convertctl("example", path, "--name", "smallcnn", "--input-shape", "1,3,64,64", "--runtime", "local", check=True)
    return path


def docker_available() -> bool:
    from convertctl.runtimes.docker import connect

    return connect(timeout=5)[0] is not None


requires_docker = pytest.mark.skipif(
    not docker_available() and os.environ.get("CONVERTCTL_REQUIRE_DOCKER") != "1",
    reason="no Docker daemon answers (set CONVERTCTL_REQUIRE_DOCKER=1 to make this an error)",
)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return shutil.which("unshare") is not None and shutil.which("ip") is not None


# In CI (.ci/run sets CONVERTCTL_REQUIRE_RAY=1) a missing Ray fails the Ray tests instead of skipping them.
requires_ray = pytest.mark.skipif(
    not ray_available() and os.environ.get("CONVERTCTL_REQUIRE_RAY") != "1",
    reason="Ray (pip install 'convertctl[ray]'), unshare or ip is missing (set CONVERTCTL_REQUIRE_RAY=1 to make "
    "this an error)",
)


def local_export_python() -> Path:
    """The local runtime's export venv (current torch), made if missing."""
    from convertctl.config.catalog import load_catalog
    from convertctl.store.envstore import EnvStore
    from convertctl.store.pipconfig import load_settings

    return EnvStore(settings=load_settings()).ensure(load_catalog().ladder("local", "export")[0]).python


def local_convert_python() -> Path:
    """The local runtime's convert venv (TensorFlow), made if missing."""
    from convertctl.config.catalog import load_catalog
    from convertctl.store.envstore import EnvStore
    from convertctl.store.pipconfig import load_settings

    return EnvStore(settings=load_settings()).ensure(load_catalog().ladder("local", "convert")[0]).python


@pytest.fixture(scope="session")
def format_models(tmp_path_factory) -> Path:
    """Test models in every format, made by tests/formats_make.py in the
    local export venv's torch (the host test process has no torch)."""
    out = tmp_path_factory.mktemp("format-models")
    proc = subprocess.run(
        [str(local_export_python()), str(ROOT / "tests" / "formats_make.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
