"""What the Docker runtime promises, checked from inside real containers:
no network, nothing writable but the run directory and /tmp, no
capabilities, the invoking uid; and the Dockerfiles' layer order, so that a
code-only change neither reinstalls packages (build stage) nor makes a new
venv layer (final stage)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from conftest import requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.runtimes.images import ImageBuilder
from convertctl.store.pipconfig import load_settings
from test_images_docker import venv_layer

pytestmark = [pytest.mark.docker, requires_docker]

PROBE = r"""
import json, os, socket, sys
out = {"uid": os.getuid(), "gid": os.getgid()}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except Exception as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)
def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(("1.1.1.1", 443))
attempt("connect", connect)
attempt("resolve", lambda: socket.getaddrinfo("pypi.org", 443))
for path in ("/etc/x", "/opt/convertctl/x", "/opt/venv/x", "/x", "/model/x"):
    attempt("write " + path, lambda p=path: open(p, "w").write("x"))
attempt("write /tmp", lambda: open("/tmp/x", "w").write("x"))
attempt("write rundir", lambda: open("/rundir/written.txt", "w").write("x"))
attempt("chown", lambda: os.chown("/rundir/written.txt", 0, 0))
with open("/proc/self/status") as f:
    out["caps"] = [ln.split()[1] for ln in f if ln.startswith(("CapEff", "CapPrm"))]
    f.seek(0)
    out["no_new_privs"] = [ln.split()[1] for ln in f if ln.startswith("NoNewPrivs")]
json.dump(out, open("/rundir/probe.json", "w"))
"""


@pytest.fixture(scope="module")
def client():
    import docker

    return docker.from_env()


@pytest.fixture(scope="module")
def export_image(client):
    from convertctl.runtimes.images import ImageBuilder

    variant = load_catalog().ladder("docker", "export")[0]
    ImageBuilder(client, load_settings()).ensure(variant, lambda _: None)
    return variant


def test_stage_container_cannot_reach_network_or_write_outside_run_dir(client, export_image, tmp_path):
    from convertctl.runtimes.docker import hardening

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)
    (run_dir / "probe.py").write_text(PROBE)
    model = tmp_path / "model.pt"
    model.write_text("pretend model")
    client.containers.run(
        ImageBuilder(client, load_settings()).ref(export_image),
        entrypoint=["/opt/venv/bin/python", "/rundir/probe.py"],
        volumes={str(run_dir): {"bind": "/rundir", "mode": "rw"}, str(model): {"bind": "/model/x", "mode": "ro"}},
        remove=True,
        **hardening(user="4321:4321"),
    )
    probe = json.loads((run_dir / "probe.json").read_text())
    assert (probe["uid"], probe["gid"]) == (4321, 4321)
    assert probe["connect"] != "ok" and "Network is unreachable" in probe["connect"]
    assert probe["resolve"] != "ok"
    for path in ("/etc/x", "/opt/convertctl/x", "/opt/venv/x", "/x", "/model/x"):
        assert "Read-only file system" in probe["write " + path] or "Permission denied" in probe["write " + path]
    assert probe["write /tmp"] == "ok" and probe["write rundir"] == "ok"
    assert probe["chown"] != "ok"
    assert probe["caps"] == ["0000000000000000", "0000000000000000"]
    assert probe["no_new_privs"] == ["1"]
    assert (run_dir / "written.txt").stat().st_uid == 4321


def test_stage_run_by_the_runtime_writes_as_the_given_uid(client, export_image, tmp_path):
    from convertctl.runtimes.base import Step
    from convertctl.runtimes.docker import DockerRuntime

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o777)
    runtime = DockerRuntime(client, load_settings(), user="4321:4321")
    request = {"action": "example", "example": "smallcnn", "seed": 0, "input_shape": [1, 3, 16, 16], "output": "m.pt"}
    result = runtime.run(Step(export_image, "example", request), run_dir, lambda _: None)
    assert result.ok, result.error
    assert (run_dir / "m.pt").stat().st_uid == 4321
    assert not client.containers.list(all=True, filters={"label": f"org.convertctl.run={run_dir}"}), (
        "the stage container is removed"
    )


def test_code_only_change_reuses_the_installed_packages(client, export_image):
    from convertctl.runtimes.images import ImageBuilder

    builder = ImageBuilder(client, load_settings())
    base = client.images.get(builder.ref(export_image))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = builder.context(export_image, Path(tmp))
        with open(ctx / "stage" / "export.py", "a") as f:
            f.write("\n# a code-only change\n")
        tag = "convertctl-test/code-change:latest"
        log = []
        for chunk in client.api.build(
            path=str(ctx), tag=tag, buildargs=builder.build_args(export_image), rm=True, decode=True
        ):
            log.append(chunk.get("stream", "") + chunk.get("error", ""))
    try:
        text = "".join(log)
        assert "error" not in text.lower() or "Successfully built" in text
        steps = text.split("Step ")
        install = next(s for s in steps if s.split(" : ", 1)[-1].startswith("RUN") and "requirements.txt" in s)
        assert "Using cache" in install, "the build stage's package install must come from the cache"
        venv = next(s for s in steps if "COPY --from=build /opt/venv" in s)
        assert "Using cache" in venv, "the final image's venv layer must come from the cache"
        copy_stage = next(s for s in steps if "COPY stage/" in s)
        assert "Using cache" not in copy_stage, "the changed code must be copied anew"
        new = client.images.get(tag)
        # The new image sits on the very same package layers as the old one.
        old_layers = base.attrs["RootFS"]["Layers"]
        new_layers = new.attrs["RootFS"]["Layers"]
        shared = 0
        for a, b in zip(old_layers, new_layers):
            if a != b:
                break
            shared += 1
        heavy = venv_layer(client, builder, export_image)
        assert new_layers.index(heavy) == old_layers.index(heavy) < shared
        assert shared >= len(old_layers) - 3
    finally:
        client.images.remove(tag, force=True)
