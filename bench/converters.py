"""The converter families side by side (local runtime), in one run.

For each model (default: the MobileNetV2 and ConvNeXt-style examples at
224x224, random weights) and each converter family in the catalog, pinned
one after the other (`convertctl run --converter VARIANT`, stage cache off):

  seconds     the family's own steps for that mode: its convert step plus the
              mode's quantize step (the PyTorch reference and, for the ONNX
              families, the ONNX export are one step every family needs or
              shares: not counted)
  size        the .tflite file
  transposes  TRANSPOSE ops in the file
  XNNPACK     delegate partitions once LiteRT's default delegate is applied
              (1 = the whole graph runs in XNNPACK)
  median ms   latency with the current LiteRT runtime (ai-edge-litert, its
              default XNNPACK delegate, --threads threads); every file is
              timed round-robin, --rounds rounds of --runs invokes, so all
              see the same machine state

each also as a ratio to onnx-tf's number for the same model and mode.
Families are taken from the catalog; one that is not there (litert-torch
before its branch lands) is skipped with a line. A mode a family cannot
make, or whose file fails validation, says why; a file that exists is
timed anyway.

Goals (issue 7): the NHWC families >= 1.3x faster than onnx-tf on
MobileNetV2 fp32; the local runtime's ladder starts with the family whose
files measure fastest. Exit 0 whether or not they are met (a benchmark,
not a test); 2 only if nothing could be measured.

    python bench/converters.py [--model NAME ...] [--input-shape 1,3,224,224]
                               [--quant fp32 --quant int8 ...] [--runs 20] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import console, convertctl_cmd, fail, timed
from convertctl.config.catalog import Variant, images_dir, load_catalog
from convertctl.config.modes import NAMES as MODES
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from rich.table import Table

FAMILIES = ("onnx-tf", "onnx2tf", "litert-torch")  # onnx-tf first: the others are compared with it
BASE = "onnx-tf"
GOAL = 1.3
HERE = Path(__file__).resolve().parent
# The measure stage's lock (branch int8), byte for byte: one venv for both.
MEASURE_LOCK = HERE / "requirements-litert2.3-py3.11.txt"

# Runs in the measure venv: every file loaded once, then timed round-robin.
MEASURE = r"""
import json, sys, time
import numpy as np
import ai_edge_litert
from ai_edge_litert import interpreter as lite
files, runs, rounds, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out, live = {}, {}
for key, path in files.items():
    try:
        it = lite.Interpreter(model_path=path, num_threads=threads)  # LiteRT's default delegate: XNNPACK
        it.allocate_tensors()
        rng = np.random.RandomState(0)
        for d in it.get_input_details():
            dt, shape = np.dtype(d["dtype"]), [int(s) for s in d["shape"]]
            x = rng.standard_normal(shape) if dt.kind == "f" else rng.randint(-128, 128, size=shape)
            it.set_tensor(d["index"], x.astype(dt))
        for _ in range(3):
            it.invoke()
        ops = it._get_ops_details()
        out[key] = {"partitions": sum(op["op_name"] == "DELEGATE" for op in ops), "times": []}
        live[key] = it
    except Exception as exc:
        out[key] = {"error": "%s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[-1][:200])}
for _ in range(rounds):
    for key, it in live.items():
        for _ in range(runs):
            start = time.perf_counter()
            it.invoke()
            out[key]["times"].append((time.perf_counter() - start) * 1000.0)
for entry in out.values():
    if "times" in entry:
        entry["median_ms"] = float(np.median(entry.pop("times")))
print(json.dumps({"version": getattr(ai_edge_litert, "__version__", "?"), "files": out}))
"""


def variants(catalog) -> list:
    """One variant per family: the local ladder's first of it, else the catalog's first."""
    local = catalog.ladder("local", "convert")
    chosen = []
    for family in FAMILIES:
        mine = [v for v in local if v.family == family] or [
            v for v in catalog.variants.values() if v.stage == "convert" and v.family == family
        ]
        if mine:
            chosen.append(mine[0])
        else:
            console.print(f"{family}: not in the catalog ({images_dir() / 'catalog.toml'}), skipped", highlight=False)
    return chosen


def measure_python(catalog) -> Path:
    """The venv that times the files: the catalog's measure variant if it has
    one, else the bench's own lock (the same pins)."""
    found = next((v for v in catalog.variants.values() if v.stage == "measure"), None)
    variant = found or Variant(
        name="bench-measure-litert2.3",
        stage="measure",
        python="3.11",
        requirements=os.path.relpath(MEASURE_LOCK, images_dir()),
        tag="",
        base_image="",
    )
    return EnvStore(settings=load_settings()).ensure(variant, lambda s: console.print(f"  {s}")).python


def example(name: str, shape: str, work: Path) -> Path:
    path = Path(tempfile.gettempdir()) / "convertctl-bench" / f"{name}-{shape.replace(',', 'x')}-local.pt"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        console.print(f"building the example model {path} ...")
        cmd = convertctl_cmd() + ["example", str(path), "--name", name, "--input-shape", shape, "--runtime", "local"]
        _, code = timed(cmd, work / f"example-{name}.log")
        if code:
            fail(f"could not build the {name} example", (work / f"example-{name}.log").read_text())
    return path


def convert(model: Path, variant: Variant, args, out: Path) -> dict:
    """One pinned run; {mode: row} with its seconds, file and status."""
    cmd = convertctl_cmd() + ["run", str(model), "--input-shape", args.input_shape, "--converter", variant.name]
    cmd += ["--runtime", "local", "--out", str(out), "--latency-runs", "0", "--no-cache"]
    for mode in args.quant:
        cmd += ["--quant", mode]
    log = out.parent / f"{out.name}.log"
    _, code = timed(cmd, log, env={**os.environ, "CONVERTCTL_NO_CACHE": "1"})
    # A failed run leaves --out alone: its report and files stay in the run directory.
    found = sorted(out.glob(".convertctl/runs/*/report.json")) or [out / "report.json"]
    if not found[-1].is_file():
        text = log.read_text().splitlines()
        return {m: {"status": "no report: " + (text[-1] if text else f"exit {code}"), "file": None} for m in args.quant}
    run_dir = found[-1].parent
    report = json.loads(found[-1].read_text())
    steps = {s["work"]: s["seconds"] for s in report.get("stages", [])}
    convert_s = steps.get(f"convert/{variant.name}", 0.0)
    rows = {}
    for mode in args.quant:
        art: dict = next((a for a in report.get("artifacts", []) if a["mode"] == mode), {})
        entry: dict = next((e for e in report.get("ladder", []) if e.get("variant") == variant.name), {})
        status = (entry.get("modes") or {}).get(mode) or entry.get("error") or entry.get("reason") or "not made"
        rows[mode] = {
            "status": status,
            "seconds": convert_s + steps.get(f"quantize/{variant.name}/{mode}", 0.0),
            "size": art.get("size_bytes"),
            "transposes": (art.get("ops") or {}).get("transposes"),
            "file": next((str(p) for p in candidates(art, run_dir) if p.is_file()), None),
        }
    return rows


def candidates(art: dict, run_dir: Path) -> list:
    """Where a mode's file is: placed in --out, or left in the run directory."""
    return [Path(art[k]) if k == "path" else run_dir / art[k] for k in ("path", "file") if art.get(k)]


def ratio(value, base, invert=False) -> str:
    if not value or not base:
        return "-"
    return f"{(base / value) if invert else (value / base):.2f}x"


def table(name: str, results: dict, args) -> None:
    t = Table(title=f"{name} {args.input_shape} (ratios: to onnx-tf, same mode)", show_edge=False)
    for col in ("family", "mode", "status", "seconds", "size", "transp.", "XNNPACK", "median ms"):
        t.add_column(col, justify="left" if col in ("family", "mode", "status") else "right", no_wrap=True)
    for col in ("seconds ×", "size ×", "faster ×"):
        t.add_column(col, justify="right", no_wrap=True)
    base = results.get(BASE, {})
    notes: list = []
    for family, rows in results.items():
        for mode, r in rows.items():
            b = base.get(mode, {})
            ms = r.get("median_ms")
            if r["status"] != "ok" or r.get("measure_error"):
                notes.append(f"[{len(notes) + 1}] {family} {mode}: {r.get('measure_error') or r['status']}")
            t.add_row(
                family,
                mode,
                "ok" if r["status"] == "ok" else f"[red]failed [{len(notes)}][/]",
                f"{r['seconds']:.1f}" if r.get("seconds") else "-",
                f"{r['size'] / 1024:.0f} KiB" if r.get("size") else "-",
                str(r["transposes"]) if r.get("transposes") is not None else "-",
                str(r["partitions"]) if r.get("partitions") is not None else "-",
                f"{ms:.2f}" if ms else ("not timed" if r.get("measure_error") else "-"),
                ratio(r.get("seconds"), b.get("seconds")),
                ratio(r.get("size"), b.get("size")),
                ratio(ms, b.get("median_ms"), invert=True),
            )
    console.print(t)
    for note in notes:  # a failed file that exists is still timed: the row's numbers are its
        console.print(f"  {note}", highlight=False, markup=False)


def verdicts(all_results: dict, chosen: list, catalog) -> None:
    """The issue's two goals, from the numbers above."""
    first = next(iter(all_results))
    fp32 = {f: r.get("fp32", {}).get("median_ms") for f, r in all_results[first].items()}
    base = fp32.get(BASE)
    for v in chosen:
        if "nhwc" not in v.layouts or not base or not fp32.get(v.family):
            continue
        speed = base / fp32[v.family]
        verdict = "[green]GOAL MET[/]" if speed >= GOAL else "[red]GOAL NOT MET[/]"
        console.print(f"{v.family} (NHWC) on {first} fp32: {speed:.2f}x onnx-tf's speed (goal >= {GOAL}): {verdict}")

    # Fastest overall: the geometric mean over the models of each family's fp32 latency relative to onnx-tf's.
    def fp32_ms(res: dict, family: str):
        return res.get(family, {}).get("fp32", {}).get("median_ms")

    scores = {}
    for v in chosen:
        rel = [
            fp32_ms(res, v.family) / fp32_ms(res, BASE)
            for res in all_results.values()
            if fp32_ms(res, v.family) and fp32_ms(res, BASE)
        ]
        if rel:
            scores[v.family] = math.exp(sum(math.log(x) for x in rel) / len(rel))
    if not scores:
        return
    fastest = min(scores, key=lambda family: scores[family])
    ladder = [v.family for v in catalog.ladder("local", "convert")]
    order = ", ".join(f"{f} {s:.2f}" for f, s in sorted(scores.items(), key=lambda kv: kv[1]))
    verdict = "[green]GOAL MET[/]" if ladder and ladder[0] == fastest else "[red]GOAL NOT MET[/]"
    console.print(f"fp32 latency relative to onnx-tf (geometric mean over the models): {order}")
    console.print(f"fastest files: {fastest}; the local ladder starts with {ladder[0] if ladder else '-'}: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="example name or a model file (repeatable)")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--quant", action="append", choices=MODES, help="modes (default: fp32, dynamic, int8, fp16)")
    parser.add_argument("--runs", type=int, default=20, help="invokes per file per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    args.quant = args.quant or ["fp32", "dynamic", "int8", "fp16"]
    catalog = load_catalog()
    chosen = variants(catalog)
    if not any(v.family == BASE for v in chosen):
        fail("nothing to compare with", f"the catalog has no {BASE} variant")
    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-converters-"))
    console.print(f"work folder: {work}")
    python = measure_python(catalog)
    all_results: dict = {}
    for name in args.model or ["mobilenetv2", "convnext"]:
        model = Path(name) if Path(name).is_file() else example(name, args.input_shape, work)
        label = model.stem if Path(name).is_file() else name
        results = {}
        for v in chosen:
            console.print(f"{label}: converting with {v.name} ({v.family}) ...")
            results[v.family] = convert(model, v, args, work / f"{label}-{v.name}")
        files = {f"{f}/{m}": r["file"] for f, rows in results.items() for m, r in rows.items() if r["file"]}
        if files:
            console.print(f"{label}: timing {len(files)} files with ai-edge-litert, {args.threads} thread(s) ...")
            proc = subprocess.run(
                [str(python), "-c", MEASURE, json.dumps(files), str(args.runs), str(args.rounds), str(args.threads)],
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if proc.returncode:
                fail("timing failed", proc.stderr)
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            for key, m in measured["files"].items():
                family, mode = key.split("/")
                row = results[family][mode]
                row.update(partitions=m.get("partitions"), median_ms=m.get("median_ms"), measure_error=m.get("error"))
            console.print(f"ai-edge-litert {measured['version']}", highlight=False)
        all_results[label] = results
        table(label, results, args)
    if not any(r.get("median_ms") for res in all_results.values() for rows in res.values() for r in rows.values()):
        fail("nothing could be timed", json.dumps(all_results, indent=1))
    verdicts(all_results, chosen, catalog)
    (work / "results.json").write_text(json.dumps(all_results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
