"""`convertctl envs list|prune` on a store made of plain folders: only what
convertctl made goes, an environment a run holds stays, sizes count each
file once, and what a removal frees leaves out files uv's cache still links.
(The environments' interpreters are this Python, linked as a venv links it;
tests/test_envstore.py builds real ones with uv.)"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest
from convertctl.cli.app import app
from convertctl.store import envprune
from convertctl.store.diskuse import human, usage
from convertctl.store.envstore import MARKER, EnvStore
from typer.testing import CliRunner

MB = 1_000_000


def make_env(store: EnvStore, name: str, variant: str = "export-torch2.13", ready: bool = True, data: int = MB) -> Path:
    path = store.envs_dir / name
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    (path / "lib.so").write_bytes(os.urandom(data))
    Path(str(path) + ".lock").touch()  # every build takes it first
    if ready:
        (path / MARKER).write_text(json.dumps({"variant": variant, "created": "2026-12-07T00:00:00"}))
    return path


def link_from_cache(store: EnvStore, env: Path, size: int = MB) -> Path:
    """A file uv installed by hard-linking it from its cache."""
    cached = store.uv_cache / "archive-v0" / env.name / "wheel.so"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(os.urandom(size))
    os.link(cached, env / "linked.so")
    return cached


@pytest.fixture
def store(tmp_path, monkeypatch) -> EnvStore:
    monkeypatch.setenv("CONVERTCTL_HOME", str(tmp_path / "store"))
    return EnvStore(tmp_path / "store")


OLD, NEW, OTHER = "py3.11-" + "a" * 16, "py3.11-" + "b" * 16, "py3.11-" + "c" * 16


def test_usage_counts_a_hard_linked_file_once_and_frees_it_only_with_every_link(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_bytes(os.urandom(MB))
    os.link(a / "f", b / "f")
    blocks = os.lstat(a / "f").st_blocks * 512
    both = usage(a, b)
    assert both.total == usage(a).total + usage(b).total - blocks  # the file once
    assert usage(a).freed < blocks  # b still links it
    assert both.freed == both.total  # gone with both
    assert usage(tmp_path / "missing") == usage()


def test_prune_removes_what_no_variant_uses_and_says_the_sizes(store):
    old, new = make_env(store, OLD, "onnx2tf-tf2.8"), make_env(store, NEW)
    cached = link_from_cache(store, old)
    half = make_env(store, OTHER, ready=False)  # an interrupted build: no marker, its lock there
    before = usage(old).total + usage(half).total
    done = envprune.prune(store, keep={NEW})
    assert sorted(r["name"] for r in done.rows) == [OLD, OTHER]
    assert not old.exists() and not half.exists() and new.is_dir()
    assert done.size_bytes == before
    # The cache still links one file: freed is the size minus that file.
    assert done.freed_bytes == before - os.lstat(cached).st_blocks * 512
    assert cached.is_file()


def test_a_dry_run_removes_nothing_and_frees_what_the_real_one_then_frees(store):
    a, b = make_env(store, OLD), make_env(store, OTHER)
    os.link(a / "lib.so", b / "shared.so")  # shared by the two removed: freed only together
    dry = envprune.prune(store, keep=set(), dry_run=True)
    assert a.is_dir() and b.is_dir() and len(dry.rows) == 2
    real = envprune.prune(store, keep=set())
    assert (dry.size_bytes, dry.freed_bytes) == (real.size_bytes, real.freed_bytes)
    assert real.freed_bytes == real.size_bytes and not a.exists()


def test_what_convertctl_did_not_make_is_listed_and_never_touched(store, tmp_path):
    store.envs_dir.mkdir(parents=True)
    mine = make_env(store, OLD)
    notes = store.envs_dir / "my-notes"
    notes.mkdir()
    (store.envs_dir / "README").write_text("mine")
    # Named like an environment, but no marker and no lock: not from a build.
    lookalike = store.envs_dir / OTHER
    lookalike.mkdir()
    # A link named like an environment, to a folder that has a marker: never followed.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / MARKER).write_text("{}")
    (store.envs_dir / NEW).symlink_to(outside, target_is_directory=True)
    assert envprune.foreign(store) == sorted(["README", "my-notes", NEW, OTHER])
    assert [r["name"] for r in envprune.entries(store)] == [OLD]
    done = envprune.prune(store, keep=set())
    assert [r["name"] for r in done.rows] == [OLD] and not mine.exists()
    assert notes.is_dir() and lookalike.is_dir() and (outside / MARKER).is_file()
    assert (store.envs_dir / NEW).is_symlink()


def test_an_environment_a_run_uses_or_builds_is_left_alone(store):
    used, building = make_env(store, OLD), make_env(store, OTHER, ready=False)
    handles = []
    for path, mode in ((used, fcntl.LOCK_SH), (building, fcntl.LOCK_EX)):  # as using() and ensure() hold them
        handle = open(str(path) + ".lock", "a")
        fcntl.flock(handle, mode)
        handles.append(handle)
    try:
        done = envprune.prune(store, keep=set())
    finally:
        for handle in handles:
            handle.close()
    assert done.rows == [] and sorted(done.busy) == [OLD, OTHER]
    assert used.is_dir() and building.is_dir()


def test_a_broken_environment_goes_even_when_its_variant_is_current(store):
    env = make_env(store, OLD)
    (env / "bin" / "python").unlink()
    (env / "bin" / "python").symlink_to("/nonexistent/python3.11")  # its base Python was removed
    assert [r["name"] for r in envprune.prune(store, keep={OLD}).rows] == [OLD]


def cli(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.stdout.split())


def test_the_cli_lists_and_prunes_with_sizes_and_cleans_uvs_cache_with_all(store):
    from convertctl.config.catalog import load_catalog

    current = store.path_for(next(iter(load_catalog().variants.values()))).name
    stale, kept = make_env(store, OLD, "onnx2tf-tf2.8"), make_env(store, current)
    cached = link_from_cache(store, kept)
    (store.envs_dir / "my-notes").mkdir()
    code, out = cli("envs", "list")
    assert code == 0
    assert f"{OLD} onnx2tf-tf2.8 ready {human(usage(stale).total)} (stale: no variant uses it)" in out
    assert "not made by convertctl (prune leaves it alone): my-notes" in out
    assert f"`convertctl envs prune` would free {human(usage(stale).freed)}" in out

    code, out = cli("envs", "prune", "--dry-run")
    assert code == 0 and stale.is_dir()
    assert f"would remove 1 environment(s), {human(usage(stale).total)}" in out and OLD in out

    code, out = cli("envs", "prune")
    assert code == 0 and not stale.exists() and kept.is_dir()
    assert "left alone (not made by convertctl): my-notes" in out

    code, out = cli("envs", "prune", "--all", "--dry-run")
    assert code == 0 and kept.is_dir() and cached.is_file()
    both = usage(kept, store.uv_cache)
    assert f"would remove uv's download cache {store.uv_cache}" in out
    assert f"would free {human(both.freed)} in all" in out

    code, out = cli("envs", "prune", "--all")
    assert code == 0 and not kept.exists() and not cached.exists()
    assert f"removed uv's download cache {store.uv_cache}" in out
    assert (store.envs_dir / "my-notes").is_dir()


def test_all_leaves_uvs_cache_while_a_build_holds_an_environment(store):
    building = make_env(store, OLD, ready=False)
    cached = link_from_cache(store, building)
    with open(str(building) + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, out = cli("envs", "prune", "--all")
    assert code == 0 and building.is_dir() and cached.is_file()
    assert "left alone (a build is using it): uv's download cache" in out
    assert f"left alone (a run is building or using it): {OLD}" in out
