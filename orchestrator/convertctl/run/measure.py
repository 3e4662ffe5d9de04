"""Latency measured where a phone's app would run the file: LiteRT
(ai-edge-litert) in its own small environment, not the TensorFlow that
wrote the file. Each file with the XNNPACK delegate on and off, at 1 thread
and at --threads (when it asks for more), median and p90 over a fixed
number of runs. Latency informs; it never fails a run: a measure
environment that cannot be made is a notice. A timing with more threads
than the host has CPUs is flagged (threads then wait for each other: 4
threads on 2 cores read 132 ms against 0.9 ms); a timing replayed from the
stage cache says when it was measured."""

from __future__ import annotations

from convertctl.errors import EnvironmentProblem, MachineProblem
from convertctl.run.context import Context
from convertctl.run.protocol import MeasureRequest
from convertctl.runtimes.base import Step

WARMUP = 3


def thread_counts(threads: int) -> list[int]:
    """1 thread (what the curve and the cap compare), and --threads when it asks for more."""
    return sorted({1, max(1, int(threads))})


def measure(
    ctx: Context, files: dict, work: str, runs: int, full: bool = True, rounds: int = 1, threads: int = 1
) -> dict:
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
        "threads": thread_counts(threads) if full else [1],
        "xnnpack": [True, False] if full else [True],
    }
    try:
        run = ctx.runner.run(Step(variant, work, dict(request)))
    except MachineProblem:  # a full disk ends the run wherever it is met
        raise
    except EnvironmentProblem as exc:
        return {k: {"error": f"measure environment {variant.name}: {exc.message}"} for k in files}
    if not run.ok:
        return {k: {"error": f"measure stage ({variant.name}): {run.error}"} for k in files}
    runtime = run.result.get("runtime", {})
    name = f"{runtime.get('name', 'litert')} {runtime.get('version', '')}".strip()
    stage: dict = next((st for st in reversed(ctx.report.stages) if st.get("work") == work), {})
    out = {}
    for label, got in run.result.get("measurements", {}).items():
        record = {"runtime": name, "variant": variant.name, "cpu_count": run.result.get("cpu_count", 0)}
        record["configs"] = got.get("configs", [])
        if run.result.get("measured_at"):
            record["measured_at"] = run.result["measured_at"]
        if stage.get("cached"):  # the same bytes timed by an earlier run: not this run's timing
            record["cached"] = True
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
    its own file (a process start, ~0.1 s, is the price on a full run).
    threads: --threads (None: as the run's recorded options say)."""
    files = {a["mode"]: a["file"] for a in artifacts if a.get("file") and a.get("status") == "ok"}
    if runs <= 0 or not files:  # --latency-runs 0: not asked for
        return
    got: dict = {}
    for mode, file in files.items():
        got.update(measure(ctx, {mode: file}, f"measure/final/{mode}", runs, threads=ctx.options.threads))
    for art in artifacts:
        if art["mode"] in got:
            art["latency"] = got[art["mode"]]
    errors = sorted({g["error"] for g in got.values() if g.get("error")})
    for error in errors:
        ctx.report.notices.append(f"latency not measured for some files: {error}")
    over = oversubscribed(next(iter(got.values()), {}))
    if over:
        ctx.report.notices.append(over)
    if not got:
        ctx.report.notices.append(
            f"latency not measured: the catalog has no measure environment for the {ctx.runner.runtime.name} runtime"
        )


def oversubscribed(latency: dict) -> str:
    """A warning when a timing used more threads than the host has CPUs, else ''."""
    cpus = latency.get("cpu_count") or 0
    most = max((c.get("threads", 1) for c in latency.get("configs", [])), default=1)
    if not cpus or most <= cpus:
        return ""
    return (
        f"latency at {most} threads was measured on a host with {cpus} CPU(s): the threads wait for each "
        f"other, so that timing says nothing about a device; use --threads {cpus} or fewer here"
    )
