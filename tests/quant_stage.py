"""Run a stage script on a request of the test's own, in convertctl's real
local stage environment: the quantize-stage tests' way in below the host.
A run directory holds the inputs; each step is a WORK folder in it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from convertctl.config.catalog import load_catalog
from stage_envs import env_python

# The request fields every quantize step takes, for one float input named "input".
BASE = {"input_names": ["input"], "output_names": ["output"], "allow_flex": False, "latency_runs": 0, "threads": 1}


def litert_variant() -> str:
    return next(v.name for v in load_catalog().variants.values() if v.family == "litert-torch")


def quantizer_of(convert_variant: str) -> str:
    catalog = load_catalog()
    return catalog.quantizers(catalog.get(convert_variant))[0].name


def run_stage(variant: str, run_dir: Path, work: str, request: dict, timeout: int = 900) -> tuple[int, dict]:
    """(exit code, result.json) of the variant's stage script on this request."""
    script = load_catalog().get(variant).script_path
    (run_dir / work).mkdir(parents=True, exist_ok=True)
    (run_dir / work / "request.json").write_text(json.dumps(request))
    proc = subprocess.run(
        [str(env_python(variant)), str(script), str(run_dir), work],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    result_file = run_dir / work / "result.json"
    assert result_file.is_file(), f"{script} wrote no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(result_file.read_text())
    result["_log"] = proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.returncode, result


def litert_fp32(run_dir: Path, model: str) -> str:
    """The fp32 .tflite of run_dir/<model>.pt made by the litert-torch convert stage (relative path)."""
    convert = litert_variant()
    shape = json.loads((run_dir / "models.json").read_text())[model]["input_shape"]
    request = {
        **BASE,
        "model": str(run_dir / f"{model}.pt"),
        "model_format": "torchscript",
        "input_shapes": [shape],
        "input_dtypes": ["float32"],
        "input_sets": {"samples": f"{model}_samples.npz"},
        "layout": None,
        "dynamic_batch": False,
    }
    code, result = run_stage(convert, run_dir, f"convert-{model}", request)
    assert code == 0, result.get("error") or result["_log"]
    return result["tflite"]
