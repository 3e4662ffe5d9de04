"""Stage images as the Docker runtime builds them, checked on a real daemon:
the current-torch export image is the CPU build with onnxruntime; the CA
bundle, index settings and wheelhouse stay in the build stage; convert and
quantize of one lock share the heavy layer (by digest); the content key
follows what decides the image's bits, not where its packages came from; a
registry that does not answer falls back to a build with one line; and a
model saved by the current torch converts on Docker with the default flags."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from conftest import convertctl, load_json, requires_docker
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK
from convertctl.runtimes.docker import hardening
from convertctl.runtimes.images import KEY_LABEL, ImageBuilder
from convertctl.store.pipconfig import IndexSettings, load_settings

pytestmark = [pytest.mark.docker, requires_docker]

PROBE = """
import importlib.metadata as md, json, os, torch, onnxruntime
names = sorted(d.metadata["Name"].lower() for d in md.distributions())
print(json.dumps({
    "torch": torch.__version__, "cuda": torch.version.cuda, "onnxruntime": onnxruntime.__version__,
    "gpu_packages": [n for n in names if n.startswith(("nvidia", "triton"))],
    "ca": os.path.exists("/etc/convertctl"), "wheels": os.path.exists("/wheels"),
    "env": sorted(k for k in os.environ if "CERT" in k or k.startswith("PIP_")),
}))
"""


@pytest.fixture(scope="module")
def client():
    import docker

    return docker.from_env()


@pytest.fixture(scope="module")
def builder(client):
    return ImageBuilder(client, load_settings(), registry="")


def ensure(builder, name):
    variant = load_catalog().get(name)
    builder.ensure(variant, lambda _: None)
    return variant


def test_current_torch_image_is_the_cpu_build_with_onnxruntime(client, builder):
    variant = ensure(builder, "export-torch2.13")
    out = client.containers.run(builder.ref(variant), ["-c", PROBE], remove=True, **hardening())
    info = json.loads(out.decode().strip().splitlines()[-1])
    assert info["torch"] == "2.13.0+cpu" and info["cuda"] is None
    assert info["gpu_packages"] == []
    assert info["onnxruntime"] == "1.32.0"
    # What only the build needed stays in the build stage.
    assert not info["ca"] and not info["wheels"] and info["env"] == []
    history = " ".join(h.get("CreatedBy") or "" for h in client.images.get(builder.ref(variant)).history())
    assert "/wheels" not in history and "ca-bundle" not in history and "TORCH_INDEX" not in history


def venv_layer(client, builder, variant) -> str:
    """The digest of the layer `COPY --from=build /opt/venv /opt/venv` made:
    the first layer on top of the base's (ENV makes none), which history
    says is the big /opt/venv copy."""
    image = client.images.get(builder.ref(variant))
    base = client.images.get(builder.base_for(variant)).attrs["RootFS"]["Layers"]
    layers = image.attrs["RootFS"]["Layers"]
    assert layers[: len(base)] == base
    copy = next(h for h in image.history() if re.search(r"COPY dir:\w+ in /opt/venv\s*$", h.get("CreatedBy") or ""))
    assert copy["Size"] > 100_000_000
    if copy["Id"].startswith("sha256:"):  # built here: the image that step made ends with that layer
        assert client.images.get(copy["Id"]).attrs["RootFS"]["Layers"][-1] == layers[len(base)]
    return layers[len(base)]


def test_convert_and_quantize_of_one_lock_share_the_venv_layer(client, builder):
    convert = load_catalog().ladder("docker", "convert")[0]
    quantize = load_catalog().quantizers(convert)[0]
    assert convert.requirements == quantize.requirements
    for v in (convert, quantize):
        builder.ensure(v, lambda _: None)
    shared = {v.name: venv_layer(client, builder, v) for v in (convert, quantize)}
    export = venv_layer(client, builder, ensure(builder, "export-torch2.13"))
    assert shared[convert.name] == shared[quantize.name] != export
    assert shared[convert.name].startswith("sha256:")


def test_key_follows_the_image_bits_not_the_package_sources(client, tmp_path):
    variant = load_catalog().get("export-torch2.13")
    plain = ImageBuilder(client, IndexSettings(), registry="")
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot a real one\n-----END CERTIFICATE-----\n")
    behind_a_proxy = ImageBuilder(
        client,
        IndexSettings(
            index_url="https://mirror.example/simple",
            extra_index_urls=["https://other.example/simple"],
            trusted_hosts=["mirror.example"],
            cert=str(ca),
        ),
        registry="",
    )
    assert plain.key(variant) == behind_a_proxy.key(variant)
    assert plain.build_args(variant) != behind_a_proxy.build_args(variant), "the sources do reach the build stage"
    # What does decide the bits changes the key: the lock, the base, the variant's label.
    other_lock = replace(variant, requirements="export/requirements-torch1.7-py3.9.txt")
    other_base = ImageBuilder(client, IndexSettings(), base_image="convertctl-base:bullseye", registry="")
    renamed = replace(variant, name="export-torch2.13-renamed")
    keys = {plain.key(variant), plain.key(other_lock), other_base.key(variant), plain.key(renamed)}
    assert len(keys) == 4


def test_registry_that_does_not_answer_falls_back_to_a_build(client):
    # A variant of its own (the name is in the key), so that it is not current;
    # every layer but the last labels comes from the cache.
    base = load_catalog().get("quantize-tf2.8")
    variant = replace(base, name="quantize-registry-fallback", tag="convertctl-test/registry:fallback")
    lines: list = []
    builder = ImageBuilder(client, load_settings(), registry="127.0.0.1:9")
    try:
        prepared = builder.ensure(variant, lines.append)
        pulls = [ln for ln in lines if "pull" in ln.lower()]
        assert len(pulls) == 1, pulls
        assert pulls[0].startswith(f"could not pull 127.0.0.1:9/{builder.ref(variant)} (")
        assert pulls[0].endswith("; building it here")
        assert prepared.created and builder.ref(variant) not in builder.pulled
        assert client.images.get(builder.ref(variant)).labels[KEY_LABEL] == builder.key(variant)
        # No registry: no pull attempted at all.
        client.images.remove(builder.ref(variant))
        lines.clear()
        assert ImageBuilder(client, load_settings(), registry="").ensure(variant, lines.append).created
        assert not [ln for ln in lines if "pull" in ln.lower()]
    finally:
        for ref in (builder.ref(variant), variant.tag):
            try:
                client.images.remove(ref)
            except Exception:  # noqa: BLE001 - the build may have failed before tagging
                pass


@pytest.mark.acceptance
def test_model_saved_by_current_torch_converts_on_docker(smallcnn, tmp_path):
    """The export ladder reads the archive, skips torch 1.7 and exports in the
    current-torch image; its ONNX file is checked with onnxruntime."""
    args = ["run", smallcnn, "--input-shape", "1,3,64,64", "--out", tmp_path, "--runtime", "docker"]
    proc = convertctl(*args, "--quant", "fp32", "--quant", "int8")
    report = load_json(tmp_path / "report.json")
    assert proc.returncode == EXIT_OK, report.get("failure")
    export = [e for e in report["ladder"] if e["stage"] == "export"]
    assert export[0]["variant"] == "export-torch1.7" and export[0]["status"] == "skipped"
    assert "torch 1.7.1 cannot load or export it" in export[0]["reason"]
    assert {(e["variant"], e["status"]) for e in export[1:]} == {("export-torch2.13", "used")}
    versions = {s["stage"]: s["versions"] for s in report["stages"]}
    assert versions["export"]["torch"] == "2.13.0+cpu"
    onnx = [c for c in report["checks"] if c["stage"] == "onnx"]
    assert onnx and all(c["status"] == "passed" for c in onnx), onnx
    tflite = {c["mode"]: c for c in report["checks"] if c["stage"] == "tflite"}
    assert tflite["fp32"]["outputs"][0]["max_abs"] <= 1e-4 and tflite["int8"]["status"] == "passed"
