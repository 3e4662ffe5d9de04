"""`convertctl images prune` against a real Docker daemon, on tiny images of
its own (FROM scratch, labelled as convertctl labels its builds): what no
variant uses and untagged build stages go; what is in use, what is not
convertctl's and a build stage someone tagged stay."""

from __future__ import annotations

import io
import uuid

import pytest
from conftest import convertctl, requires_docker

pytestmark = [pytest.mark.docker, requires_docker]


@pytest.fixture
def images():
    import docker

    client = docker.from_env()
    uid = uuid.uuid4().hex[:10]
    made: dict = {}

    def build(key: str, labels: str, tag: str | None = None):
        text = f'FROM scratch\nLABEL {labels} org.convertctl.test="{uid}-{key}"\n'
        image, _ = client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True)
        made[key] = image.id
        return image

    build("current", 'org.convertctl.stage="test"', f"convertctl-test/prune:current-{uid}")
    stale = build("stale", 'org.convertctl.stage="test"', f"convertctl-test/prune:stale-{uid}")
    stale.tag("convertctl-test/prune", f"plain-{uid}")  # the plain catalog tag follows a build
    build("stage", f'org.convertctl.build-stage="{uid}"')
    build("foreign", 'someone.else="1"')
    build("kept-stage", f'org.convertctl.build-stage="{uid}"', f"convertctl-test/prune:mine-{uid}")
    yield client, uid, made
    for image_id in made.values():
        try:
            client.images.remove(image_id, force=True)
        except docker.errors.ImageNotFound:
            pass


def exists(client, image_id: str) -> bool:
    import docker

    try:
        client.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def test_prune_removes_what_no_variant_uses_and_untagged_build_stages(images):
    from convertctl.runtimes import prune

    client, uid, made = images
    ours = set(made.values())
    doomed = [d for d in prune.plan(client, {f"convertctl-test/prune:current-{uid}"}) if d.id in ours]
    assert {d.id: d.why for d in doomed} == {
        made["stale"]: "no variant uses it",
        made["stage"]: "untagged build stage",
    }
    stale = next(d for d in doomed if d.id == made["stale"])
    assert sorted(stale.tags) == [f"convertctl-test/prune:plain-{uid}", f"convertctl-test/prune:stale-{uid}"]
    removed, kept = prune.remove(client, doomed)
    assert {d.id for d in removed} == {made["stale"], made["stage"]} and kept == []
    assert not exists(client, made["stale"]) and not exists(client, made["stage"])
    assert all(exists(client, made[k]) for k in ("current", "foreign", "kept-stage"))
    everything = {d.id for d in prune.plan(client, {f"convertctl-test/prune:current-{uid}"}, everything=True)}
    assert made["current"] in everything and made["foreign"] not in everything and made["kept-stage"] not in everything


def test_an_image_a_container_uses_is_kept_and_said(images):
    from convertctl.runtimes import prune

    client, uid, made = images
    container = client.containers.create(made["stale"], command=["/nothing"])
    try:
        doomed = [d for d in prune.plan(client, set()) if d.id == made["stale"]]
        removed, kept = prune.remove(client, doomed)
        assert removed == [] and kept and "container" in kept[0][1]
        assert exists(client, made["stale"])
    finally:
        container.remove(force=True)


def test_the_command_says_what_would_go_and_removes_nothing_with_dry_run(images):
    client, uid, made = images
    proc = convertctl("images", "prune", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if f"stale-{uid}" in x)
    assert line.startswith("would remove") and line.endswith("no variant uses it")
    assert f"current-{uid}" in proc.stdout, "not a catalog variant's: unused by this install"
    assert f"mine-{uid}" not in proc.stdout and all(exists(client, i) for i in made.values())
