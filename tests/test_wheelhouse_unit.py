"""Where a lock's files come from: a wheelhouse gives only the files the
lock names by hash; a +cpu torch no wheelhouse holds comes from the torch
index (the catalog's, or CONVERTCTL_TORCH_INDEX); --wheelhouse is one more
find-links folder, looked at first."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from conftest import convertctl
from convertctl.errors import UsageError
from convertctl.store.lockfile import sources
from convertctl.store.pipconfig import settings_from_flags

INDEX = "https://download.pytorch.org/whl/cpu"


def wheel(folder: Path, name: str, content: bytes) -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


@pytest.fixture
def house(tmp_path):
    """A wheelhouse with the lock's torch, a torch of the same name but other
    bytes (another folder), and a wheel the lock does not name."""
    good, good_hash = wheel(tmp_path / "a", "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", b"cpu torch")
    wheel(tmp_path / "b", "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", b"tampered")
    wheel(tmp_path / "a", "six-1.17.0-py2.py3-none-any.whl", b"six")
    _, numpy_hash = wheel(tmp_path / "a", "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", b"numpy")
    lock = (
        f"numpy==2.4.6 \\\n    --hash=sha256:{numpy_hash} \\\n    --hash=sha256:{'1' * 64}\n"
        f"torch==2.13.0+cpu \\\n    --hash=sha256:{good_hash}\n    # via -r x.in\n"
    )
    return tmp_path, lock, good


def test_only_the_files_the_lock_names_by_hash(house, monkeypatch):
    monkeypatch.delenv("CONVERTCTL_TORCH_INDEX", raising=False)
    root, lock, good = house
    found = sources(lock, [str(root / "b"), f"file://{root / 'a'}", "https://pypi.org/simple"], INDEX)
    assert sorted(p.name for p in found.files) == [
        "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
        good.name,
    ]
    assert good in found.files and root / "b" / good.name not in found.files
    assert found.torch_index == "" and found.missing == [], "the wheelhouse holds torch: no torch index"


def test_torch_index_when_no_wheelhouse_holds_torch(house, monkeypatch):
    monkeypatch.delenv("CONVERTCTL_TORCH_INDEX", raising=False)
    root, lock, _ = house
    found = sources(lock, [str(root / "b")], INDEX)
    assert found.files == [] and found.torch_index == INDEX
    monkeypatch.setenv("CONVERTCTL_TORCH_INDEX", "https://mirror.example/whl/cpu")
    assert sources(lock, [], INDEX).torch_index == "https://mirror.example/whl/cpu"
    monkeypatch.delenv("CONVERTCTL_TORCH_INDEX")
    assert sources(lock, [], "").missing == ["torch==2.13.0+cpu"]
    assert sources("six==1.17.0 --hash=sha256:" + "2" * 64 + "\n", [], "").torch_index == "", "nothing local"


def test_wheelhouse_flag_is_a_find_links_folder_first(tmp_path):
    settings = settings_from_flags(wheelhouse=tmp_path)
    assert settings.find_links[0] == str(tmp_path.resolve())
    with pytest.raises(UsageError, match="--wheelhouse .*: no such directory"):
        settings_from_flags(wheelhouse=tmp_path / "nope")


@pytest.mark.parametrize(
    "command", [["run", "m.pt", "--input-shape", "1,3,8,8"], ["example", "new.pt"], ["images", "build"]]
)
def test_wheelhouse_flag_on_every_command_that_builds(command, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"not looked at: the flag is checked first")
    proc = convertctl(*command, "--wheelhouse", tmp_path / "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"--wheelhouse {tmp_path / 'nope'}: no such directory" in " ".join(proc.stderr.split())
    assert os.listdir(tmp_path) == ["m.pt"]
