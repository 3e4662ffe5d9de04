"""What local_overhead.py and docker_overhead.py share: running convertctl
as a user would, the example model, the kept run's requests, and the
overhead table with its verdict. Stdlib, rich and the host package."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from convertctl.config.catalog import STAGES
from rich.console import Console
from rich.table import Table

GOAL = 1.15
console = Console(width=None if sys.stdout.isatty() else 120)  # no 80-column wrap in logs
med = statistics.median


def convertctl_cmd() -> list[str]:
    # The console script a user would type; `python -m convertctl` if this
    # interpreter has none (same code, same imports).
    script = Path(sys.executable).with_name("convertctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "convertctl"]


def timed(cmd: list[str], log: Path, **kw) -> tuple[float, int]:
    """Run cmd with its output in log; (wall seconds, exit code)."""
    with open(log, "w") as out:
        started = time.perf_counter()
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw).returncode
        return time.perf_counter() - started, code


def fail(what: str, text: str) -> NoReturn:
    """Nothing to measure: say why (last lines of a log) and exit 2."""
    console.print(f"[red]{what}:[/]\n" + "\n".join(text.splitlines()[-12:]), highlight=False)
    sys.exit(2)


def example_model(args, runtime: str, work: Path) -> Path:
    """--model, else the example built by RUNTIME's export environment (kept
    between runs in the temp dir: torch 1.7 and 2.x models differ)."""
    if args.model:
        return Path(args.model).resolve()
    path = (
        Path(tempfile.gettempdir())
        / "convertctl-bench"
        / f"{args.example}-{args.input_shape.replace(',', 'x')}-{runtime}.pt"
    )
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        console.print(f"building the example model {path} ({runtime} export environment) ...")
        _, code = timed(
            convertctl_cmd()
            + ["example", str(path), "--name", args.example, "--input-shape", args.input_shape, "--runtime", runtime],
            work / "example.log",
        )
        if code:
            fail("could not build the example model", (work / "example.log").read_text())
    return path


def run_convertctl(args, model: Path, runtime: str, out: Path, keep: bool = False) -> tuple[float, dict]:
    """One `convertctl run` into a fresh --out; (wall seconds, report.json)."""
    shutil.rmtree(out, ignore_errors=True)
    log = out.with_suffix(".log")
    cmd = (
        convertctl_cmd()
        + [
            "run",
            str(model),
            "--input-shape",
            args.input_shape,
            "--quant",
            args.quant,
            "--out",
            str(out),
            "--runtime",
            runtime,
        ]
        + (["--keep-run"] if keep else [])
    )
    secs, code = timed(cmd, log)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if code or report.get("status") != "passed":
        fail(f"convertctl run failed (exit {code})", log.read_text())
    return secs, report


def warm_up(args, model: Path, runtime: str, work: Path) -> Path:
    """The warm-up run (it builds what is missing), with --keep-run. Writes
    WORK/template, just what the stages got (inputs/ and each
    <stage>/request.json), and returns the kept run dir."""
    console.print(f"warm-up run (--keep-run): {model.name} {args.input_shape} {args.quant}")
    secs, report = run_convertctl(args, model, runtime, work / "warm", keep=True)
    built = [e["variant"] for e in report.get("environments", []) if e.get("created")]
    console.print(f"  {secs:.1f} s" + (f" (built: {', '.join(built)})" if built else ""))
    kept = next((work / "warm" / ".convertctl" / "runs").iterdir())
    template = work / "template"
    shutil.copytree(kept / "inputs", template / "inputs")
    for st in report["stages"]:  # every step's request, in its own folder
        (template / st["work"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kept / st["work"] / "request.json", template / st["work"] / "request.json")
    return kept


def print_overhead(
    title: str,
    plan: dict,
    a_total: list,
    b_total: list,
    a_st: list,
    b_st: list,
    host_rows: list,
    bare_label: str,
    note: str = "",
) -> None:
    """The A/B table, per stage and host part, then the ratio and verdict.
    a_st/b_st: {stage: seconds} per run; host_rows: (label, seconds) of the
    parts of convertctl's own time measured separately."""
    a, b = med(a_total), med(b_total)
    # Drift-free: each run's wall time minus the time inside its stages.
    own = med(w - sum(st.values()) for w, st in zip(a_total, a_st))
    table = Table(title=title, show_edge=False)
    table.add_column("")
    for col in ("convertctl run", bare_label, "extra"):
        table.add_column(col, justify="right")
    for stage in STAGES:
        sa, sb = med(r[stage] for r in a_st), med(r[stage] for r in b_st)
        table.add_row(f"{stage} ({plan[stage].name})", f"{sa:.2f} s", f"{sb:.2f} s", f"{sa - sb:+.2f} s")
    for label, secs in host_rows:
        table.add_row(f"host: {label}", f"{secs:.3f} s" if secs < 0.1 else f"{secs:.2f} s", "-", "")
    table.add_row("host: all else in the run", f"{own - sum(s for _, s in host_rows):.2f} s", "-", "")
    table.add_row("[bold]total wall[/]", f"[bold]{a:.2f} s[/]", f"[bold]{b:.2f} s[/]", f"[bold]{a - b:+.2f} s[/]")
    console.print(table)
    pairs = " ".join(f"{x / y:.2f}" for x, y in zip(a_total, b_total))
    console.print(
        f"spread: convertctl {min(a_total):.1f}-{max(a_total):.1f} s, bare {min(b_total):.1f}-"
        f"{max(b_total):.1f} s; ratio per pair: {pairs}{note}",
        highlight=False,
    )
    console.print(
        f"convertctl's own time (wall - time inside stages): {own:.2f} s = {own / a:.1%} of the run", highlight=False
    )
    drift_free = med(w / sum(st.values()) for w, st in zip(a_total, a_st))
    verdict = "[green]GOAL MET[/]" if a / b <= GOAL else "[red]GOAL NOT MET[/]"
    console.print(
        f"ratio convertctl/bare = [bold]{a / b:.3f}[/] (goal <= {GOAL}): {verdict}   "
        f"[dim]drift-free ratio, wall / time in stages: {drift_free:.3f}[/]"
    )
