"""The small zoo the batch tests convert: four models of different families
(a GRU, a MobileNetV2, a Transformer encoder, a ConvNeXt; tests/zoo_models.py,
built in the local export venv), and the batch file that lists them."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_json
from stage_envs import build_zoo

MODELS = ("gru", "mobilenetv2", "transformer", "convnext")
MODES = ("fp32", "fp16")
# 32 samples: the random-weight models have near-tied class scores, and one
# flipped near-tie in 8 samples would read as a failed fp16 file (tests/test_zoo.py).
SAMPLES = 32


def make_zoo(where: Path, names=MODELS) -> Path:
    """where/<name>.pt and where/zoo.toml listing them; the batch file's path."""
    build_zoo(where, *names)
    return batch_file(where, names, where / "zoo.toml")


def batch_file(where: Path, names, path: Path) -> Path:
    """A batch file of some of the zoo's models (each its own family), as the tests convert them."""
    facts = json.loads((where / "zoo.json").read_text())
    lines = ["[defaults]", f"quant = {json.dumps(list(MODES))}", f"samples = {SAMPLES}", "latency_runs = 0"]
    lines.append('runtime = "local"')
    for name in names:
        shape = ",".join(map(str, facts[name]["input_shape"]))
        model = where / f"{name}.pt"
        lines += ["", f"[models.{name}]", f'model = "{model}"', f'input_shape = "{shape}"', f'family = "{name}"']
    path.write_text("\n".join(lines) + "\n")
    return path


def check_converted(out: Path, names=MODELS, modes=MODES) -> dict:
    """Every model passed, every file there and validated; the batch report's data."""
    batch = load_json(out / "batch-report.json")
    assert batch["exit_code"] == 0 and batch["status"] == "passed", batch
    rows = {m["name"]: m for m in batch["models"]}
    assert sorted(rows) == sorted(names)
    for name in names:
        row = rows[name]
        assert row["state"] == "passed" and row["exit_code"] == 0, row
        assert row["peak_rss_mb"] and (row["cached"] or row["peak_rss_mb"] > 50), row  # measured, not made up
        report = load_json(out / name / "report.json")
        assert report["status"] == "passed" and sorted(report["modes"]) == sorted(modes)
        for mode in modes:
            assert row["modes"][mode]["status"] == "passed", (name, mode, row["modes"][mode])
            art = next(a for a in report["artifacts"] if a["mode"] == mode)
            assert Path(art["path"]) == (out / name / f"{name}_{mode}.tflite").resolve()
            assert Path(art["path"]).stat().st_size == art["size_bytes"] == row["modes"][mode]["size_bytes"]
            checks = [c for c in report["checks"] if c["stage"] == "tflite" and c["mode"] == mode]
            assert checks and all(c["status"] == "passed" for c in checks if c["variant"] == art["variant"])
        stages = [s for s in report["stages"] if not s["cached"]]
        assert all((s["peak_rss_mb"] or 0) > 0 for s in stages), stages  # every stage that ran was measured
    return batch
