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
    build("cache-used", f'org.convertctl.build-stage="{uid}-a"', f"convertctl/build-cache:used-{uid}")
    build("cache-unused", f'org.convertctl.build-stage="{uid}-b"', f"convertctl/build-cache:unused-{uid}")
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
    in_use = {f"convertctl-test/prune:current-{uid}", f"convertctl/build-cache:used-{uid}"}
    doomed = [d for d in prune.plan(client, in_use) if d.id in ours]
    assert {d.id: d.why for d in doomed} == {
        made["stale"]: "no variant uses it",
        made["stage"]: "untagged build stage",
        made["cache-unused"]: "a build cache no lock of the catalog uses",
    }
    stale = next(d for d in doomed if d.id == made["stale"])
    assert sorted(stale.tags) == [f"convertctl-test/prune:plain-{uid}", f"convertctl-test/prune:stale-{uid}"]
    removed, kept = prune.remove(client, doomed)
    assert {d.id for d in removed} == {made["stale"], made["stage"], made["cache-unused"]} and kept == []
    assert not any(exists(client, made[k]) for k in ("stale", "stage", "cache-unused"))
    assert all(exists(client, made[k]) for k in ("current", "foreign", "kept-stage", "cache-used"))
    everything = {d.id for d in prune.plan(client, in_use, everything=True)}
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


def test_a_build_leaves_its_build_stage_tagged_as_the_cache_and_no_untagged_image(images):
    """What the legacy builder leaves untagged (the multi-stage build stage) is tagged
    convertctl/build-cache:<lock>; an earlier build stage of the same lock goes."""
    import docker
    from convertctl.runtimes.images import BUILD_CACHE, ImageBuilder, build_cache_tag
    from convertctl.store.pipconfig import IndexSettings

    client, uid, made = images
    digest = f"{uid}{'0' * 54}"

    class Lock:  # what the builder reads of a variant here: its lock's digest
        def lock_digest(self):
            return digest

    stages = []
    for n in range(2):
        text = f'FROM scratch\nLABEL org.convertctl.build-stage="{digest}" n="{n}"\n'
        stages.append(client.images.build(fileobj=io.BytesIO(text.encode()), rm=True)[0].id)
    builder = ImageBuilder(client, IndexSettings())
    builder._keep_build_stage(Lock())
    try:
        tagged = client.images.get(build_cache_tag(Lock()))
        assert tagged.id in stages and build_cache_tag(Lock()) == f"{BUILD_CACHE}:{digest[:12]}"
        left = client.images.list(filters={"dangling": True, "label": f"org.convertctl.build-stage={digest}"})
        assert left == [], "no untagged build stage of the lock is left"
    finally:
        for image_id in stages:
            try:
                client.images.remove(image_id, force=True)
            except docker.errors.ImageNotFound:
                pass
