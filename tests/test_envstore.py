"""The venv store, with real uv and real (tiny) venvs: keyed by content,
marker last, half-built venvs never reused, concurrent runs build once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from convertctl.catalog import Variant
from convertctl.envstore import MARKER, EnvStore, env_key
from convertctl.errors import EnvironmentProblem
from convertctl.pipconfig import load_settings

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def variant(tmp_path, lock="six==1.16.0\n", name="tiny"):
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
    c = variant(tmp_path, lock="six==1.17.0\n", name="c")
    assert env_key(a) == env_key(b) != env_key(c)


def test_half_built_env_is_rebuilt(store, tmp_path):
    v = variant(tmp_path)
    path = store.path_for(v)
    (path / "bin").mkdir(parents=True)  # an interrupted build: no marker
    (path / "junk").write_text("x")
    env = store.ensure(v)
    assert env.created and not (path / "junk").exists() and (path / MARKER).is_file()
    assert [r["ready"] for r in store.entries()] == [True]


def test_failed_build_leaves_nothing(store, tmp_path):
    v = variant(tmp_path, lock="this-package-does-not-exist-convertctl==0.0.1\n")
    with pytest.raises(EnvironmentProblem, match="could not create the tiny environment"):
        store.ensure(v)
    assert not store.path_for(v).exists()


def test_concurrent_runs_build_once(store, tmp_path):
    v = variant(tmp_path)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from convertctl.catalog import Variant
        from convertctl.envstore import EnvStore
        from convertctl.pipconfig import load_settings
        v = Variant(name="tiny", stage="export", python={PY!r}, requirements={v.requirements!r},
                    tag="t", base_image="b")
        print(EnvStore(Path({str(store.root)!r}), load_settings()).ensure(v).created)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    created = [p.communicate()[0].strip() for p in procs]
    assert sorted(created) == ["False", "False", "True"]


def test_prune_keeps_what_is_named(store, tmp_path):
    a, c = variant(tmp_path, name="a"), variant(tmp_path, lock="six==1.17.0\n", name="c")
    store.ensure(a)
    store.ensure(c)
    removed = store.prune({store.path_for(a).name})
    assert removed == [store.path_for(c).name]
    assert [r["name"] for r in store.entries()] == [store.path_for(a).name]
