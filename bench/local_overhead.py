"""How much does convertctl cost on top of the work it orchestrates? (local runtime)

Measures, in one run and on the same machine state:

  A  the wall time of a warm `convertctl run MODEL --runtime local` (the
     environments already exist, so nothing is installed), and
  B  the wall time of the same three stage scripts run bare, one after the
     other, in the same venvs: `<venv>/bin/python <script> <run_dir>`, fed
     the request.json files of a kept convertctl run.

B is the floor: the stages themselves (torch export, onnx-tf conversion,
TFLite quantization, each stage's reference runs). A - B is what convertctl
adds: host start-up (typer/rich/numpy imports), input generation, the
environment checks, validation against PyTorch, the report and moving the
artifacts into --out. The ratio A/B is the overhead factor; the goal is
A/B <= 1.15, i.e. convertctl adds at most 15 % on top of the bare stages.

The two are interleaved (A, B, A, B, ...) so slow drift on a shared machine
hits both alike, and the median of --repeat pairs is reported. One warm-up
run comes first (it also builds missing environments and keeps its run
directory for B). On a busy machine the A/B ratio is noisy (see the
per-pair ratios); "own time" (each convertctl run's wall time minus the time
inside its stage processes) and the ratio it implies, wall / time in
stages, are the drift-free view of the same overhead. If the two ratios
disagree by much, the machine was noisy: rerun with a larger --repeat.

Exit status 0 whether or not the goal is met (a benchmark, not a test); 2
only if nothing could be measured.

    python bench/local_overhead.py [--repeat 3] [--model M.pt] [--quant fp16]
                                   [--input-shape 1,3,256,256] [--example smallcnn]
    (with the Python that has convertctl installed; common.py is imported
    from beside this file)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import console, convertctl_cmd, example_model, fail, med, print_overhead, run_convertctl, timed, warm_up
from convertctl.config.catalog import images_dir, load_catalog
from convertctl.runtimes.local import PYCACHE, process_environ
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings


def run_bare(steps: list, store: EnvStore, template: Path, run_dir: Path) -> dict:
    """The same steps as convertctl ran (the kept run's stage list), each
    script run bare in a fresh copy of the template; seconds per stage."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    run_dir.chmod(0o777)
    catalog = load_catalog()
    times: dict = {}
    for st in steps:
        variant = catalog.get(st["variant"])
        log = run_dir / st["work"] / "stage.log"
        # Same environment variables and cwd as the local runtime gives a stage.
        seconds, code = timed(
            [
                str(store.path_for(variant) / "bin" / "python"),
                str(images_dir() / st["script"]),
                str(run_dir),
                st["work"],
            ],
            log,
            env=process_environ(store.path_for(variant), run_dir),
            cwd=str(run_dir),
        )
        times[st["stage"]] = times.get(st["stage"], 0.0) + seconds
        if code:
            fail(f"bare {st['stage']} ({st['work']}) failed (exit {code})", log.read_text(errors="replace"))
    return times


def validation_seconds(run_dir: Path, report: dict) -> float | None:
    """Validation runs inside `convertctl run`; redo its comparisons here on
    the kept run's outputs to see its share (numpy only, no stage)."""
    from convertctl.checks import validate
    from convertctl.run.comparer import Comparer
    from convertctl.store.digests import Hasher

    comparer = Comparer(run_dir, Hasher())
    ref_work = next(s["work"] for s in report["stages"] if s["stage"] == "export")
    started = time.perf_counter()
    ref = comparer.outputs(f"{ref_work}/reference_samples.npz")
    for st in report["stages"]:
        for name in ("onnx_samples.npz", "outputs_samples.npz"):
            got = comparer.outputs(f"{st['work']}/{name}")
            if got is not None and ref is not None:
                validate.compare(st["stage"], st.get("mode"), "samples", ref, got, validate.tolerance_for("fp32"))
    return time.perf_counter() - started


def bytecode_note(plan, store: EnvStore) -> str:
    """Not in the ratio (bare stages pay it too): stages compile what they
    import into their venv's .pycache on first use, so only the warm-up run
    should pay for compiling. Says how much is compiled by now."""
    py = pyc = 0
    for env in {store.path_for(v) for v in plan}:
        for site in env.glob("lib/python*/site-packages"):
            py += sum(1 for _ in site.rglob("*.py"))
        pyc += sum(1 for _ in (env / PYCACHE).rglob("*.pyc"))
    return f"stage venvs: {pyc} .pyc files (compiled on first import) for {py} .py files"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="TorchScript model (default: build the example with the local export env)")
    parser.add_argument(
        "--example",
        default="mobilenetv2",
        choices=["mobilenetv2", "smallcnn"],
        help="example to build when --model is not given",
    )
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16")
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs (median reported)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-local-"))
    try:
        model = example_model(args, "local", work)
        store = EnvStore(settings=load_settings())
        plan = load_catalog().environments("local")
        kept = warm_up(args, model, "local", work)
        # Host start-up alone: interpreter + typer/rich/numpy/convertctl imports.
        startup = med([timed(convertctl_cmd() + ["--help"], work / "help.log")[0] for _ in range(3)])

        a_total, b_total, a_st, b_st = [], [], [], []  # wall times; {stage: seconds} per run
        for i in range(args.repeat):
            secs, report = run_convertctl(args, model, "local", work / "out")
            a_total.append(secs)
            per_stage: dict = {}
            for row in report["stages"]:
                per_stage[row["stage"]] = per_stage.get(row["stage"], 0.0) + row["seconds"]
            a_st.append(per_stage)
            b_st.append(run_bare(report["stages"], store, work / "template", work / "bare"))
            b_total.append(sum(b_st[-1].values()))
            console.print(f"  pair {i + 1}/{args.repeat}: convertctl {a_total[-1]:.1f} s, bare {b_total[-1]:.1f} s")

        host = [("startup (convertctl --help)", startup)]
        validation = validation_seconds(kept, json.loads((kept / "report.json").read_text()))
        if validation is not None:
            host.append(("validation (redone in-process)", validation))
        catalog = load_catalog()
        print_overhead(
            f"local: {model.name} {args.input_shape} {args.quant}, median of {args.repeat}",
            {st["stage"]: catalog.get(st["variant"]) for st in report["stages"]},
            a_total,
            b_total,
            a_st,
            b_st,
            host,
            "bare stages",
        )
        console.print(f"[dim]{bytecode_note(plan, store)}[/]", highlight=False)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
