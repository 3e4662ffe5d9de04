"""The workflows under .github/workflows, run here as far as a machine
without GitHub can: each job's shell steps for real, with the same commands
and data (tests/gha.py runs them; checkout copies this repository into a
fresh workspace, setup-python gives a fresh venv of the asked version), and
the registry a local one. A workflow that was never run is a guess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, requires_docker
from gha import Actions, find_python

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


ZOO = ROOT / ".github" / "zoo.toml"


def _emitted() -> list:
    """The matrices `convertctl batch .github/zoo.toml --emit gha-matrix` prints, as the plan job runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "convertctl", "batch", str(ZOO.relative_to(ROOT)), "--emit", "gha-matrix"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def _zoo_entries() -> list:
    (matrix,) = _emitted()
    marks = {"docker": [pytest.mark.docker, requires_docker], "local": []}
    return [pytest.param(e, id=f"{e['name']}-{e['runtime']}", marks=marks[e["runtime"]]) for e in matrix["include"]]


# -- cheap checks of what the workflows promise -------------------------------


def test_ci_tests_the_pythons_the_package_claims():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    claimed = sorted(
        c.rsplit(" ", 1)[1]
        for c in pyproject["project"]["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    )
    ci = _workflow("ci.yml")
    assert sorted(ci["jobs"]["unit"]["strategy"]["matrix"]["python"]) == claimed
    assert pyproject["project"]["requires-python"] == f">={claimed[0]}"
    lowest = ci["jobs"]["lowest"]["steps"]
    assert any(s.get("with", {}).get("python-version") == claimed[0] for s in lowest)
    assert any("--resolution lowest-direct" in s.get("run", "") for s in lowest)


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_workflow_reads_only_and_says_what_it_cancels(name):
    doc = _workflow(name)
    assert doc["permissions"] == {"contents": "read"}  # jobs that need more say so themselves
    triggers = doc[True]  # YAML 1.1 reads `on` as true
    if {"push", "pull_request"} & set(triggers):  # what runs by itself, again and again
        assert "concurrency" in doc
    for job in doc["jobs"].values():
        if "steps" in job:
            assert job.get("timeout-minutes"), "a hung job must not burn six hours"
            assert all("uses" not in s or "@" in s["uses"] or s["uses"].startswith("./") for s in job["steps"])


def test_pushes_are_cancelled_when_superseded_but_publishing_is_not():
    assert _workflow("ci.yml")["concurrency"]["cancel-in-progress"] is True
    assert _workflow("images.yml")["concurrency"]["cancel-in-progress"] is False
    assert _workflow("images.yml")["jobs"]["publish"]["permissions"]["packages"] == "write"


# -- jobs run for real --------------------------------------------------------


@pytest.fixture(scope="module")
def pythons(tmp_path_factory) -> Path:
    """Where setup-python's stand-in keeps its venvs, one per version, for this test session."""
    return tmp_path_factory.getbasetemp() / "gha-pythons"


@pytest.mark.acceptance
@pytest.mark.parametrize("entry", _zoo_entries())
def test_example_model_zoo_entry_converts_and_validates(entry, pythons, tmp_path):
    """ci.yml's `convert` job (convert-models.yml), one matrix entry, as on
    GitHub: the example model made, the composite action run on it, green."""
    actions = Actions(ROOT, pythons)
    runner = actions.runner_for(tmp_path / "workspace")
    runner.workspace.mkdir()
    run = runner.run_job(WORKFLOWS / "convert-models.yml", "convert", matrix=entry)
    print(run.log[-12000:])
    assert not run.failed
    outputs = run.step("Convert").outputs
    assert outputs["status"] == "passed", outputs
    modes = entry["quant"].split()
    assert sorted(json.loads(outputs["sizes"])) == sorted(modes)
    assert sorted(Path(f).name for f in outputs["files"].splitlines()) == sorted(
        f"{entry['name']}_{m}.tflite" for m in modes
    )
    summary = runner.summary.read_text()
    assert f"**{entry['name']}**: passed" in summary and "PASSED" in summary.upper()
    (upload,) = actions.calls["upload"]
    assert upload["name"] == f"convertctl-{entry['name']}"
    assert (runner.workspace / entry["out"] / "report.json").is_file()  # the batch's OUT/NAME
    assert bool(actions.calls.get("save")) == (entry["runtime"] == "local")  # envs cached for the local runtime


def test_the_zoo_matrix_is_what_the_convert_job_and_the_action_take():
    """Every key of an emitted entry is read by the convert job, and every
    action input it feeds exists: a matrix the job would half ignore fails here."""
    job = _workflow("convert-models.yml")["jobs"]["convert"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrices)[0] }}"
    text = (WORKFLOWS / "convert-models.yml").read_text()
    action = yaml.safe_load((ROOT / ".github" / "actions" / "convert" / "action.yml").read_text())
    step = next(s for s in job["steps"] if s.get("id") == "convert")
    assert set(step["with"]) <= set(action["inputs"])
    for entry in _emitted()[0]["include"]:
        for key in entry:
            assert f"matrix.{key} }}}}" in text, key


@pytest.mark.acceptance
def test_the_plan_job_emits_the_matrices(pythons, tmp_path):
    """convert-models.yml's plan job, as on GitHub: its output is the matrix list the convert job reads."""
    actions = Actions(ROOT, pythons)
    runner = actions.runner_for(tmp_path / "workspace")
    runner.workspace.mkdir()
    run = runner.run_job(WORKFLOWS / "convert-models.yml", "plan")
    print(run.log[-6000:])
    assert not run.failed
    emitted = json.loads(run.step("The zoo as job matrices").outputs["matrices"])
    assert emitted == _emitted()
    assert [e["name"] for e in emitted[0]["include"]] == ["mobilenetv2", "smallcnn"]


@pytest.mark.acceptance
def test_lowest_versions_job_installs_and_passes(pythons, tmp_path):
    """ci.yml's `lowest` job: every direct dependency at its lower bound, unit tests."""
    if find_python("3.10") is None:
        pytest.skip("no Python 3.10 on this machine")
    actions = Actions(ROOT, pythons)
    runner = actions.runner_for(tmp_path / "workspace")
    runner.workspace.mkdir()
    run = runner.run_job(WORKFLOWS / "ci.yml", "lowest", env={"CONVERTCTL_TEST_CWD": str(tmp_path)})
    print(run.log[-12000:])
    assert not run.failed
    listed = run.step("Install the lowest versions pyproject.toml allows").log
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for dep in pyproject["project"]["dependencies"]:
        if ">=" in dep and ";" not in dep:
            name, low = dep.split(">=")
            assert (
                f"{name} " in listed
                and f" {low.split(',')[0].strip()}" in listed.split(f"{name} ", 1)[1].splitlines()[0]
            )
    assert " passed" in run.steps[-1].log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """A real registry (Debian's docker-registry) on loopback: docker pushes to
    127.0.0.0/8 over plain HTTP without any daemon configuration."""
    binary = shutil.which("docker-registry")
    if binary is None:
        if os.environ.get("CONVERTCTL_REQUIRE_DOCKER") == "1":
            pytest.fail("docker-registry is not installed (.ci/run installs it)")
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield address
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def _manifest(address: str, repo: str, tag: str) -> dict:
    request = urllib.request.Request(
        f"http://{address}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


@pytest.mark.docker
@requires_docker
def test_images_workflow_publishes_a_variant_under_its_content_key(registry, pythons, tmp_path):
    """images.yml's plan job, then its publish job for one variant, pushing to
    a local registry instead of ghcr.io (the workflow's REGISTRY): the pushed
    tag is the catalog tag plus the content key, and the image behind it is
    the one convertctl built, label and all (same config digest)."""
    from convertctl.config.catalog import load_catalog

    catalog = load_catalog()
    variant = catalog.get(catalog.ladder("docker", "convert")[0].quantize[0])  # one every Docker run needs anyway
    actions = Actions(ROOT, pythons)
    env = {"REGISTRY": registry, "DOCKER_CONFIG": str(tmp_path / "docker-config")}  # no login left in ~/.docker

    plan = actions.runner_for(tmp_path / "plan", github={"ref": "refs/tags/v0.1.0"})
    plan.workspace.mkdir()
    planned = plan.run_job(WORKFLOWS / "images.yml", "plan", env=env)
    print(planned.log[-6000:])
    assert not planned.failed
    variants = json.loads(planned.step("Every catalog variant, as convertctl lists it").outputs["variants"])
    assert variants == list(catalog.variants)

    publish = actions.runner_for(tmp_path / "publish", github={"repository_owner": "Owner", "actor": "someone"})
    publish.workspace.mkdir()
    published = publish.run_job(
        WORKFLOWS / "images.yml",
        "publish",
        matrix={"variant": variant.name},
        secrets={"GITHUB_TOKEN": "not-a-real-token"},
        env=env,
    )
    print(published.log[-6000:])
    assert not published.failed
    listing = subprocess.run(
        [str(pythons / "python3.11" / "bin" / "convertctl"), "images", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    row = next(r for r in json.loads(listing.stdout) if r["variant"] == variant.name)
    assert row["ref"] == f"{variant.tag}-{row['key'][:12]}" and row["state"] == "current"
    repo, _, tag = f"owner/{row['ref']}".rpartition(":")
    manifest = _manifest(registry, repo, tag)
    local_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", row["ref"]], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert manifest["config"]["digest"] == local_id  # the same image, not a rebuild
    assert f"{registry}/owner/{row['ref']}" in publish.summary.read_text()
    subprocess.run(["docker", "rmi", f"{registry}/owner/{row['ref']}"], capture_output=True)  # the alias only
