"""kill -9 of convertctl: nothing it started keeps running. Locally the
stage (and whatever it started) dies with it; on Docker the stage container
is removed, at once by the guard process, and at the latest when the next
run starts. As root, stage containers still do not run as root."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import convertctl, requires_docker
from convertctl.store import procs, rundir

pytestmark = pytest.mark.acceptance


def wait_for(predicate, seconds=600, every=0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {predicate}")


def marked(marker: str) -> list[int]:
    """Live processes whose environment carries the marker (inherited by
    every process convertctl starts, whatever its command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start_run(model, out, runtime, marker):
    cmd = [sys.executable, "-m", "convertctl", "run", str(model), "--input-shape", "1,3,64,64"]
    cmd += ["--quant", "fp32", "--out", str(out), "--runtime", runtime]
    env = {**os.environ, "CONVERTCTL_KILL_TEST": marker}
    log = open(out.parent / "convertctl.log", "w")  # read back if the run ends too early
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def stage_of(proc, marker: str, script: str) -> list[int]:
    """The run's processes running `script`; an error at once if the run
    ended before starting it (rather than waiting out the timeout)."""
    found = [p for p in marked(marker) if script in cmdline(p)]
    if not found and proc.poll() is not None:
        said = Path(proc.args[proc.args.index("--out") + 1]).parent / "convertctl.log"
        raise AssertionError(
            f"convertctl ended (exit {proc.returncode}) before a {script} stage started: {said.read_text()[-2000:]}"
        )
    return found


def snapshot(folder: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.exists()}


def test_kill_9_mid_convert_leaves_no_local_stage_running(smallcnn, tmp_path):
    marker = uuid.uuid4().hex
    out = tmp_path / "out"
    proc = start_run(smallcnn, out, "local", marker)
    try:
        wait_for(lambda: stage_of(proc, marker, "/convert.py"))  # any family's convert stage
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The stage (and anything it started) goes with convertctl.
    wait_for(lambda: not marked(marker), seconds=30)
    (run_dir,) = list((out / ".convertctl" / "runs").iterdir())
    before = snapshot(run_dir)
    time.sleep(3)
    assert snapshot(run_dir) == before, "nothing keeps writing into the run directory"
    assert not rundir.live(run_dir), "the killed run's lock is free"
    assert any("was killed" in n for n in rundir.killed_runs(out)), "the next run is told"


FAKE_UV = """#!/bin/sh
# Stands in for uv: a long install that keeps writing into the store, with a child of its own.
sleep 600 &
while true; do date >> "$0.progress"; sleep 0.2; done
"""


def test_kill_9_mid_venv_build_leaves_no_installer(tmp_path):
    marker = uuid.uuid4().hex
    uv = tmp_path / "fake-uv"
    uv.write_text(FAKE_UV)
    uv.chmod(0o755)
    lock = tmp_path / "lock.txt"
    lock.write_text("six==1.16.0\n")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from convertctl.store import envstore
        from convertctl.config.catalog import Variant
        envstore.find_uv = lambda: {str(uv)!r}
        store = envstore.EnvStore(Path({str(tmp_path / "store")!r}))
        store.check_python = lambda variant: None
        v = Variant(name="tiny", stage="export", python={py!r}, requirements={str(lock)!r}, tag="t", base_image="b")
        store.ensure(v)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "CONVERTCTL_KILL_TEST": marker})
    progress = Path(str(uv) + ".progress")
    try:
        wait_for(lambda: progress.is_file() and len(marked(marker)) >= 3, seconds=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_for(lambda: not marked(marker), seconds=30)
    size = progress.stat().st_size
    time.sleep(1)
    assert progress.stat().st_size == size, "the installer is gone, not writing on"


def test_next_run_stops_what_survived_a_killed_convertctl_and_its_guard(tmp_path):
    """The last line of defence: a grandchild (PDEATHSIG covers only the
    child) whose guard was killed as well is stopped when the next run starts."""
    marker = uuid.uuid4().hex
    script = textwrap.dedent("""
        import sys, time
        from convertctl.store import procs
        procs.start(["sh", "-c", "sleep 600 & wait"])
        print(procs.GUARD_PROCESS.proc.pid, flush=True)
        time.sleep(600)
    """)
    env = {**os.environ, "CONVERTCTL_KILL_TEST": marker}
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    guard = int(owner.stdout.readline())
    sleeper = wait_for(lambda: [p for p in marked(marker) if cmdline(p).startswith("sleep 600")], seconds=30)
    os.kill(guard, signal.SIGKILL)  # the guard goes first, then convertctl: nothing is left to clean up
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    time.sleep(1)
    assert all(Path(f"/proc/{p}").exists() for p in sleeper), "the grandchild survived both"
    from convertctl.runtimes.local import LocalRuntime
    from convertctl.store.envstore import EnvStore

    runtime = LocalRuntime(EnvStore(tmp_path / "store"))  # what the next run does first
    wait_for(lambda: not marked(marker), seconds=10)
    assert any("left running by a convertctl that was killed" in n for n in runtime.notices)


@pytest.fixture(scope="module")
def docker_model(tmp_path_factory):
    """An example model saved in the Docker export image's torch (1.7), so the tutorial's image exports it."""
    path = tmp_path_factory.mktemp("docker:model") / "m17.pt"  # a ':' in the path: mounts must take it
    convertctl("example", path, "--name", "smallcnn", "--input-shape", "1,3,64,64", "--runtime", "docker", check=True)
    return path


def run_containers(client, out):
    return [c for c in client.containers.list(all=True) if str(out) in c.labels.get("org.convertctl.run", "")]


@pytest.mark.docker
@requires_docker
def test_kill_9_mid_convert_removes_the_stage_container(docker_model, tmp_path):
    import docker

    client = docker.from_env()
    out = tmp_path / "out"
    proc = start_run(docker_model, out, "docker", uuid.uuid4().hex)
    try:
        wait_for(
            lambda: [c for c in run_containers(client, out) if c.labels.get("org.convertctl.stage") == "convert"],
            seconds=600,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_for(lambda: not run_containers(client, out), seconds=60)


@pytest.mark.docker
@requires_docker
def test_the_guard_removes_a_container_it_knew_only_by_its_owner_label():
    """A kill -9 between dockerd creating a stage container and convertctl
    learning its ID (the CI race of test_kill_9_mid_convert_...): the guard
    was told the owner label before the container existed."""
    import docker
    from convertctl.config.catalog import load_catalog
    from convertctl.runtimes.docker import OWNER_LABEL, hardening
    from convertctl.runtimes.images import ImageBuilder
    from convertctl.store.pipconfig import load_settings

    client = docker.from_env()
    variant = load_catalog().ladder("docker", "export")[0]
    builder = ImageBuilder(client, load_settings())
    builder.ensure(variant, lambda _: None)
    owner = f"test-{uuid.uuid4().hex}:1:1"
    guard = procs.Guard()
    guard.watch("label", f"{OWNER_LABEL}={owner}")
    made = client.containers.run(
        builder.ref(variant), ["-c", "import time; time.sleep(600)"], detach=True, labels={OWNER_LABEL: owner},
        **hardening(),
    )  # fmt: skip
    try:
        assert guard.proc is not None and guard.proc.stdin is not None
        guard.proc.stdin.close()  # what convertctl's death does to the pipe
        guard.proc.wait(timeout=120)
        assert made.id not in {c.id for c in client.containers.list(all=True)}
    finally:
        try:
            made.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.mark.docker
@requires_docker
def test_next_run_removes_containers_whose_owner_is_gone(tmp_path):
    import docker
    from convertctl.config.catalog import load_catalog
    from convertctl.runtimes.docker import OWNER_LABEL, DockerRuntime, hardening
    from convertctl.runtimes.images import ImageBuilder
    from convertctl.store.pipconfig import load_settings

    client = docker.from_env()
    variant = load_catalog().ladder("docker", "export")[0]
    builder = ImageBuilder(client, load_settings())
    builder.ensure(variant, lambda _: None)
    gone = subprocess.Popen(["true"])
    dead_owner = procs.owner_token(gone.pid)  # read while it lives...
    gone.wait()  # ...then it is gone, as a kill -9'd convertctl (and its guard) would be
    sleeper = ["-c", "import time; time.sleep(600)"]
    orphan = client.containers.run(
        builder.ref(variant), sleeper, detach=True, labels={OWNER_LABEL: dead_owner}, **hardening()
    )
    ours = client.containers.run(
        builder.ref(variant), sleeper, detach=True, labels={OWNER_LABEL: procs.owner_token()}, **hardening()
    )
    try:
        said = []
        DockerRuntime(client, load_settings(), say=said.append)  # what every run does first
        ids = {c.id for c in client.containers.list(all=True)}
        assert orphan.id not in ids, "the orphan is removed"
        assert ours.id in ids, "a live run's container is left alone"
        assert any("left running by a convertctl that was killed" in s for s in said)
    finally:
        for c in (orphan, ours):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass


@pytest.mark.docker
@requires_docker
@pytest.mark.skipif(os.getuid() != 0, reason="checks what happens when convertctl runs as root")
def test_as_root_stage_containers_do_not_run_as_root(tmp_path):
    import docker
    from convertctl.config.catalog import load_catalog
    from convertctl.runtimes.base import Step
    from convertctl.runtimes.docker import DockerRuntime, hardening
    from convertctl.store.pipconfig import load_settings

    client = docker.from_env()
    variant = load_catalog().ladder("docker", "export")[0]
    runtime = DockerRuntime(client, load_settings())
    runtime.prepare([variant], lambda _: None)
    ref = runtime.builder.ref(variant)
    user = runtime.user_for(ref)
    said = client.containers.run(ref, entrypoint=["id", "-u"], remove=True, **hardening(user=user))
    assert int(said.decode().strip()) != 0, "id -u inside a stage container"
    # A real stage through the runtime, in a run directory as `convertctl run` makes it.
    run_dir = rundir.create_run_dir(tmp_path / "out:with-colon")
    request = {"action": "example", "example": "smallcnn", "seed": 0, "input_shape": [1, 3, 16, 16], "output": "m.pt"}
    result = runtime.run(Step(variant, "example", request), run_dir, lambda _: None)
    assert result.ok, result.error
    assert (run_dir / "m.pt").stat().st_uid != 0, "the stage wrote as an unprivileged user"
    mode = stat.S_IMODE(run_dir.stat().st_mode)
    assert mode == 0o700 and not mode & stat.S_IWOTH, "given to the stage user, not opened to everyone"
    rundir.discard(run_dir)
