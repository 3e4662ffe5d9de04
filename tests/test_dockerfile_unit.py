"""One Dockerfile template (images/Dockerfile.template) rendered per catalog
variant. What lets Docker share the heavy layer is text: every variant that
shares a lock must render the same lines down to the installed venv, and
the build stage's steps before the lock must be the same for every lock.
No daemon needed; the builds themselves are tests/test_images_docker.py's."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import pytest
from convertctl.config.catalog import images_dir, load_catalog
from convertctl.errors import EnvironmentProblem
from convertctl.runtimes.images import HEAVY_END, ImageBuilder, render_dockerfile
from convertctl.store.pipconfig import IndexSettings

VARIANTS = list(load_catalog().variants.values())


def heavy_part(text: str) -> str:
    """The rendered text down to the end of the venv layer, header comment left out."""
    assert HEAVY_END in text
    head = text.split(HEAVY_END)[0]
    return head[head.index("ARG BASE_IMAGE") :]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_variant_renders_a_whole_dockerfile(variant):
    text = render_dockerfile(variant)
    assert "{{" not in text and "}}" not in text
    assert f"ARG BASE_IMAGE={variant.base_image}\n" in text
    assert f"COPY stage/ /opt/convertctl/{variant.image_folder}/\n" in text
    assert f'LABEL org.convertctl.stage="{variant.stage}"' in text
    assert "USER 65534:65534" in text and 'ENTRYPOINT ["/opt/venv/bin/python"]' in text
    for name, version in variant.pins.items():  # the smoke test checks what the catalog says is inside
        assert f" {name}=={version}" in text
    heavy = heavy_part(text)
    assert "COPY --from=build /opt/venv /opt/venv" in heavy and "COPY stage/" not in heavy
    assert variant.name not in heavy, "a variant's name above the venv layer would keep it from being shared"


def test_the_install_layer_is_the_same_text_for_every_variant_sharing_a_lock():
    by_lock: dict = {}
    for v in VARIANTS:
        by_lock.setdefault(v.requirements, []).append(v)
    shared = [group for group in by_lock.values() if len(group) > 1]
    assert len(shared) >= 4, "convert and quantize share their TensorFlow (and the 2.x onnx2tf) locks"
    for group in shared:
        texts = {v.name: heavy_part(render_dockerfile(v)) for v in group}
        assert len(set(texts.values())) == 1, f"{sorted(texts)} share {group[0].requirements} but not its layer"


def test_the_build_stage_differs_between_locks_by_the_lock_only():
    """Before its lock, the build stage is the same for every lock: the CA
    and venv steps are cached once per base image."""
    pattern = re.compile(r'org\.convertctl\.build-stage="[0-9a-f]{64}"')
    stages = {pattern.sub("LOCK", heavy_part(render_dockerfile(v)).split("FROM ${BASE_IMAGE}\n")[0]) for v in VARIANTS}
    bases = {re.sub(r"ARG BASE_IMAGE=\S+", "", s) for s in stages}
    assert len(bases) == 1


def test_the_content_key_covers_the_rendered_text():
    builder = ImageBuilder(client=None, settings=IndexSettings(), base_image="convertctl-base:bookworm")
    builder._image = lambda tag: None  # no daemon: the base's name stands for its id
    variant = next(v for v in VARIANTS if v.name == "quantize-tf2.19")
    other_pins = replace(variant, pins={**variant.pins, "onnx": "1.19.1"})
    assert render_dockerfile(variant) != render_dockerfile(other_pins)
    assert builder.key(variant) != builder.key(other_pins), "a smoke-test change makes another image"


def test_the_context_holds_the_rendered_dockerfile_and_the_smoke_script(tmp_path):
    builder = ImageBuilder(client=None, settings=IndexSettings(), base_image="convertctl-base:trixie")
    variant = next(v for v in VARIANTS if v.name == "measure-litert2.3")
    ctx = builder.context(variant, tmp_path)
    assert (ctx / "Dockerfile").read_text() == render_dockerfile(variant)
    assert (ctx / "common" / "smoke.py").is_file() and (ctx / "stage" / "measure.py").is_file()
    assert not list(images_dir().rglob("Dockerfile")), "one template, no Dockerfile kept per folder"


def test_a_pin_that_is_not_a_plain_name_and_version_is_refused():
    variant = VARIANTS[0]
    for pins in ({}, {"torch": "1.7; rm -rf /"}, {"a b": "1"}):
        with pytest.raises(EnvironmentProblem, match="cannot be smoke-tested"):
            render_dockerfile(replace(variant, pins=pins))


def test_variants_sharing_a_lock_share_its_base_and_python():
    for a, b in itertools.combinations(VARIANTS, 2):
        if a.requirements == b.requirements:
            assert (a.base_image, a.debian, a.python) == (b.base_image, b.debian, b.python), (a.name, b.name)


def test_a_build_that_meets_a_full_disk_is_the_machine_not_the_image():
    """Docker's data root full: a MachineProblem (exit 5, ends the ladder)
    naming the cause and `images prune`; any other failure stays the
    image's EnvironmentProblem with Docker's last lines."""
    from convertctl.errors import EXIT_ENVIRONMENT, EnvironmentProblem, MachineProblem

    builder = ImageBuilder(client=None, settings=IndexSettings(), base_image="convertctl-base:bookworm")
    variant = load_catalog().environments("docker")[0]
    for said in (
        "write /var/lib/docker/overlay2/x/diff/y: no space left on device",  # the daemon's (Go's) words
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",  # pip's
    ):
        full = builder._problem(variant, ["Step 7/12 : RUN pip install", said])
        assert isinstance(full, MachineProblem) and full.exit_code == EXIT_ENVIRONMENT
        assert "no space left on the device" in full.message and "images prune" in full.hint
    other = builder._problem(variant, ["ERROR: No matching distribution found for tensorflow-cpu==9"])
    assert type(other) is EnvironmentProblem and "No matching distribution" in other.message
