"""What convertctl costs on the Docker runtime, and what its images cost.

(a) Run overhead. A = wall time of a warm `convertctl run MODEL --runtime
    docker` (images built and current). B = the same three stages run bare:
    one container each (Docker SDK, the same image, hardening options and
    mounts as convertctl uses), fed the request.json files of a kept
    convertctl run. A/B is the overhead factor; the goal is A/B <= 1.15.
    B already pays Docker's own container start/stop; what A adds is host
    start-up, the image freshness checks (one content key per image),
    inputs, log streaming, validation and the report. A and B are
    interleaved (A, B, A, B, ...) and the median of --repeat pairs is used,
    so drift on a shared machine hits both alike.
    The model is the example built IN THE DOCKER EXPORT IMAGE (torch 1.7
    cannot load TorchScript saved by a newer torch).
(b) Build times, through convertctl's own ImageBuilder:
    cached    - `ensure(force=True)` on an existing image: every step from
                cache; this is the cost of a rebuild that changes nothing.
    code-only - a context whose stage .py has one extra comment line, built
                under a throwaway tag (removed afterwards): what a stage-code
                change costs, since the code is copied last.
    cold      - only with --cold: the variants' images and the dangling
                layers are removed (`docker image rm`), then built. Not the
                default: it deletes images and re-downloads the locks.
                `--no-cache` is never used (images/DOCKER-NOTES.md: it
                confuses the legacy builder's cache). "cached k/n" says how
                many build steps came from cache, so a "cold" build that
                found shared layers says so.
(c) Image sizes per catalog variant (ImageBuilder.describe()). Images of one
    TF version share their heavy layer, so the sizes do not add up on disk.

Exit status is 0 whether or not the goal is met (a benchmark, not a test);
2 only if nothing could be measured.

    python bench/docker_overhead.py [--repeat 3] [--model M.pt] [--quant fp16]
                                    [--input-shape 1,3,256,256] [--cold]
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
from orchestrator.pipconfig import load_settings
from orchestrator.runtimes import docker as docker_rt
from orchestrator.runtimes.images import KEY_LABEL, VARIANT_LABEL, ImageBuilder

GOAL = 1.15
console = Console()
med = statistics.median


def convertctl_cmd() -> list[str]:
    script = Path(sys.executable).with_name("convertctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator"]


def timed(cmd: list[str], log: Path) -> tuple[float, int]:
    with open(log, "w") as out:
        started = time.perf_counter()
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        return time.perf_counter() - started, code


def fail(what: str, log: Path) -> None:
    text = "\n".join(log.read_text(errors="replace").splitlines()[-12:])
    console.print(f"[red]{what}:[/]\n{text}", highlight=False)
    sys.exit(2)


class StepCounter:
    """A `say` callback that counts legacy-builder steps and cache hits."""

    def __init__(self):
        self.steps = self.cached = 0

    def __call__(self, line: str) -> None:
        self.steps += line.startswith("Step ")
        self.cached += line.startswith("---> Using cache")


def build_row(name: str, what: str, seconds: float, steps: StepCounter) -> tuple:
    return name, what, f"{seconds:.1f} s", f"cached {steps.cached}/{steps.steps}"


def code_only_build(client, builder: ImageBuilder, variant) -> tuple:
    """Build the variant with one extra comment line in its stage script,
    under a throwaway tag; the tag and its own layers are removed after."""
    tag = f"convertctl-bench/{variant.stage}:code-change"
    steps = StepCounter()
    with tempfile.TemporaryDirectory(prefix="convertctl-bench-ctx-") as tmp:
        ctx = builder.context(variant, Path(tmp))
        with open(ctx / "stage" / variant.script.name, "a") as f:
            f.write(f"# bench code change {time.time_ns()}\n")  # unique: never a cache hit
        started = time.perf_counter()
        try:
            for chunk in client.api.build(path=str(ctx), tag=tag, buildargs=builder.build_args(variant), rm=True,
                                          forcerm=True, decode=True,
                                          labels={KEY_LABEL: "bench-throwaway", VARIANT_LABEL: variant.name}):
                if "error" in chunk:
                    raise RuntimeError(chunk["error"].strip())
                for line in chunk.get("stream", "").splitlines():
                    steps(line.strip())
            seconds = time.perf_counter() - started
        finally:
            try:
                client.images.remove(tag)
            except Exception:  # noqa: BLE001 - the build may have failed before tagging
                pass
    return build_row(variant.name, "code-only change", seconds, steps)


def remove_for_cold(client, variants) -> None:
    """The variants' images (by tag and by variant label), then dangling layers."""
    import docker

    ids = set()
    for v in variants:
        ids.update(i.id for i in client.images.list(filters={"label": f"{VARIANT_LABEL}={v.name}"}))
        try:
            ids.add(client.images.get(v.tag).id)
        except docker.errors.ImageNotFound:
            pass
    for image_id in list(ids) + [i.id for i in client.images.list(filters={"dangling": True})]:
        try:
            client.images.remove(image_id, force=True)
        except docker.errors.APIError as exc:  # in use by another image or container: keep going
            console.print(f"  could not remove {image_id[:19]}: {exc.explanation}", highlight=False)


def run_bare(client, plan: dict, template: Path, run_dir: Path, model: Path) -> dict:
    """One hardened container per stage, as convertctl starts them; seconds per stage."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    for d in [run_dir] + [run_dir / s for s in STAGES]:
        d.chmod(0o777)
    volumes = {str(run_dir): {"bind": docker_rt.RUN_MOUNT, "mode": "rw"},
               str(model): {"bind": f"{docker_rt.MODEL_MOUNT}/{model.name}", "mode": "ro"}}
    times = {}
    for stage in STAGES:
        started = time.perf_counter()
        container = client.containers.run(plan[stage].tag, command=[docker_rt.RUN_MOUNT], detach=True,
                                          volumes=volumes, **docker_rt.hardening())
        try:
            code = container.wait().get("StatusCode", 1)
            logs = container.logs().decode(errors="replace") if code else ""
        finally:
            container.remove(force=True)
        times[stage] = time.perf_counter() - started
        if code:
            console.print(f"[red]bare {stage} container failed ({code}):[/]\n{logs[-2000:]}", highlight=False)
            sys.exit(2)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="TorchScript model loadable by the docker export image "
                                        "(default: build the example in that image)")
    parser.add_argument("--example", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"])
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16")
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs (median reported)")
    parser.add_argument("--cold", action="store_true",
                        help="remove the docker variants' images and dangling layers, then time their builds")
    args = parser.parse_args()

    client, why = docker_rt.connect()
    if client is None:
        console.print(f"[red]no Docker daemon answers ({why})[/]")
        return 2
    catalog = load_catalog()
    plan = catalog.plan("docker")
    builder = ImageBuilder(client, load_settings())
    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-docker-"))
    work.chmod(0o777)
    builds = []
    try:
        if args.cold:
            console.print("--cold: removing images of " + ", ".join(v.name for v in plan.values()))
            remove_for_cold(client, plan.values())
            for v in plan.values():  # export, convert, then quantize (which shares convert's heavy layer)
                steps, started = StepCounter(), time.perf_counter()
                builder.ensure(v, steps, force=True)
                builds.append(build_row(v.name, "cold", time.perf_counter() - started, steps))
                console.print(f"  {v.name}: {builds[-1][2]} ({builds[-1][3]})")

        # -- (a) run overhead ----------------------------------------------
        if args.model:
            model = Path(args.model).resolve()
        else:
            cache = Path(tempfile.gettempdir()) / "convertctl-bench"
            cache.mkdir(exist_ok=True)
            model = cache / f"{args.example}-{args.input_shape.replace(',', 'x')}-docker.pt"
            if not model.is_file():
                console.print(f"building the example model {model} in {plan['export'].tag} ...")
                cmd = convertctl_cmd() + ["example", str(model), "--name", args.example,
                                          "--input-shape", args.input_shape, "--runtime", "docker"]
                if timed(cmd, work / "example.log")[1]:
                    fail("could not build the example model", work / "example.log")

        def convertctl_run(out: Path, keep: bool = False) -> tuple[float, dict]:
            shutil.rmtree(out, ignore_errors=True)
            log = work / f"{out.name}.log"
            secs, code = timed(convertctl_cmd() + ["run", str(model), "--input-shape", args.input_shape,
                                                   "--quant", args.quant, "--out", str(out), "--runtime", "docker"]
                               + (["--keep-run"] if keep else []), log)
            report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
            if code or report.get("status") != "passed":
                fail(f"convertctl run failed (exit {code})", log)
            return secs, report

        console.print(f"warm-up run (--keep-run): {model.name} {args.input_shape} {args.quant}")
        warm_secs, warm = convertctl_run(work / "warm", keep=True)
        built = [e["variant"] for e in warm.get("environments", []) if e.get("created")]
        console.print(f"  {warm_secs:.1f} s" + (f" (built images: {', '.join(built)})" if built else ""))
        kept = next((work / "warm" / ".convertctl" / "runs").iterdir())
        template = work / "template"
        shutil.copytree(kept / "inputs", template / "inputs")
        for stage in STAGES:
            (template / stage).mkdir()
            shutil.copyfile(kept / stage / "request.json", template / stage / "request.json")

        startup = med([timed(convertctl_cmd() + ["--help"], work / "help.log")[0] for _ in range(3)])
        # What convertctl does before the first container: connect, then one
        # content key per image (reads the build inputs, asks the daemon).
        started = time.perf_counter()
        c2, _ = docker_rt.connect()
        docker_rt.DockerRuntime(c2, load_settings()).prepare(list(dict.fromkeys(plan.values())), lambda _: None)
        checks = time.perf_counter() - started
        # Docker's own floor per container (in A and B alike): a no-op container.
        noop = []
        for _ in range(3):
            started = time.perf_counter()
            c = client.containers.run(plan["convert"].tag, entrypoint=["true"], detach=True, **docker_rt.hardening())
            c.wait()
            c.remove(force=True)
            noop.append(time.perf_counter() - started)

        a_total, b_total = [], []
        a_st, b_st = {s: [] for s in STAGES}, {s: [] for s in STAGES}
        for i in range(args.repeat):
            secs, report = convertctl_run(work / "out")
            a_total.append(secs)
            for row in report["stages"]:
                a_st[row["stage"]].append(row["seconds"])
            times = run_bare(client, plan, template, work / "bare", model)
            b_total.append(sum(times.values()))
            for stage, secs in times.items():
                b_st[stage].append(secs)
            console.print(f"  pair {i + 1}/{args.repeat}: convertctl {a_total[-1]:.1f} s, bare {b_total[-1]:.1f} s")

        # -- (b) builds ----------------------------------------------------
        for v in plan.values():
            steps, started = StepCounter(), time.perf_counter()
            builder.ensure(v, steps, force=True)
            builds.append(build_row(v.name, "cached (force=True)", time.perf_counter() - started, steps))
            builds.append(code_only_build(client, builder, v))

        # -- report --------------------------------------------------------
        a, b = med(a_total), med(b_total)
        table = Table(title=f"(a) docker runtime: {model.name} {args.input_shape} {args.quant}, "
                            f"median of {args.repeat}", show_edge=False)
        for col in ("", "convertctl run", "bare containers", "extra"):
            table.add_column(col, justify="right" if col else "left")
        for stage in STAGES:
            sa, sb = med(a_st[stage]), med(b_st[stage])
            table.add_row(f"{stage} ({plan[stage].name})", f"{sa:.2f} s", f"{sb:.2f} s", f"{sa - sb:+.2f} s")
        in_stages = sum(med(a_st[s]) for s in STAGES)
        table.add_row("host: startup (`convertctl --help`)", f"{startup:.2f} s", "-", "")
        table.add_row("host: connect + image key checks", f"{checks:.2f} s", "-", "")
        table.add_row("host: all else in the run", f"{a - in_stages - startup - checks:.2f} s", "-", "")
        table.add_row("[bold]total wall[/]", f"[bold]{a:.2f} s[/]", f"[bold]{b:.2f} s[/]", f"[bold]{a - b:+.2f} s[/]")
        console.print(table)
        pairs = " ".join(f"{x / y:.2f}" for x, y in zip(a_total, b_total))
        console.print(f"spread: convertctl {min(a_total):.1f}-{max(a_total):.1f} s, bare {min(b_total):.1f}-"
                      f"{max(b_total):.1f} s; ratio per pair: {pairs}; no-op container (in both): "
                      f"{med(noop):.2f} s", highlight=False)
        ratio = a / b
        verdict = "[green]GOAL MET[/]" if ratio <= GOAL else "[red]GOAL NOT MET[/]"
        console.print(f"ratio convertctl/bare = [bold]{ratio:.3f}[/] (goal <= {GOAL}): {verdict}\n")

        table = Table("variant", "build", "time", "steps", title="(b) image builds", show_edge=False)
        for row in builds:
            table.add_row(*row)
        console.print(table)

        table = Table("variant", "tag", "state", "size", title="(c) image sizes", show_edge=False)
        for v in catalog.variants.values():
            d = builder.describe(v)
            state = ("current" if d["current"] else "stale") if d["built"] else "not built"
            table.add_row(v.name, v.tag, state, f"{d['size_bytes'] / 1e9:.2f} GB" if d["built"] else "-")
        console.print(table)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
