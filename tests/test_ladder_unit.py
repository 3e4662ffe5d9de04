"""Catalog and rendering facts of the ladder, without stages: a catalog of
one's own through CONVERTCTL_CATALOG, and channels-last I/O said in the
rendered report."""

from __future__ import annotations

import pytest
from catalogs import catalog_file
from convertctl.config import modes
from convertctl.config.catalog import catalog_path, images_dir, load_catalog
from convertctl.errors import UsageError
from convertctl.report.model import Report
from convertctl.report.render import rows


def test_convertctl_catalog_names_a_catalog_of_ones_own(tmp_path, monkeypatch):
    mine = catalog_file(tmp_path, ["convert-tf2.15"])
    monkeypatch.setenv("CONVERTCTL_CATALOG", str(mine))
    assert catalog_path() == mine
    assert [v.name for v in load_catalog().ladder("local", "convert")] == ["convert-tf2.15"]
    # Paths in it stay relative to images/: the shipped locks and scripts.
    assert load_catalog().get("litert-torch0.10").script_path == images_dir() / "litert" / "convert.py"
    mine.write_text("[ladders.local]\nconvert = [1")
    with pytest.raises(UsageError, match=str(mine)):
        load_catalog()


def test_shipped_catalog_without_the_variable(monkeypatch):
    monkeypatch.delenv("CONVERTCTL_CATALOG", raising=False)
    assert catalog_path() == images_dir() / "catalog.toml"


def test_every_family_has_its_stage_scripts_and_locks():
    catalog = load_catalog()
    for v in catalog.variants.values():
        assert v.script_path.is_file() and v.lock_path.is_file(), v.name
        assert v.stage_dir.is_dir(), v.name
    litert = catalog.pick("local", "convert", "litert-torch")
    assert [v.name for v in litert] == ["litert-torch0.10"]
    assert litert[0].input == "torch" and litert[0].layouts == ("nchw", "nhwc")
    assert [q.kind for q in catalog.quantizers(litert[0])] == ["litert-quantizer"]
    assert all(catalog.quantizer_for(litert[0], m)[0] is not None for m in modes.NAMES)
    # The Docker ladder still starts with the tutorial's pins.
    assert catalog.ladder("docker", "convert")[0].pins["tensorflow-cpu"] == "2.8.4"


def test_channels_last_io_is_said_in_the_rendered_report():
    io = {"dtype": "float32", "name": "input", "shape": [1, 8, 8, 3], "scale": 0.0, "zero_point": 0}
    art = {"mode": "fp32", "status": "ok", "variant": "v", "inputs": [io], "outputs": [], "size_bytes": 2048}
    report = Report(model={}, runtime="local", modes=["fp32"])
    report.artifacts = [{**art, "layout": {"inputs": {"input": [0, 2, 3, 1]}, "outputs": {}}}]
    assert any("io float32 NHWC" in r[3] for r in rows(report))
    report.artifacts = [{**art, "layout": {"inputs": {}, "outputs": {}}}]
    assert not any("NHWC" in r[3] for r in rows(report))
