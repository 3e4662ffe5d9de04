"""The model zoo through `--converter auto` on the local runtime: each
architecture must come out as validated fp32 and fp16 files, and the
report must name the rung that made them.

The models (tests/zoo_models.py) are built in the local export venv: the
host test process has no torch. Their weights are random, so their class
scores have near-ties that fp16 rounding can flip; the parity checks run on
32 samples instead of 8 so that one flipped near-tie (97% agreement) does
not read as a failed file, with fp16's threshold (90%) unchanged.
"""

from __future__ import annotations

import pytest
from conftest import convertctl, load_json
from convertctl.config.catalog import load_catalog
from convertctl.errors import EXIT_OK
from stage_envs import build_zoo

pytestmark = [pytest.mark.zoo, pytest.mark.acceptance]
ZOO = ["resnet18", "mobilenetv2", "mobilenetv3_small", "efficientnet_b0", "convnext", "transformer", "gru", "lstm"]
MODES = ["fp32", "fp16"]
SAMPLES = 32


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    where = tmp_path_factory.mktemp("zoo")
    return where, build_zoo(where, *ZOO)


def find_report(out):
    if (out / "report.json").is_file():
        return load_json(out / "report.json")
    kept = sorted(out.glob(".convertctl/runs/*/report.json"))
    return load_json(kept[-1]) if kept else None


@pytest.mark.parametrize("name", ZOO)
def test_fp32_and_fp16_validate_through_the_ladder(name, zoo, tmp_path):
    where, facts = zoo
    shape = ",".join(map(str, facts[name]["input_shape"]))
    out = tmp_path / "out"
    args = ["run", where / f"{name}.pt", "--input-shape", shape, "--samples", SAMPLES, "--out", out]
    proc = convertctl(*args, "--runtime", "local", "--converter", "auto", *[a for m in MODES for a in ("-q", m)])
    report = find_report(out)
    rungs = [e for e in (report or {}).get("ladder", []) if e["stage"] == "convert"]
    made = {a["mode"]: a.get("variant") for a in (report or {}).get("artifacts", [])}
    print(f"{name}: exit {proc.returncode}; made by {made}; rungs {[(e['variant'], e['status']) for e in rungs]}")
    assert proc.returncode == EXIT_OK, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report["status"] == "passed" and report["inputs"]["samples"]["count"] == SAMPLES

    ladder = [v.name for v in load_catalog().ladder("local", "convert")]
    for mode in MODES:
        art = next(a for a in report["artifacts"] if a["mode"] == mode)
        check = next(c for c in report["checks"] if c["mode"] == mode and c.get("variant") == art["variant"])
        assert check["status"] == "passed", (mode, check["failures"])
        # The report names the rung that made the file, and that rung's row says it made it.
        assert art["variant"] in ladder
        row = next(e for e in rungs if e["variant"] == art["variant"])
        assert row["status"] == "used" and row["modes"][mode] == "ok"
        assert (out / f"{name}_{mode}.tflite").stat().st_size == art["size_bytes"]
    # Rungs are tried in the catalog's order, and none after the one that made every mode.
    assert [e["variant"] for e in rungs] == ladder[: len(rungs)]
    assert rungs[-1]["status"] == "used"
