"""Where the convert action pulls published images from (its `registry`
output): the action's prepare step run as tests/gha.py's runner runs it,
with the action's folder where a runner would put it (checked out under
<work>/_actions/OWNER/REPO/REF for `uses: OWNER/REPO/...@REF`, or in the
workspace for `uses: ./...`), and the resolution function alone for the
paths no test layout reaches. github.action_repository stays empty, as it
is inside composite actions (actions/runner#2525)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from gha import Runner

ACTION = ROOT / ".github" / "actions" / "convert"
_spec = importlib.util.spec_from_file_location("action_registry", ACTION / "registry.py")
assert _spec is not None and _spec.loader is not None
registry = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(registry)


def prepare(tmp_path: Path, action_dir: Path, workspace: Path, repository: str = "user/app", **inputs):
    """The action's `prepare` step alone; (its outputs, its log)."""
    if not action_dir.exists():
        shutil.copytree(ACTION, action_dir, ignore=shutil.ignore_patterns("__pycache__"))
    workspace.mkdir(parents=True, exist_ok=True)
    runner = Runner(
        workspace,
        {},
        github={"repository": repository, "repository_owner": repository.partition("/")[0]},
        env={"PYTHON": sys.executable, "CONVERTCTL_HOME": str(tmp_path / "home")},
    )
    run = runner.run_action(action_dir, {"model": "models/net.pt", "runtime": "local", **inputs}, only=("prepare",))
    step = run.step("Choose the runtime and the environment cache key")
    assert step.ok, step.log  # never a crash, whatever the path
    return step.outputs, step.log


def test_a_marketplace_action_pulls_from_its_own_owner(tmp_path):
    work = tmp_path / "runner" / "work"
    action = work / "_actions" / "Image-Maker" / "convertctl" / "v1" / ".github" / "actions" / "convert"
    outputs, log = prepare(tmp_path, action, work / "app" / "app", repository="someone-else/app")
    assert outputs["registry"] == "ghcr.io/image-maker"  # not the user's owner, lower-cased for ghcr.io
    assert "the action's repository Image-Maker/convertctl" in log


def test_a_ref_with_slashes_does_not_move_the_owner(tmp_path):
    work = tmp_path / "runner" / "work"
    action = work / "_actions" / "org" / "convertctl" / "release" / "2.0" / ".github" / "actions" / "convert"
    outputs, _ = prepare(tmp_path, action, work / "app" / "app")
    assert outputs["registry"] == "ghcr.io/org"


def test_a_local_action_pulls_from_the_workspaces_owner(tmp_path):
    workspace = tmp_path / "work" / "convertctl" / "convertctl"
    outputs, log = prepare(
        tmp_path, workspace / ".github" / "actions" / "convert", workspace, repository="Fork/convertctl"
    )
    assert outputs["registry"] == "ghcr.io/fork"
    assert "a local action" in log


def test_the_registry_input_wins_and_none_builds_everything(tmp_path):
    work = tmp_path / "runner" / "work"
    action = work / "_actions" / "org" / "convertctl" / "v1" / ".github" / "actions" / "convert"
    outputs, log = prepare(tmp_path, action, work / "app" / "app", registry="registry.example:5000/mirror/")
    assert outputs["registry"] == "registry.example:5000/mirror"
    assert "(input)" in log
    outputs, log = prepare(tmp_path, action, work / "app" / "app", registry="none")
    assert outputs["registry"] == ""


def test_a_path_that_names_no_repository_builds_and_says_why(tmp_path):
    """Neither under _actions nor in the workspace (a self-hosted runner's
    odd layout): no registry, one line naming the path, and the step passes,
    so the Docker runtime builds the images as it does without a registry."""
    action = tmp_path / "elsewhere" / "convert"
    outputs, log = prepare(tmp_path, action, tmp_path / "work" / "app" / "app")
    assert outputs["registry"] == ""
    assert f"cannot tell the action's repository from its path '{action}'" in log
    assert "every stage image is built here" in log
    assert outputs["runtime"] == "local" and outputs["cache-paths"]  # the rest of the step went on


@pytest.mark.parametrize(
    "action_path, workspace, repository, expected",
    [
        # A container job: the runner's work folder is /__w.
        ("/__w/_actions/acme/convertctl/v2/.github/actions/convert", "/__w/app/app", "u/app", "acme/convertctl"),
        # No workspace known: the first _actions component.
        ("/home/runner/work/_actions/acme/convertctl/main", "", "", "acme/convertctl"),
        # A work folder that itself holds an _actions folder: the runner's own first.
        ("/srv/_actions/w/_actions/acme/conv/v1", "/srv/_actions/w/app/app", "", "acme/conv"),
        # A repository named _actions.
        ("/w/_actions/acme/_actions/v1/x", "/w/app/app", "", "acme/_actions"),
        # Dots in the path are normalised before anything is read.
        ("/w/app/app/./.github/../.github/actions/convert", "/w/app/app", "Org/app", "Org/app"),
    ],
)
def test_action_repository_reads_the_owner_from_any_runner_layout(action_path, workspace, repository, expected):
    assert registry.action_repository(action_path, workspace, repository)[0] == expected


@pytest.mark.parametrize(
    "action_path, workspace, repository, why",
    [
        ("", "/w/app/app", "u/app", "is not an absolute path"),
        ("relative/convert", "/w/app/app", "u/app", "is not an absolute path"),
        ("/w/_actions/acme", "/w/app/app", "u/app", "cannot tell"),  # no REPO/REF after the owner
        ("/w/_actions/acme/conv", "/w/app/app", "u/app", "cannot tell"),  # no REF
        ("/w/_actions/bad owner!/conv/v1", "/w/app/app", "u/app", "cannot tell"),
        ("/w/_actions/acme/../../etc/v1/x", "/w/app/app", "u/app", "cannot tell"),
        ("/w/app/app/.github/actions/convert", "/w/app/app", "", "GITHUB_REPOSITORY '' is not OWNER/REPO"),
    ],
)
def test_a_malformed_path_gives_no_repository_and_a_reason(action_path, workspace, repository, why):
    found, how = registry.action_repository(action_path, workspace, repository)
    assert found == "" and why in how
    assert registry.resolve("", action_path, workspace, repository)[0] == ""


def test_an_entry_is_saved_when_a_run_holds_environments_the_restored_one_did_not(tmp_path):
    """The cache steps (prepare, restore, envs, save) against a stand-in
    that keeps its entries as GitHub does (an entry is never overwritten):
    a run that built environments saves them; a run that built nothing new
    saves nothing; a run that built one more saves a new entry, which the
    next run restores. A half-built environment is not saved."""
    from convertctl.store.envstore import MARKER
    from gha import Actions

    actions = Actions(ROOT, tmp_path)
    workspace = tmp_path / "work"
    workspace.mkdir()
    actions.runner_for(
        workspace, github={"repository": "user/app"}, env={"PYTHON": sys.executable, "CONVERTCTL_HOME": str(tmp_path)}
    )

    def job() -> dict:
        assert actions.runner is not None
        run = actions.runner.run_action(
            ACTION, {"model": "net.pt", "runtime": "local"}, only=("prepare", "restore", "envs", "save")
        )
        assert not run.failed, run.log
        return {s.name: s for s in run.steps}

    steps = job()
    paths = steps["Choose the runtime and the environment cache key"].outputs["cache-paths"].splitlines()
    assert len(paths) >= 3 and steps["Save stage environments"].kind == "skipped"  # nothing built: nothing saved

    def build(path: str, ready: bool = True) -> None:
        Path(path).mkdir(parents=True)
        if ready:
            (Path(path) / MARKER).write_text("{}")

    build(paths[0]), build(paths[1]), build(paths[2], ready=False)
    job()
    (first,) = actions.calls["save"]
    assert first["path"].splitlines() == sorted(paths[:2])  # the half-built one is not worth an entry

    steps = job()  # the same environments: restored, and not saved again
    assert actions.calls["restore"][-1] and len(actions.calls["save"]) == 1
    assert steps["Restore stage environments"].outputs["cache-matched-key"] == first["key"]

    (Path(paths[2]) / MARKER).write_text("{}")  # a run that needed one more environment
    job()
    second = actions.calls["save"][-1]
    assert second["key"] != first["key"] and second["path"].splitlines() == sorted(paths[:3])
    steps = job()
    assert steps["Restore stage environments"].outputs["cache-matched-key"] == second["key"]
    assert len(actions.calls["save"]) == 2
