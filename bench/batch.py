"""How much faster is `convertctl batch` than one `convertctl run` after another?

Measures, in one run, on the same machine state, with the stage cache off
(every model converted for real) and the same options everywhere:

  SERIAL  the zoo's models (tests/zoo_models.py: 8 small models, built in the
          local export environment) converted one `convertctl run` after
          another, each one's wall time and peak memory (the kernel's count
          for its process tree);
  LOCAL   `convertctl batch zoo.toml` on the local pool (as many at once as
          this machine has cores, as memory allows);
  RAY     `convertctl batch zoo.toml --executor ray` on a two-node Ray cluster
          on this machine (one CPU per node: the same cores as the pool),
          started on loopback in a network and PID namespace of its own
          (tests/ray_cluster.py; needs root, unshare and `convertctl[ray]`).

and prints, side by side: the throughput of LOCAL against SERIAL (goal >=
1.6x where memory allows) and RAY's time against LOCAL's (goal within 1.15x:
the engine's own overhead), each batch timed from its fan-out to its end (as
batch-report.json records it: the environments are made ready before), and
every model's peak memory. Exit status 0 whether or not the goals are met (a
benchmark, not a test); 2 only if nothing could be measured.

    python bench/batch.py [--models 8] [--no-ray] [--no-serial] [--quant fp32 --quant fp16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import console, convertctl_cmd, fail
from convertctl.batch.driver import prepare_local
from convertctl.batch.plan import make_plan
from convertctl.config.catalog import load_catalog
from convertctl.store.envstore import EnvStore
from convertctl.store.pipconfig import load_settings
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
ZOO = ["resnet18", "mobilenetv2", "mobilenetv3_small", "efficientnet_b0", "convnext", "transformer", "gru", "lstm"]
THROUGHPUT_GOAL, RAY_GOAL = 1.6, 1.15
SAMPLES = 32


def run_measured(cmd: list, log: Path, env: dict) -> tuple[float, int, float]:
    """(wall seconds, exit code, peak MB of its process tree)."""
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return time.perf_counter() - started, proc.returncode, usage.ru_maxrss / 1024


def build_zoo(where: Path, names: list) -> dict:
    export = EnvStore(settings=load_settings()).ensure(load_catalog().ladder("local", "export")[0])
    proc = subprocess.run([str(export.python), str(ROOT / "tests" / "zoo_models.py"), str(where), *names],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        fail("could not build the models", proc.stderr)
    return json.loads((where / "zoo.json").read_text())


def batch_file(where: Path, facts: dict, quant: list) -> Path:
    lines = ["[defaults]", f"quant = {json.dumps(quant)}", f"samples = {SAMPLES}", "latency_runs = 0"]
    lines.append('runtime = "local"')
    for name, fact in facts.items():
        shape = ",".join(map(str, fact["input_shape"]))
        lines += ["", f"[models.{name}]", f'model = "{where / (name + ".pt")}"', f'input_shape = "{shape}"']
    path = where / "zoo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=len(ZOO), help="how many of the zoo's models (default all 8)")
    parser.add_argument("--quant", action="append", help="modes (default fp32 and fp16)")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray cluster")
    parser.add_argument("--no-serial", action="store_true", help="leave out the serial runs")
    args = parser.parse_args()
    quant = args.quant or ["fp32", "fp16"]
    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-batch-"))
    env = {**os.environ, "CONVERTCTL_NO_CACHE": "1", "CONVERTCTL_CACHE_DIR": str(work / "cache"), "COLUMNS": "160"}
    try:
        console.print(f"building {args.models} models in {work} ...")
        facts = build_zoo(work, ZOO[: args.models])
        zoo = batch_file(work, facts, quant)
        # Every environment the models start with, made now: nothing below times a venv build.
        prepare_local(make_plan([str(zoo)], {}, work / "unused").models, lambda _: None)

        serial: dict = {}
        for name, fact in [] if args.no_serial else facts.items():
            cmd = [*convertctl_cmd(), "run", str(work / f"{name}.pt"), "--out", str(work / "serial" / name)]
            cmd += ["--input-shape", ",".join(map(str, fact["input_shape"])), "--samples", str(SAMPLES)]
            cmd += ["--latency-runs", "0", "--runtime", "local", *[a for m in quant for a in ("-q", m)]]
            seconds, code, peak = run_measured(cmd, work / f"serial-{name}.log", env)
            serial[name] = {"seconds": seconds, "code": code, "peak_mb": peak}
            console.print(f"  serial {name}: {seconds:.0f}s, exit {code}, peak {peak:.0f} MB")

        local_wall, local_code, _ = run_measured(
            [*convertctl_cmd(), "batch", str(zoo), "--out", str(work / "local")], work / "local.log", env
        )
        local = json.loads((work / "local" / "batch-report.json").read_text())
        console.print(f"  local pool: {local['seconds']:.0f}s ({local_wall:.0f}s wall), exit {local_code}")

        ray = None
        if not args.no_ray:
            ray = run_ray(zoo, work, env)

        table = Table(title=f"convertctl batch: {len(facts)} models, {' '.join(quant)}, cache off")
        for header in ("model", "serial s", "serial peak MB", "pool s", "pool peak MB", "ray s", "ray peak MB"):
            table.add_column(header, justify="right" if header != "model" else "left")
        rows = {m["name"]: m for m in local["models"]}
        ray_rows = {m["name"]: m for m in (ray or {}).get("models", [])}
        for name in facts:
            r = serial.get(name, {"seconds": 0, "peak_mb": 0})
            b, y = rows.get(name, {}), ray_rows.get(name, {})
            table.add_row(
                name, f"{r['seconds']:.0f}", f"{r['peak_mb']:.0f}", f"{b.get('seconds', 0):.0f}",
                f"{b.get('peak_rss_mb') or 0:.0f}", f"{y.get('seconds', 0):.0f}" if y else "-",
                f"{y.get('peak_rss_mb') or 0:.0f}" if y else "-",
            )  # fmt: skip
        console.print(table)
        total = sum(r["seconds"] for r in serial.values())
        if serial:
            ratio = total / local["seconds"]
            verdict = "met" if ratio >= THROUGHPUT_GOAL else "NOT met"
            console.print(
                f"throughput, pool vs serial: {total:.0f}s / {local['seconds']:.0f}s = {ratio:.2f}x "
                f"({local['workers']} at a time; goal >= {THROUGHPUT_GOAL}x: {verdict})"
            )
        console.print(f"pool sizing: {local['sizing']}")
        if ray is not None:
            slower = ray["seconds"] / local["seconds"]
            verdict = "met" if slower <= RAY_GOAL else "NOT met"
            console.print(
                f"ray vs pool: {ray['seconds']:.0f}s / {local['seconds']:.0f}s = {slower:.2f}x "
                f"(2 nodes x 1 CPU; goal <= {RAY_GOAL}x: {verdict})"
            )
        failed = [n for n, r in serial.items() if r["code"]] + [m["name"] for m in local["models"] if m["exit_code"]]
        if failed:
            console.print(f"[yellow]models that did not pass (timed all the same): {', '.join(failed)}[/]")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_ray(zoo: Path, work: Path, env: dict) -> dict | None:
    if not shutil.which("unshare"):
        console.print("[yellow]no unshare: the Ray cluster is left out[/]")
        return None
    try:
        import ray  # noqa: F401
    except ImportError:
        console.print("[yellow]Ray is not installed (pip install 'convertctl[ray]'): left out[/]")
        return None
    result = work / "ray.json"
    helper = [sys.executable, str(ROOT / "tests" / "ray_cluster.py"), str(result), str(Path(sys.executable).parent)]
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", *helper, "--", str(zoo), "--out", str(work / "ray")]
    subprocess.run(cmd, env=env, capture_output=True, timeout=7200)
    said = json.loads(result.read_text()) if result.is_file() else {}
    report = work / "ray" / "batch-report.json"
    if not report.is_file():
        console.print("[yellow]the Ray batch wrote no report:[/]\n" + said.get("output", "")[-2000:])
        return None
    data = json.loads(report.read_text())
    console.print(f"  ray cluster: {data['seconds']:.0f}s, exit {said.get('exit_code')}")
    return data


if __name__ == "__main__":
    sys.exit(main())
