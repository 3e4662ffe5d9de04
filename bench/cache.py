"""What does the stage cache save? (local runtime)

Measures, in one run, on the same machine state, with a cache folder of its
own (nothing of the user's cache is read or written):

  FULL     `convertctl run MODEL --quant fp16` into an empty cache: every
           stage runs (and is stored);
  NOCACHE  the same with --no-cache: every stage runs, nothing is stored
           (what storing costs: FULL - NOCACHE);
  HIT      the same command again: every stage comes from the cache
           (median of --repeat runs);
  ADDED    `--quant fp16 --quant int8`: export, convert and fp16 come from
           the cache, only int8's quantize step runs.

and prints HIT and ADDED as percentages of FULL, side by side. Goals:
HIT <= 2 % and ADDED <= 35 % of a full run. The environments are made ready
before anything is timed, so no venv creation is measured.

Exit status 0 whether or not the goals are met (a benchmark, not a test); 2
only if nothing could be measured.

    python bench/cache.py [--model M.pt] [--example mobilenetv2|smallcnn]
                          [--input-shape 1,3,256,256] [--quant fp16] [--add int8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import console, convertctl_cmd, example_model, fail, med, timed
from convertctl.catalog import load_catalog
from convertctl.envstore import EnvStore
from convertctl.pipconfig import load_settings
from rich.table import Table

GOALS = {"hit": 0.02, "added": 0.35}


def run(args, model: Path, out: Path, modes: list, env: dict, *extra) -> tuple[float, dict]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = convertctl_cmd() + ["run", str(model), "--input-shape", args.input_shape, "--out", str(out)]
    cmd += ["--runtime", "local", *extra]
    for mode in modes:
        cmd += ["--quant", mode]
    log = out.with_suffix(".log")
    secs, code = timed(cmd, log, env=env)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    if code or report.get("status") != "passed":
        fail(f"convertctl run failed (exit {code})", log.read_text())
    return secs, report


def stage_seconds(report: dict) -> dict:
    """Seconds per stage that really ran, and the count of cached steps."""
    out: dict = {"cached": 0}
    for st in report["stages"]:
        if st.get("cached"):
            out["cached"] += 1
        else:
            out[st["stage"]] = out.get(st["stage"], 0.0) + st["seconds"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="TorchScript model (default: build the example with the local export env)")
    parser.add_argument("--example", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"])
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16", help="the mode of the full run")
    parser.add_argument("--add", default="int8", help="the mode added to it")
    parser.add_argument("--repeat", type=int, default=3, help="cache-hit reruns (median reported)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-cache-"))
    env = {**os.environ, "CONVERTCTL_CACHE_DIR": str(work / "cache")}
    env.pop("CONVERTCTL_NO_CACHE", None)
    try:
        model = example_model(args, "local", work)
        store = EnvStore(settings=load_settings())
        for variant in load_catalog().environments("local"):
            store.ensure(variant, lambda line: None)
        console.print(f"{model.name} {args.input_shape}: full run {args.quant}, then +{args.add}; local runtime")

        nocache, r_nocache = run(args, model, work / "nocache", [args.quant], env, "--no-cache")
        console.print(f"  no cache      {nocache:7.1f} s")
        full, r_full = run(args, model, work / "full", [args.quant], env)
        console.print(f"  full (stored) {full:7.1f} s")
        hits = []
        for i in range(max(1, args.repeat)):
            secs, r_hit = run(args, model, work / f"hit{i}", [args.quant], env)
            hits.append(secs)
            if any(not st.get("cached") for st in r_hit["stages"]):
                fail("the rerun was not all cached", json.dumps(r_hit["stages"], indent=1))
        hit = med(hits)
        console.print(f"  cache hit     {hit:7.2f} s (median of {len(hits)}: {', '.join(f'{h:.2f}' for h in hits)})")
        added, r_added = run(args, model, work / "added", [args.quant, args.add], env)
        console.print(f"  added mode    {added:7.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title=f"stage cache: {model.name} {args.input_shape}", show_edge=False)
    for col in ("run", "wall", "% of full", "stages run (s)", "steps cached", "goal"):
        table.add_column(col, justify="left" if col in ("run", "stages run (s)") else "right")

    def row(label, secs, report, goal=None):
        st = stage_seconds(report)
        ran = ", ".join(f"{k} {v:.1f}" for k, v in st.items() if k != "cached") or "-"
        verdict = "" if goal is None else ("[green]met[/]" if secs / full <= goal else "[red]NOT met[/]")
        limit = "" if goal is None else f" (<= {goal:.0%})"
        table.add_row(label, f"{secs:.2f} s", f"{secs / full:.1%}", ran, str(st["cached"]), verdict + limit)

    row(f"full run, --no-cache ({args.quant})", nocache, r_nocache)
    row(f"full run into an empty cache ({args.quant})", full, r_full)
    row("cache-hit rerun", hit, r_hit, GOALS["hit"])
    row(f"added mode (+{args.add})", added, r_added, GOALS["added"])
    console.print(table)
    console.print(
        f"cache hit = [bold]{hit / full:.1%}[/] of a full run (goal <= {GOALS['hit']:.0%});  "
        f"added mode = [bold]{added / full:.1%}[/] of a full run (goal <= {GOALS['added']:.0%});  "
        f"storing costs {full - nocache:+.1f} s ({(full - nocache) / nocache:+.1%}, noise included)",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
