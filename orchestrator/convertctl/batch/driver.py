"""A batch from plan to combined report: the executor made ready first
(locally: the runtime chosen once and the environments every model starts
with prepared once, so that workers find them instead of racing to build
them; on Ray: the cluster reached and every node checked), then the
fan-out, then batch-report.json and .md in --out. Returns the exit code
(outcome.py says how it summarises the models')."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from convertctl.batch import page, summary
from convertctl.batch.outcome import Outcome, exit_code
from convertctl.batch.plan import Plan
from convertctl.batch.prepare import prepare_local

EXECUTORS = ("local", "ray")


@dataclass
class Choices:
    executor: str = "local"
    jobs: int | None = None  # local: at most this many at once (default: the cores)
    fail_fast: bool = False
    address: str = "auto"  # ray
    shared_dir: str = ""  # ray: a folder every node sees at the same path
    cpus: float = 1.0  # ray: CPUs each conversion asks for


def run_batch(plan: Plan, choices: Choices, display_for, say) -> tuple[int, dict]:
    """Run the batch: (exit code, the batch report's data). display_for(outcomes, workers)
    makes the progress display."""
    outcomes = [Outcome(m.name, str(m.path), str(Path(m.options.out).resolve()), m.family) for m in plan.models]
    state_dir = plan.out.resolve() / ".convertctl" / "batch" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    notices: list = []
    if choices.executor == "ray":
        from convertctl.batch.cluster import RayPool

        pool = RayPool(choices, say)
        pool.connect()  # an unreachable cluster, or a node without convertctl: exit 5 before any conversion
        runtimes = sorted({m.options.runtime for m in plan.models})
    else:
        from convertctl.batch.local import LocalPool
        from convertctl.batch.sizing import Sizing

        runtimes, notices = prepare_local(plan.models, say)
        pool = LocalPool(Sizing.measure(choices.jobs), choices.fail_fast, state_dir)  # type: ignore[assignment]
    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    interrupted = True
    try:
        with display_for(outcomes, pool.workers) as display:
            interrupted = pool.run(plan.models, outcomes, display)
    finally:
        code = exit_code(outcomes, interrupted)
        meta = {
            "source": plan.source,
            "out": str(plan.out.resolve()),
            "executor": pool.name,
            "runtimes": runtimes,
            "workers": pool.workers,
            "sizing": pool.sizing.to_dict() if hasattr(pool, "sizing") else {},
            "seconds": round(time.monotonic() - started, 1),
            "interrupted": interrupted,
            "exit_code": code,
            "status": "passed" if code == 0 else "interrupted" if code == 130 else "failed",
            "notices": notices,
            "state_dir": str(state_dir),
        }
        data = summary.save(Path(plan.out), outcomes, meta)
        page.save(Path(plan.out), outcomes, meta)
        pool.close()
    return code, data
