"""The test zoo through every convert variant and every mode, against a baseline.

For each model tests/zoo_models.py builds (ResNet-18, MobileNetV2/V3,
EfficientNet-B0, ConvNeXt, Transformer, GRU, LSTM; small, random weights)
and each convert variant the runtime can use, one
`convertctl run MODEL --converter VARIANT -q MODE ...` prints, per model x
variant x mode, pass or fail and the one-line reason (the rung's own words:
a stage error, a check that missed, onnx2tf's reason_code), with the
variant's convert seconds, the mode's quantize seconds and the file's
latency (LiteRT, XNNPACK, 1 thread, median, from the run's measure step).
Then per variant: passes, seconds, latency against --reference (the
geometric mean of the ratios where both made the file) and the size of its
environments (venv or image, quantize partner included).

The result is compared with the runtime's section of a baseline file kept
in the repository (bench/coverage-baseline.json): what a catalog change
gained and lost. --write-baseline stores this run's statuses there.

A variant the runtime cannot use (locally: its Python is not installed) is
listed with why. The zoo's models are built by the local export
environment (Python 3.11 and torch 2.13), on either runtime. The stage cache
is on (exports are shared between variants; a rerun is near-instant; a
cached step shows the seconds it saved); --no-cache times everything afresh.
Exit 0 whatever the results (a benchmark, not a test).

    python bench/coverage.py [--runtime local|docker] [--models resnet18,gru] [--variants onnx2tf2.6,...]
                             [--modes fp32,int8] [--write-baseline] [--no-cache] [--latency-runs 20]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import console, convertctl_cmd, timed
from convertctl.config.catalog import load_catalog
from convertctl.config.modes import NAMES as MODES
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from rich.table import Table

HERE = Path(__file__).resolve().parent
ZOO_SCRIPT = HERE.parent / "tests" / "zoo_models.py"
BASELINE = HERE / "coverage-baseline.json"
REFERENCE = "onnx2tf-tf2.19"


def csv(text: str | None) -> list:
    return [t for t in (text or "").replace(" ", ",").split(",") if t]


def build_zoo(store: EnvStore, catalog, names: list, out: Path) -> dict:
    """tests/zoo_models.py in the local export venv: {name: {"input_shape": [...], ...}}."""
    export = catalog.ladder("local", "export")[0]
    python = store.ensure(export, lambda line: None).python
    proc = subprocess.run([str(python), str(ZOO_SCRIPT), str(out), *names], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"could not build the zoo:\n{proc.stderr[-2000:]}")
    return json.loads((out / "zoo.json").read_text())


def why_not(store: EnvStore, catalog, runtime: str, variant) -> str:
    """'' when the runtime can use the variant (and its quantize partner), else why not."""
    if runtime != "local":
        return ""
    for v in [variant, *catalog.quantizers(variant)]:
        _, why = store.find_python(v.python)
        if why:
            return f"Python {v.python} is not installed here (needed by {v.name})"
    return ""


def image_sizes() -> dict:
    """variant -> bytes of its image (`convertctl images list --json`), 0 when not built."""
    proc = subprocess.run(convertctl_cmd() + ["images", "list", "--json"], capture_output=True, text=True)
    try:
        return {r["variant"]: int(r.get("size_bytes") or 0) for r in json.loads(proc.stdout)}
    except (ValueError, KeyError):
        return {}


def env_size(store: EnvStore, images: dict | None, variant) -> int:
    """Bytes of the variant's venv (local) or image (docker); 0 when not built."""
    if images is not None:
        return images.get(variant.name, 0)
    path = store.path_for(variant)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def the_report(out: Path) -> dict:
    """report.json of a run: in OUT when it passed, else in its kept run directory."""
    found = [out / "report.json"] if (out / "report.json").is_file() else []
    found += sorted((out / ".convertctl" / "runs").glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else {}


def one_line(text: str, width: int = 110) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def step_seconds(step: dict) -> float:
    return float(step.get("saved_seconds") or 0.0) if step.get("cached") else float(step.get("seconds") or 0.0)


def latency(artifact: dict) -> float | None:
    """LiteRT, XNNPACK on, 1 thread: the median in ms."""
    for config in (artifact.get("latency") or {}).get("configs", []):
        if config.get("xnnpack") and config.get("threads") == 1 and config.get("median_ms") is not None:
            return float(config["median_ms"])
    return None


def rows_of(report: dict, log: Path, variant: str, modes: list, code: int) -> dict:
    """mode -> {status, reason, convert_s, quantize_s, latency_ms, size_bytes}, from one run's report."""
    entry: dict = next((e for e in report.get("ladder", []) if e.get("stage") == "convert"), {})
    convert_s = sum(step_seconds(s) for s in report.get("stages", []) if s.get("stage") == "convert")
    failure = report.get("failure") or ""
    general = entry.get("error") or entry.get("reason") or (failure if isinstance(failure, str) else str(failure))
    if entry.get("failed_stage") and entry.get("error"):
        general = f"{entry['failed_stage']}: {entry['error']}"
    if not report:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        general = f"exit {code}: {tail[-1] if tail else 'no report'}"
    arts = {a.get("mode"): a for a in report.get("artifacts", [])}
    out = {}
    for mode in modes:
        said = (entry.get("modes") or {}).get(mode)
        quantize_s = sum(
            step_seconds(s) for s in report.get("stages", []) if s.get("stage") == "quantize" and s.get("mode") == mode
        )
        ok = said == "ok"
        row: dict = {"status": "pass" if ok else "fail", "reason": "" if ok else one_line(said or general)}
        row.update(convert_s=round(convert_s, 1), quantize_s=round(quantize_s, 1))
        if said == "ok" and mode in arts:
            row.update(latency_ms=latency(arts[mode]), size_bytes=arts[mode].get("size_bytes"))
        out[mode] = row
    return out


def run_one(args, model: Path, shape: list, variant: str, modes: list, work: Path) -> dict:
    out = work / f"{model.stem}-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = convertctl_cmd() + ["run", str(model), "--input-shape", ",".join(map(str, shape)), "--converter", variant]
    cmd += ["--runtime", args.runtime, "--out", str(out), "--latency-runs", str(args.latency_runs)]
    cmd += [a for m in modes for a in ("-q", m)] + (["--no-cache"] if args.no_cache else [])
    log = out.parent / (out.name + ".log")
    secs, code = timed(cmd, log)
    rows = rows_of(the_report(out), log, variant, modes, code)
    passed = sum(r["status"] == "pass" for r in rows.values())
    console.print(f"  {model.stem} / {variant}: {passed} of {len(modes)} modes in {secs:.0f} s", highlight=False)
    return rows


def geomean(values: list) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def print_results(results: dict, skipped: dict, sizes: dict, reference: str) -> None:
    table = Table(title="model x variant x mode", show_edge=False)
    for col in ("model", "variant", "mode", "result", "convert s", "quantize s", "ms (XNNPACK, 1 thr)"):
        table.add_column(col, justify="right" if col.endswith(("s", ")")) else "left")
    for key, row in sorted(results.items()):
        model, variant, mode = key.split("/")
        mark = "[green]pass[/]" if row["status"] == "pass" else f"[red]fail[/] {row['reason']}"
        ms = f"{row['latency_ms']:.3f}" if row.get("latency_ms") else "-"
        table.add_row(model, variant, mode, mark, f"{row['convert_s']:.1f}", f"{row['quantize_s']:.1f}", ms)
    console.print(table)
    summary = Table(title=f"per variant (latency: geometric mean of ratios to {reference}, <1 is faster)")
    for col in ("variant", "passed", "convert s (sum)", "quantize s (sum)", "latency ratio", "environment"):
        summary.add_column(col)
    variants = sorted({k.split("/")[1] for k in results})
    for variant in variants:
        mine = {k: r for k, r in results.items() if k.split("/")[1] == variant}
        ratios = []
        for key, row in mine.items():
            model, _, mode = key.split("/")
            ref = results.get(f"{model}/{reference}/{mode}", {})
            if row.get("latency_ms") and ref.get("latency_ms"):
                ratios.append(row["latency_ms"] / ref["latency_ms"])
        converts = {k.split("/")[0]: r["convert_s"] for k, r in mine.items()}
        ratio = geomean(ratios)
        summary.add_row(
            variant,
            f"{sum(r['status'] == 'pass' for r in mine.values())} of {len(mine)}",
            f"{sum(converts.values()):.0f}",
            f"{sum(r['quantize_s'] for r in mine.values()):.0f}",
            f"{ratio:.2f} ({len(ratios)} files)" if ratio else "-",
            f"{sizes.get(variant, 0) / 1e6:.0f} MB" if sizes.get(variant) else "-",
        )
    for variant, why in skipped.items():
        summary.add_row(variant, "skipped", "", "", "", why)
    console.print(summary)


def compare(results: dict, skipped: dict, section: dict) -> None:
    """What this run gained and lost against the baseline's section for the runtime."""
    gained: list = []
    lost: list = []
    new: list = []
    for key, row in sorted(results.items()):
        old = section.get(key)
        if old is None:
            new.append(f"{key}: {row['status']}")
        elif old["status"] != row["status"]:
            (gained if row["status"] == "pass" else lost).append(
                f"{key}" + (f" ({row['reason']})" if row["reason"] else f" (was: {old.get('reason', '')})")
            )
    for key, old in sorted(section.items()):
        if key.split("/")[1] in skipped and old["status"] == "pass":
            lost.append(f"{key} (skipped here: {skipped[key.split('/')[1]]})")
    said = f"against the baseline: {len(gained)} gained, {len(lost)} lost, {len(new)} not in it"
    console.print(said, highlight=False)
    for label, items in (("gained", gained), ("lost", lost), ("new", new)):
        for item in items:
            console.print(f"  {label}: {item}", highlight=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=("local", "docker"), default="local")
    parser.add_argument("--models", help="zoo models, comma-separated (default: all)")
    parser.add_argument("--variants", help="convert variants, comma-separated (default: every one in the catalog)")
    parser.add_argument("--modes", help=f"modes, comma-separated (default: {','.join(MODES)})")
    parser.add_argument("--reference", default=REFERENCE, help="the variant latencies are compared with")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--write-baseline", action="store_true", help="store this run's statuses in the baseline")
    parser.add_argument("--no-cache", action="store_true", help="run every step afresh (times without the cache)")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--work", type=Path, help="where runs go (default: a temp dir, kept)")
    args = parser.parse_args()

    catalog = load_catalog()
    store = EnvStore(settings=load_settings())
    modes = csv(args.modes) or list(MODES)
    chosen = csv(args.variants) or [v.name for v in catalog.variants.values() if v.stage == "convert"]
    work = args.work or Path(tempfile.mkdtemp(prefix="convertctl-coverage-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"building the zoo in {work / 'zoo'} ...", highlight=False)
    zoo = build_zoo(store, catalog, csv(args.models), work / "zoo")
    variants, skipped = [], {}
    for name in chosen:
        variant = catalog.get(name, "convert")
        why = why_not(store, catalog, args.runtime, variant)
        if why:
            skipped[name] = why
        else:
            variants.append(variant)
    results = {}
    for model, facts in zoo.items():
        for variant in variants:
            rows = run_one(args, work / "zoo" / f"{model}.pt", facts["input_shape"], variant.name, modes, work)
            results.update({f"{model}/{variant.name}/{mode}": row for mode, row in rows.items()})
    images = image_sizes() if args.runtime == "docker" else None
    sizes = {}
    for v in variants:  # with its quantize partners, each lock counted once (one venv, one layer)
        partners = {q.requirements: q for q in catalog.quantizers(v) if q.requirements != v.requirements}
        sizes[v.name] = env_size(store, images, v) + sum(env_size(store, images, q) for q in partners.values())
    print_results(results, skipped, sizes, args.reference)
    (work / "results.json").write_text(json.dumps({"results": results, "skipped": skipped, "sizes": sizes}, indent=1))
    baseline = json.loads(args.baseline.read_text()) if args.baseline.is_file() else {}
    compare(results, skipped, baseline.get(args.runtime, {}))
    if args.write_baseline:
        section = baseline.setdefault(args.runtime, {})
        section.update({k: {"status": r["status"], "reason": r["reason"]} for k, r in results.items()})
        args.baseline.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
        console.print(f"baseline written: {args.baseline} ({args.runtime}, {len(results)} results)", highlight=False)
    console.print(f"runs kept in {work} (all numbers: {work / 'results.json'})", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
