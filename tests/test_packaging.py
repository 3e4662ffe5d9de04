"""How convertctl behaves as an installed command: --help stays light (no
numpy), output that is not a terminal (CI logs, pipes) is not wrapped at 80
columns, `images list` keeps every name and state on one line, and its
--json is what the image-publishing workflow reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import requires_docker
from convertctl.cli import images_cmd as images_cli
from convertctl.cli import ui
from convertctl.cli.app import app
from convertctl.config.catalog import load_catalog
from typer.testing import CliRunner

HEAVY = ("numpy", "PIL", "docker", "convertctl.run.pipeline", "convertctl.checks.validate")


def _imported_after(*argv: str) -> tuple[set[str], subprocess.CompletedProcess]:
    code = (
        "import sys\n"
        "from convertctl.cli.app import main\n"
        f"sys.argv = ['convertctl', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    line = next(li for li in proc.stderr.splitlines() if li.startswith("MODULES "))
    return set(line.split()[1:]), proc


@pytest.mark.parametrize("argv", [("--help",), ("run", "--help"), ("--version",), ("images", "--help")])
def test_help_and_version_import_no_numpy(argv):
    modules, proc = _imported_after(*argv)
    assert proc.stdout.strip(), proc.stderr[-2000:]
    assert "typer" in modules  # the check itself works: what ran is listed
    assert not [m for m in HEAVY if m in modules]


def test_run_help_keeps_every_option_setting():
    """What typer/click pairs that drop Annotated settings lose first."""
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200", "TERM": "dumb"}, prog_name="convertctl")
    assert result.exit_code == 0, result.output
    for text in ("-q", "--quant", "-o", "--out", "ExportedProgram", "Output directory", "Mode, repeatable"):
        assert text in result.output, text
    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("convertctl ")


def test_console_is_wide_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    assert ui.make_console().width == ui.PLAIN_WIDTH  # pytest captures stdout: not a terminal
    monkeypatch.setenv("COLUMNS", "77")
    assert ui.make_console().width == 77  # an explicit width wins


class FakeBuilder:
    """describe/key as ImageBuilder answers them, for a daemon-free listing."""

    def __init__(self, states):
        self.states = states

    def key(self, variant):
        return f"{abs(hash(variant.name)):020d}"[:20]

    def describe(self, variant):
        state = self.states.get(variant.name, "not built")
        ref = f"{variant.tag}-{self.key(variant)[:12]}"
        return {"ref": ref, "state": state, "built": state != "not built", "size_bytes": 1114 * 10**6}


def _lines_hold_each_row(output: str, rows: list[dict]) -> None:
    lines = output.splitlines()
    for row in rows:
        whole = [li for li in lines if row["variant"] in li and row["tag"] in li and row["state"] in li]
        assert len(whole) == 1, f"{row['variant']}: {row['tag']} and {row['state']!r} not on one line:\n{output}"


@pytest.mark.parametrize("columns", [None, "60", "100", "200"])
def test_images_list_never_cuts_names_or_states(monkeypatch, columns):
    states = {"export-torch1.7": "current", "convert-tf2.8": "stale"}
    monkeypatch.setattr(images_cli, "_builder", lambda *a, **k: FakeBuilder(states))
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    else:
        monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(images_cli, "console", ui.make_console())  # as a fresh process would make it
    result = CliRunner().invoke(app, ["images", "list"])
    assert result.exit_code == 0, result.output
    rows = images_cli.image_rows(FakeBuilder(states))
    assert {r["state"] for r in rows} == {"current", "stale", "not built"}
    _lines_hold_each_row(result.output, rows)


def test_images_list_json_names_every_variant(monkeypatch):
    monkeypatch.setattr(images_cli, "_builder", lambda *a, **k: FakeBuilder({}))
    result = CliRunner().invoke(app, ["images", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["variant"] for r in rows] == list(load_catalog().variants)
    for r in rows:
        assert set(r) >= {"variant", "stage", "ref", "key", "state", "size_bytes"}
        assert r["ref"].endswith(r["key"][:12]) and r["state"] == "not built"


@pytest.mark.docker
@requires_docker
def test_images_list_piped_keeps_each_variant_on_one_line(tmp_path):
    """`convertctl images list | cat` against the real daemon, COLUMNS unset."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    cmd = [sys.executable, "-m", "convertctl", "images", "list"]
    piped = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert piped.returncode == 0, piped.stderr
    listed = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    rows = json.loads(listed.stdout)
    assert len(rows) == len(load_catalog().variants)
    _lines_hold_each_row(piped.stdout, rows)
