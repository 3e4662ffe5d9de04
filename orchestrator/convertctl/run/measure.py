"""Latency measured where a phone's app would run the file: LiteRT
(ai-edge-litert) in its own small environment, not the TensorFlow that
wrote the file. Each file with the XNNPACK delegate on and off, at 1 and 4
threads, median and p90 over a fixed number of runs. Latency informs; it
never fails a run: a measure environment that cannot be made is a notice."""

from __future__ import annotations

from convertctl.errors import EnvironmentProblem
from convertctl.run.context import Context
from convertctl.run.protocol import MeasureRequest
from convertctl.runtimes.base import Step

THREADS = [1, 4]
WARMUP = 3


def measure(ctx: Context, files: dict, work: str, runs: int, full: bool = True, rounds: int = 1) -> dict:
    """{label: latency record} for {label: run-dir-relative .tflite path};
    with full=False only XNNPACK at 1 thread (enough to rank candidates).
    Raises nothing: a failure comes back as {"error": ...} per label."""
    variant = ctx.plan.measure if files and runs > 0 else None
    if variant is None:
        return {}
    request: MeasureRequest = {
        "files": [{"name": k, "file": v} for k, v in files.items()],
        "runs": runs,
        "rounds": rounds,
        "warmup": WARMUP,
        "threads": THREADS if full else [1],
        "xnnpack": [True, False] if full else [True],
    }
    try:
        run = ctx.runner.run(Step(variant, work, dict(request)))
    except EnvironmentProblem as exc:
        return {k: {"error": f"measure environment {variant.name}: {exc.message}"} for k in files}
    if not run.ok:
        return {k: {"error": f"measure stage ({variant.name}): {run.error}"} for k in files}
    runtime = run.result.get("runtime", {})
    name = f"{runtime.get('name', 'litert')} {runtime.get('version', '')}".strip()
    out = {}
    for label, got in run.result.get("measurements", {}).items():
        record = {"runtime": name, "variant": variant.name, "cpu_count": run.result.get("cpu_count", 0)}
        record["configs"] = got.get("configs", [])
        if got.get("error"):
            record["error"] = got["error"]
        out[label] = record
    return out


def pick(latency: dict | None, xnnpack: bool = True, threads: int = 1) -> dict | None:
    """One configuration of a latency record, or None."""
    for config in (latency or {}).get("configs", []):
        if config["xnnpack"] == xnnpack and config["threads"] == threads:
            return config
    return None


def measure_artifacts(ctx: Context, artifacts: list, runs: int) -> None:
    """Each final file measured in a step of its own; each artifact gets
    "latency". One step per file, not one for all: the cache then replays a
    file's timing by its bytes, so a mode added to a finished run times only
    its own file (a process start, ~0.1 s, is the price on a full run)."""
    files = {a["mode"]: a["file"] for a in artifacts if a.get("file") and a.get("status") == "ok"}
    if runs <= 0 or not files:  # --latency-runs 0: not asked for
        return
    got: dict = {}
    for mode, file in files.items():
        got.update(measure(ctx, {mode: file}, f"measure/final/{mode}", runs))
    for art in artifacts:
        if art["mode"] in got:
            art["latency"] = got[art["mode"]]
    errors = sorted({g["error"] for g in got.values() if g.get("error")})
    for error in errors:
        ctx.report.notices.append(f"latency not measured for some files: {error}")
    if not got:
        ctx.report.notices.append(
            f"latency not measured: the catalog has no measure environment for the {ctx.runner.runtime.name} runtime"
        )
