"""The venv store, with real uv and real (tiny) venvs: keyed by content,
marker last, half-built venvs never reused, concurrent runs build once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from convertctl.config.catalog import Variant
from convertctl.errors import EnvironmentProblem
from convertctl.store import envprune
from convertctl.store.envstore import MARKER, EnvStore, env_key
from convertctl.store.pipconfig import load_settings

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
# Hashed locks, as images/lock.py writes them (uv pip compile --generate-hashes).
SIX16 = (
    "six==1.16.0 \\\n"
    "    --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926 \\\n"
    "    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"
)
SIX17 = (
    "six==1.17.0 \\\n"
    "    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274 \\\n"
    "    --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81\n"
)


def variant(tmp_path, lock=SIX16, name="tiny"):
    path = tmp_path / f"{name}.txt"
    path.write_text(lock)
    return Variant(name=name, stage="export", python=PY, requirements=str(path), tag="t", base_image="b")


@pytest.fixture
def store(tmp_path):
    return EnvStore(tmp_path / "store", load_settings())


def test_created_once_then_reused(store, tmp_path):
    v = variant(tmp_path)
    first = store.ensure(v)
    assert first.created and (first.path / MARKER).is_file()
    out = subprocess.run(
        [str(first.python), "-c", "import six; print(six.__version__)"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "1.16.0"
    again = store.ensure(v)
    assert not again.created and again.path == first.path


def test_key_follows_content_not_name(tmp_path):
    a, b = variant(tmp_path, name="a"), variant(tmp_path, name="b")
    c = variant(tmp_path, lock=SIX17, name="c")
    assert env_key(a) == env_key(b) != env_key(c)


def test_half_built_env_is_rebuilt(store, tmp_path):
    v = variant(tmp_path)
    path = store.path_for(v)
    (path / "bin").mkdir(parents=True)  # an interrupted build: no marker
    (path / "junk").write_text("x")
    env = store.ensure(v)
    assert env.created and not (path / "junk").exists() and (path / MARKER).is_file()
    assert [r["ready"] for r in envprune.entries(store)] == [True]


def test_failed_build_leaves_nothing(store, tmp_path):
    v = variant(tmp_path, lock="this-package-does-not-exist-convertctl==0.0.1\n")
    with pytest.raises(EnvironmentProblem, match="could not create the tiny environment"):
        store.ensure(v)
    assert not store.path_for(v).exists()


def test_lock_is_installed_with_hash_checking(store, tmp_path):
    """A file whose hash the lock does not name is refused, and so is a lock without hashes."""
    wrong = SIX16.replace("1e61c3", "000000").replace("8abb2f", "000000")
    with pytest.raises(EnvironmentProblem, match="could not create the bad environment") as err:
        store.ensure(variant(tmp_path, lock=wrong, name="bad"))
    assert "Hash mismatch for `six==1.16.0`" in err.value.message
    with pytest.raises(EnvironmentProblem, match="could not create the unhashed environment") as err:
        store.ensure(variant(tmp_path, lock="six==1.16.0\n", name="unhashed"))
    assert "must have a hash" in err.value.message


def test_concurrent_runs_build_once(store, tmp_path):
    v = variant(tmp_path)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from convertctl.config.catalog import Variant
        from convertctl.store.envstore import EnvStore
        from convertctl.store.pipconfig import load_settings
        v = Variant(name="tiny", stage="export", python={PY!r}, requirements={v.requirements!r},
                    tag="t", base_image="b")
        print(EnvStore(Path({str(store.root)!r}), load_settings()).ensure(v).created)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    created = [p.communicate()[0].strip() for p in procs]
    assert sorted(created) == ["False", "False", "True"]


def test_prune_keeps_what_is_named(store, tmp_path):
    a, c = variant(tmp_path, name="a"), variant(tmp_path, lock=SIX17, name="c")
    store.ensure(a)
    store.ensure(c)
    done = envprune.prune(store, {store.path_for(a).name})
    assert [r["name"] for r in done.rows] == [store.path_for(c).name]
    assert [r["name"] for r in envprune.entries(store)] == [store.path_for(a).name]
    # uv linked six's files from its cache: what the prune freed is less than the venv's size
    assert 0 < done.freed_bytes < done.size_bytes


def test_stages_compile_what_they_import_into_the_venvs_pycache(store, tmp_path):
    """Nothing is compiled at install time; a stage process writes the
    bytecode of what it imports under the venv's .pycache, never beside the
    venv's files (whose stamp decides when a freeze is asked again)."""
    from convertctl.runtimes.freezes import venv_stamp
    from convertctl.runtimes.local import PYCACHE, process_environ

    env = store.ensure(variant(tmp_path))
    site = next(env.path.glob("lib/python*/site-packages"))
    assert not list(env.path.rglob("*.pyc"))
    stamp = venv_stamp(env.path, MARKER)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    environ = process_environ(env.path, run_dir)
    assert "PYTHONDONTWRITEBYTECODE" not in environ
    for _ in range(2):  # a second process finds it compiled
        subprocess.run([str(env.python), "-c", "import six"], env=environ, check=True, cwd=run_dir)
    compiled = list((env.path / PYCACHE).rglob("six*.pyc"))
    assert len(compiled) == 1 and str(site).lstrip("/") in str(compiled[0])
    assert not list(site.rglob("*.pyc")) and venv_stamp(env.path, MARKER) == stamp


@pytest.fixture
def small_disk(tmp_path):
    """A 96 KiB filesystem (tmpfs): room for a store's folders and a log, not for a venv."""
    import os

    where = tmp_path / "small"
    where.mkdir()
    if os.getuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(where)]).returncode:
        pytest.skip("needs root and mount(8) for a small filesystem")
    yield where
    subprocess.run(["umount", "-l", str(where)])


def test_a_full_disk_while_building_is_the_machine_not_the_environment(small_disk, tmp_path):
    """uv meets a full disk: exit 5 as a MachineProblem, which ends the run
    instead of letting the ladder build the next rung's environment on the
    same full disk; the message says where, and the log is named."""
    from convertctl.errors import MachineProblem

    store = EnvStore(small_disk / "store", load_settings())
    with pytest.raises(MachineProblem) as raised:
        store.ensure(variant(tmp_path))
    assert "no space left on the device" in raised.value.message and str(small_disk) in raised.value.message
    assert "full log" in raised.value.hint
