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
directory for B). Absolute times on a busy machine are noisy; the ratio is
the number to read. Exit status is 0 whether or not the goal is met (this
is a benchmark, not a test); 2 only if nothing could be measured.

    python bench/local_overhead.py [--repeat 3] [--model M.pt] [--quant fp16]
                                   [--input-shape 1,3,256,256] [--example smallcnn]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orchestrator.catalog import STAGES, load_catalog
from orchestrator.envstore import EnvStore
from orchestrator.pipconfig import load_settings
from orchestrator.runtimes.base import stage_environ

GOAL = 1.15
console = Console()


def convertctl_cmd() -> list[str]:
    # The console script a user would type; `python -m orchestrator` if this
    # interpreter has none (same code, same imports).
    script = Path(sys.executable).with_name("convertctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator"]


def timed(cmd: list[str], log: Path, **kw) -> tuple[float, int]:
    with open(log, "w") as out:
        started = time.perf_counter()
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw).returncode
        return time.perf_counter() - started, code


def tail(path: Path, n: int = 12) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def ensure_model(args, work: Path) -> Path:
    if args.model:
        return Path(args.model).resolve()
    # Built by the local export env (torch 2.x); kept between runs of this script.
    cache = Path(tempfile.gettempdir()) / "convertctl-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"{args.example}-{args.input_shape.replace(',', 'x')}-local.pt"
    if not path.is_file():
        console.print(f"building the example model {path} ...")
        secs, code = timed(convertctl_cmd() + ["example", str(path), "--name", args.example,
                                               "--input-shape", args.input_shape, "--runtime", "local"],
                           work / "example.log")
        if code != 0:
            sys.exit(f"could not build the example model:\n{tail(work / 'example.log')}")
        console.print(f"  built in {secs:.1f} s")
    return path


def run_convertctl(args, model: Path, out: Path, log: Path, keep: bool = False) -> tuple[float, dict]:
    """One `convertctl run`; (wall seconds, report.json)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = convertctl_cmd() + ["run", str(model), "--input-shape", args.input_shape, "--quant", args.quant,
                              "--out", str(out), "--runtime", "local"] + (["--keep-run"] if keep else [])
    secs, code = timed(cmd, log)
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if code != 0 or report.get("status") != "passed":
        console.print(f"[red]convertctl run failed (exit {code}):[/]\n{tail(log)}", highlight=False)
        sys.exit(2)
    return secs, report


def make_template(kept_run: Path, template: Path) -> None:
    """Just what the stages get from convertctl: inputs/ and each request.json."""
    shutil.copytree(kept_run / "inputs", template / "inputs")
    for stage in STAGES:
        (template / stage).mkdir(parents=True)
        shutil.copyfile(kept_run / stage / "request.json", template / stage / "request.json")


def run_bare(plan: dict, store: EnvStore, template: Path, run_dir: Path) -> dict:
    """The three stage scripts in a fresh copy of the template; seconds per stage."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    run_dir.chmod(0o777)
    times = {}
    for stage in STAGES:
        variant = plan[stage]
        python = store.path_for(variant) / "bin" / "python"
        log = run_dir / stage / "stage.log"
        # Same environment variables and cwd as the local runtime gives a stage.
        times[stage], code = timed([str(python), str(variant.script), str(run_dir)], log,
                                   env=stage_environ(), cwd=str(run_dir))
        if code != 0:
            console.print(f"[red]bare {stage} failed (exit {code}):[/]\n{tail(log)}", highlight=False)
            sys.exit(2)
    return times


def host_validation_seconds(run_dir: Path, report: dict, args) -> float | None:
    """Validation runs inside `convertctl run`; redo it here on the kept
    run's outputs to see its share (numpy only, no stage). Uses Pipeline
    internals, so it gives up quietly (None) if they have changed."""
    try:
        from orchestrator.inputs import parse_shape
        from orchestrator.pipeline import Pipeline, RunOptions
        from orchestrator.report import Report

        opts = RunOptions(model=Path("m.pt"), shapes=[parse_shape(args.input_shape)], modes=[args.quant],
                          out=run_dir)
        pipe = Pipeline(opts, runtime=None, variants={}, say=lambda _: None)
        fresh = Report(model=report["model"], runtime="local", modes=[args.quant])
        fresh.artifacts = report["artifacts"]
        started = time.perf_counter()
        pipe._validate(run_dir, fresh, None)
        return time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a breakdown line, not the benchmark
        console.print(f"[yellow]validation not timed separately: {type(exc).__name__}: {exc}[/]")
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="TorchScript model (default: build the example with the local export env)")
    parser.add_argument("--example", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"],
                        help="example to build when --model is not given")
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16")
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs (median reported)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-local-"))
    try:
        model = ensure_model(args, work)
        store = EnvStore(settings=load_settings())
        plan = load_catalog().plan("local")

        console.print(f"warm-up run (--keep-run): {model.name} {args.input_shape} {args.quant}")
        warm_secs, warm = run_convertctl(args, model, work / "warm", work / "warm.log", keep=True)
        built = [e["variant"] for e in warm.get("environments", []) if e.get("created")]
        console.print(f"  {warm_secs:.1f} s" + (f" (built environments: {', '.join(built)})" if built else ""))
        kept = next((work / "warm" / ".convertctl" / "runs").iterdir())
        make_template(kept, work / "template")

        # Host start-up alone: interpreter + typer/rich/numpy/orchestrator imports.
        startup = [timed(convertctl_cmd() + ["--help"], work / "help.log")[0] for _ in range(3)]

        a_total, b_total, a_stages, b_stages = [], [], {s: [] for s in STAGES}, {s: [] for s in STAGES}
        for i in range(args.repeat):
            secs, report = run_convertctl(args, model, work / "out", work / f"a{i}.log")
            a_total.append(secs)
            for row in report["stages"]:
                a_stages[row["stage"]].append(row["seconds"])
            times = run_bare(plan, store, work / "template", work / "bare")
            b_total.append(sum(times.values()))
            for stage, secs in times.items():
                b_stages[stage].append(secs)
            console.print(f"  pair {i + 1}/{args.repeat}: convertctl {a_total[-1]:.1f} s, bare {b_total[-1]:.1f} s")
        validation = host_validation_seconds(kept, json.loads((kept / "report.json").read_text()), args)

        med = statistics.median
        a, b = med(a_total), med(b_total)
        ratio = a / b
        table = Table(title=f"local runtime: {model.name} {args.input_shape} {args.quant}, "
                            f"median of {args.repeat}", show_edge=False)
        table.add_column("")
        table.add_column("convertctl run", justify="right")
        table.add_column("bare stages", justify="right")
        table.add_column("extra", justify="right")
        for stage in STAGES:
            sa, sb = med(a_stages[stage]), med(b_stages[stage])
            table.add_row(f"{stage} ({plan[stage].name})", f"{sa:.2f} s", f"{sb:.2f} s", f"{sa - sb:+.2f} s")
        in_stages = sum(med(a_stages[s]) for s in STAGES)
        table.add_row("host: startup (`convertctl --help`)", f"{med(startup):.2f} s", "-", "")
        if validation is not None:
            table.add_row("host: validation (redone in-process)", f"{validation:.2f} s", "-", "")
        rest = a - in_stages - med(startup) - (validation or 0)
        table.add_row("host: all else in the run", f"{rest:.2f} s", "-", "")
        table.add_row("[bold]total wall[/]", f"[bold]{a:.2f} s[/]", f"[bold]{b:.2f} s[/]", f"[bold]{a - b:+.2f} s[/]")
        console.print(table)
        pairs = " ".join(f"{x / y:.2f}" for x, y in zip(a_total, b_total))
        console.print(f"spread: convertctl {min(a_total):.1f}-{max(a_total):.1f} s, "
                      f"bare {min(b_total):.1f}-{max(b_total):.1f} s; ratio per pair: {pairs}", highlight=False)
        met = ratio <= GOAL
        verdict = "[green]GOAL MET[/]" if met else "[red]GOAL NOT MET[/]"
        console.print(f"ratio convertctl/bare = [bold]{ratio:.3f}[/] (goal <= {GOAL}): {verdict}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
