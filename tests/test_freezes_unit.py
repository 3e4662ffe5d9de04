"""`pip freeze` asked once per version of an environment (runtimes/freezes.py)."""

from __future__ import annotations

import os
import time

from convertctl.runtimes.freezes import remembered, venv_stamp


def test_the_answer_is_kept_for_its_stamp_and_asked_again_for_another(tmp_path):
    memo, asked = tmp_path / "m" / "freeze.json", []

    def ask():
        asked.append(1)
        return [f"pkg=={len(asked)}"]

    assert remembered(memo, "sha256:a", ask) == ["pkg==1"]
    assert remembered(memo, "sha256:a", ask) == ["pkg==1"] and len(asked) == 1
    assert remembered(memo, "sha256:b", ask) == ["pkg==2"], "another image: asked"
    memo.write_text("{half")
    assert remembered(memo, "sha256:b", ask) == ["pkg==3"], "a damaged memo only costs asking"


def test_an_answer_that_could_not_be_had_is_not_kept(tmp_path):
    memo = tmp_path / "freeze.json"
    assert remembered(memo, 1, lambda: None) is None
    assert not memo.exists()
    assert remembered(memo, 1, lambda: ["a==1"]) == ["a==1"]


def test_a_venv_stamp_changes_with_its_packages_and_its_marker(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / ".ready").write_text("{}")
    first = venv_stamp(tmp_path, ".ready")
    assert len(first) == 2
    time.sleep(0.01)
    (site / "newpkg-1.0.dist-info").mkdir()  # what an install does
    second = venv_stamp(tmp_path, ".ready")
    assert second != first
    time.sleep(0.01)
    os.rmdir(site / "newpkg-1.0.dist-info")  # and an uninstall
    assert venv_stamp(tmp_path, ".ready") != second
    third = venv_stamp(tmp_path, ".ready")
    time.sleep(0.01)
    (tmp_path / ".ready").write_text('{"rebuilt": true}')
    assert venv_stamp(tmp_path, ".ready") != third
