"""The stage locks: each made from its .in file by images/lock.py, hashed,
and in step with that .in. "In step" is checked two ways: the digest of the
.in (and the catalog's python / torch_index for it) that the lock records,
and every top-level requirement of the .in pinned by the lock (fast, no
network); then resolving the .in again offline, from uv's cache, with the
lock as the preference, must give the lock's pins (skipped when uv's cache
cannot answer offline). The negative tests edit a copy of images/ and show
each check fails."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from convertctl.config.catalog import load_catalog
from convertctl.store.lockfile import local_dirs, read_pins, requirements_in
from convertctl.store.pipconfig import load_settings
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
CPU_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def lock_tool():
    spec = importlib.util.spec_from_file_location("lock_tool", IMAGES / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCKS = lock_tool().locks(IMAGES)


def pin_problems(images: Path, lock: str, python: str) -> list:
    """Top-level requirements of the .in the lock does not satisfy, lock
    lines without a hash, and `via -r <the .in>` lines naming other packages."""
    lock_text = (images / lock).read_text()
    in_path = (images / lock).with_suffix(".in")
    pins = read_pins(lock_text)
    problems = [f"{p.name}=={p.version} has no hash" for p in pins.values() if not p.hashes]
    wanted = set()
    for line in requirements_in(in_path.read_text()):
        req = Requirement(line)
        if req.marker and not req.marker.evaluate({"python_version": python, "python_full_version": python + ".0"}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        wanted.add(name)
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{line}: not in the lock")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{line}: the lock pins {pin.version}")
    direct = set()
    for block in re.split(r"\n(?=[a-z0-9])", lock_text):
        if re.search(rf"^\s+#\s+(via\s+)?-r {re.escape(in_path.name)}$", block, re.M):
            direct.add(re.sub(r"[-_.]+", "-", block.split("==")[0]).lower())
    problems += [f"{n}: the lock says the .in asks for it; it does not" for n in sorted(direct - wanted)]
    problems += [f"{n}: the .in asks for it; the lock does not say so" for n in sorted(wanted - direct)]
    return problems


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_was_made_from_its_in_file_as_it_is(lock):
    tool = lock_tool()
    assert tool.out_of_step(IMAGES, lock, LOCKS[lock], None) == [], f"run `python images/lock.py {lock}`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_pins_what_its_in_file_asks_with_hashes(lock):
    assert pin_problems(IMAGES, lock, LOCKS[lock]["python"]) == []


def test_catalog_variants_each_have_a_lock_input():
    for v in load_catalog().variants.values():
        assert v.lock_input.is_file(), v.name
        assert v.lock_input.name == Path(v.requirements).with_suffix(".in").name


def test_current_torch_lock_is_the_cpu_build():
    variant = load_catalog().get("export-torch2.13")
    pins = read_pins(variant.lock_text())
    assert pins["torch"].version == "2.13.0+cpu"
    assert not [n for n in pins if n.startswith("nvidia") or n == "triton"], "a CPU lock has no CUDA packages"
    assert {"onnx", "onnxruntime"} <= set(pins), "onnxruntime: the export stage checks its ONNX file"
    assert variant.torch_index == "https://download.pytorch.org/whl/cpu"
    assert variant.torch_index in variant.lock_text(), "the lock names where its torch comes from"


def test_current_torch_lock_names_the_cpu_wheel_by_its_hash():
    wheel = next((d / CPU_WHEEL for d in local_dirs(load_settings().find_links) if (d / CPU_WHEEL).is_file()), None)
    if wheel is None:
        pytest.skip(f"no {CPU_WHEEL} in pip's find-links on this machine")
    import hashlib

    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert read_pins(load_catalog().get("export-torch2.13").lock_text())["torch"].hashes == {digest}


@pytest.fixture
def images_copy(tmp_path):
    """images/ without the stage code: catalog, .in files and locks."""
    copy = tmp_path / "images"
    shutil.copytree(IMAGES, copy, ignore=shutil.ignore_patterns("*.py", "Dockerfile", "base", "common"))
    return copy


def edit_in(images: Path, lock: str, old: str, new: str) -> None:
    path = (images / lock).with_suffix(".in")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_edited_in_file_is_out_of_step(images_copy):
    lock = "export/requirements-torch2.13-py3.11.txt"
    edit_in(images_copy, lock, "numpy==2.4.6", "numpy==2.4.5")
    tool = lock_tool()
    assert tool.out_of_step(images_copy, lock, LOCKS[lock], None) == [
        "its .in file (or the catalog's python/torch_index for it) changed since it was made"
    ]
    assert pin_problems(images_copy, lock, "3.11") == ["numpy==2.4.5: the lock pins 2.4.6"]


def test_an_in_file_asking_for_more_is_out_of_step(images_copy):
    lock = "convert/requirements-tf2.8-py3.9.txt"
    edit_in(images_copy, lock, "numpy==1.22.4\n", "numpy==1.22.4\nrich\n")
    assert pin_problems(images_copy, lock, "3.9") == [
        "rich: not in the lock",
        "rich: the .in asks for it; the lock does not say so",
    ]


def test_a_catalog_change_for_a_lock_is_out_of_step(images_copy):
    catalog = images_copy / "catalog.toml"
    catalog.write_text(catalog.read_text().replace("https://download.pytorch.org/whl/cpu", "https://example.org/cpu"))
    tool = lock_tool()
    lock = "export/requirements-torch2.13-py3.11.txt"
    assert tool.out_of_step(images_copy, lock, tool.locks(images_copy)[lock], None)


def check(images: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(IMAGES / "lock.py"), "--check", "--images", str(images)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(proc.stdout, proc.stderr)
    return proc


def test_locks_resolve_again_to_their_pins_offline():
    """The real thing: uv resolves every .in again (offline, from its cache)."""
    proc = check(IMAGES)
    if proc.returncode == 3:
        pytest.skip("uv's cache cannot resolve every .in offline here (run `python images/lock.py --check --online`)")
    assert proc.returncode == 0
    assert proc.stdout.count(": in step") == len(LOCKS)


def test_a_dropped_requirement_is_found_by_resolving_again(images_copy):
    lock = "export/requirements-torch2.13-py3.11.txt"
    edit_in(images_copy, lock, "onnxruntime==1.32.0\n", "")
    proc = check(images_copy)
    if "could not re-resolve" in proc.stdout:
        pytest.skip("uv's cache cannot resolve this .in offline here")
    assert proc.returncode == 1
    assert f"{lock}: OUT OF STEP: it pins onnxruntime==1.32.0, which the .in no longer resolves to" in proc.stdout
    assert f"{lock}: OUT OF STEP: it pins flatbuffers==25.12.19" in proc.stdout, "onnxruntime's own dependency goes too"
    assert "convert/requirements-tf2.15-py3.11.txt: in step" in proc.stdout
