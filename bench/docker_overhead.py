"""What convertctl costs on the Docker runtime, and what its images cost.

(a) A = a warm `convertctl run MODEL --runtime docker` (images current); B =
    the same steps bare: one container per step of the kept run's
    report["stages"] (same image, hardening and mounts; the command
    convertctl gives: /opt/convertctl/<script> /rundir <work>), fed the
    request.json files of that run. A/B is the overhead factor, goal <= 1.15.
    Both pay container start/stop; A adds host start-up, image key checks,
    inputs, log streaming, validation and the report. Interleaved A, B, A,
    B..., medians of --repeat pairs. "Own time" (A's wall minus the time
    inside its containers) and the ratio it implies (wall / time in stages)
    are drift-free: if the two ratios differ much, the machine was noisy.
    The default model is the example built IN THE DOCKER EXPORT IMAGE (the
    first export rung, torch 1.7); --model with a current-torch model runs
    the export in the current-torch image instead.
(b) Builds, through convertctl's ImageBuilder, per image the docker ladders
    use (the current-torch export image included). cached: ensure(force=True)
    on an existing image. code-only: the context with one extra comment line
    in the stage .py, under a throwaway tag removed afterwards. cold install:
    the context with one extra comment line in the lock, so the build
    stage's install (download + install, uv without a cache, hash-checked)
    and the final image's venv layer are made from nothing on top of the
    cached base, once per lock (convert and quantize share one), under a
    throwaway tag removed afterwards; this needs no
    deletion of anything, and never --no-cache (see images/DOCKER-NOTES.md).
    A first build on a new machine adds the base image
    (images/base/make-base.sh, ~1 min per suite). "cached k/n": steps from
    cache (FROM and the ARG before each never hit).
(c) Size per catalog variant (describe()), with the current-torch export
    image against its goal (< 1.2 GB); images of one lock share their venv
    layer, so sizes do not add up on disk.

Exit 0 whether or not a goal is met (a benchmark, not a test); 2 only if
nothing could be measured.

    python bench/docker_overhead.py [--repeat 3] [--model M.pt] [--quant fp16]
                                    [--input-shape 1,3,256,256] [--no-cold] [--builds-only]
    (with the Python that has convertctl installed; common.py is imported
    from beside this file)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import console, convertctl_cmd, example_model, fail, med, print_overhead, run_convertctl, timed, warm_up
from convertctl.config.catalog import load_catalog
from convertctl.runtimes import docker as docker_rt
from convertctl.runtimes.images import ImageBuilder
from convertctl.store.pipconfig import load_settings
from rich.table import Table

CURRENT_TORCH = "export-torch2.13"
SIZE_GOAL = 1.2e9  # bytes, as `docker images` counts them


class StepCounter:
    """A `say` callback on the legacy builder's output: steps, cache hits, and
    whether the build stage's install RUN and the final stage's venv COPY
    were cached."""

    def __init__(self):
        self.steps: list = []  # [step text, from cache, image id it made]

    def __call__(self, line: str) -> None:
        if line.startswith("Step "):
            self.steps.append([line, False, ""])
        elif line.startswith("---> Using cache") and self.steps:
            self.steps[-1][1] = True
        elif re.fullmatch(r"---> [0-9a-f]{12}", line) and self.steps:
            self.steps[-1][2] = line.split()[1]

    def build_stage_image(self) -> str:
        """The id of the build stage's last image (before the second FROM), if that stage was built anew."""
        froms = [i for i, (text, _, _) in enumerate(self.steps) if text.split(" : ", 1)[-1].startswith("FROM")]
        if len(froms) < 2 or all(cached for _, cached, _ in self.steps[froms[0] + 1 : froms[1]]):
            return ""
        return self.steps[froms[1] - 1][2]

    def summary(self) -> str:
        def cached(pred) -> str:
            hit = [c for text, c, _ in self.steps if pred(text.split(" : ", 1)[-1])]
            return "" if not hit else ("cached" if all(hit) else "BUILT")

        # The install is the RUN right after `COPY wheels/` (say() lines are cut at 120 characters).
        after = [i + 1 for i, (text, _, _) in enumerate(self.steps) if " : COPY wheels/" in text]
        install = "" if not after or after[0] >= len(self.steps) else ("cached" if self.steps[after[0]][1] else "BUILT")
        venv = cached(lambda cmd: cmd.startswith("COPY --from=build /opt/venv"))
        return f"cached {sum(c for _, c, _ in self.steps)}/{len(self.steps)}, install {install}, venv layer {venv}"


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def timed_ensure(builder: ImageBuilder, variant, what: str, steps: StepCounter | None = None) -> tuple:
    steps = steps or StepCounter()
    secs = seconds(lambda: builder.ensure(variant, steps, force=True))
    return variant.name, what, f"{secs:.1f} s", steps.summary()


class Changed(ImageBuilder):
    """convertctl's builder, with one extra comment line in one context file."""

    def __init__(self, client, settings, file: str):
        super().__init__(client, settings, registry="")
        self.file = file

    def context(self, variant, into: Path) -> Path:
        ctx = super().context(variant, into)
        path = ctx / (f"stage/{Path(variant.script_rel).name}" if self.file == "code" else "requirements.txt")
        with open(path, "a") as f:
            f.write(f"# bench change {time.time_ns()}\n")  # unique: never a cache hit
        return ctx


def throwaway_build(client, settings, variant, file: str, what: str) -> tuple:
    builder = Changed(client, settings, file)
    throwaway = replace(variant, tag=f"convertctl-bench/{variant.stage}:{file}-change")
    steps = StepCounter()
    try:
        return timed_ensure(builder, throwaway, what, steps)
    finally:
        # The layers only they use go too; a build stage made anew (lock touched)
        # is an untagged image of its own. A cached one is the real image's: kept.
        for ref in (builder.ref(throwaway), throwaway.tag, steps.build_stage_image()):
            try:
                if ref:
                    client.images.remove(ref)
            except Exception:  # noqa: BLE001 - the build may have failed before tagging
                pass


def run_bare(client, builder: ImageBuilder, steps: list, template: Path, run_dir: Path, model: Path) -> dict:
    """One hardened container per step of the kept run, as convertctl starts
    them; seconds per stage (a stage's steps added up)."""
    catalog = load_catalog()
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    for d in [run_dir, *(p for p in run_dir.rglob("*") if p.is_dir())]:
        d.chmod(0o777)
    mount = docker_rt.HOST_PATHS["model"]
    volumes = {
        str(run_dir): {"bind": docker_rt.RUN_MOUNT, "mode": "rw"},
        str(model): {"bind": f"{mount}/{model.name}", "mode": "ro"},
    }
    times: dict = {}
    for st in steps:
        started = time.perf_counter()
        container = client.containers.run(
            builder.ref(catalog.get(st["variant"])),
            command=[f"{docker_rt.CODE_ROOT}/{st['script']}", docker_rt.RUN_MOUNT, st["work"]],
            detach=True,
            volumes=volumes,
            **docker_rt.hardening(),
        )
        try:
            code = container.wait().get("StatusCode", 1)
            logs = container.logs().decode(errors="replace") if code else ""
        finally:
            container.remove(force=True)
        times[st["stage"]] = times.get(st["stage"], 0.0) + time.perf_counter() - started
        if code:
            fail(f"bare {st['stage']} container ({st['work']}) failed ({code})", logs)
    return times


def overhead(args, client, builder, settings, work: Path) -> None:
    """(a): the warm run against its bare steps."""
    catalog = load_catalog()
    model = example_model(args, "docker", work)
    kept = warm_up(args, model, "docker", work)
    used = {st["variant"] for st in json.loads((kept / "report.json").read_text())["stages"]}
    startup = med([timed(convertctl_cmd() + ["--help"], work / "help.log")[0] for _ in range(3)])
    # What a run does before its first container: connect, one content key per image.
    variants = [catalog.get(name) for name in sorted(used)]
    checks = seconds(
        lambda: docker_rt.DockerRuntime(docker_rt.connect()[0], settings).prepare(variants, lambda _: None)
    )
    # Docker's own floor per container (create, start, wait, remove), paid by A and B alike.
    some_image = builder.ref(variants[0])
    noop = med(
        [
            seconds(
                lambda: client.containers.run(some_image, entrypoint=["true"], remove=True, **docker_rt.hardening())
            )
            for _ in range(3)
        ]
    )
    a_total, b_total, a_st, b_st = [], [], [], []  # wall times; {stage: seconds} per run
    for i in range(args.repeat):
        secs, report = run_convertctl(args, model, "docker", work / "out")
        a_total.append(secs)
        per_stage: dict = {}
        for row in report["stages"]:
            per_stage[row["stage"]] = per_stage.get(row["stage"], 0.0) + row["seconds"]
        a_st.append(per_stage)
        b_st.append(run_bare(client, builder, report["stages"], work / "template", work / "bare", model))
        b_total.append(sum(b_st[-1].values()))
        console.print(f"  pair {i + 1}/{args.repeat}: convertctl {a_total[-1]:.1f} s, bare {b_total[-1]:.1f} s")
    print_overhead(
        f"(a) docker: {model.name} {args.input_shape} {args.quant}, median of {args.repeat}",
        {st["stage"]: catalog.get(st["variant"]) for st in report["stages"]},
        a_total,
        b_total,
        a_st,
        b_st,
        [("startup (convertctl --help)", startup), ("connect + image key checks", checks)],
        "bare containers",
        f"; a no-op container (in both): {noop:.2f} s",
    )
    console.print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model to convert (default: the example built by the docker export image)")
    parser.add_argument("--example", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"])
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16")
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold install builds (minutes each)")
    parser.add_argument("--builds-only", action="store_true", help="only (b) and (c): no conversion runs")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    client, why = docker_rt.connect()
    if client is None:
        fail("no Docker daemon answers", why)
    import docker

    # A daemon committing a GB layer for someone else can take longer than
    # connect()'s 10 s to answer an inspect: be patient, this is a benchmark.
    client = docker.from_env(timeout=600)
    catalog, settings = load_catalog(), load_settings()
    builder = ImageBuilder(client, settings, registry="")
    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-docker-"))
    builds = []
    try:
        if not args.builds_only:
            overhead(args, client, builder, settings, work)

        # -- (b) builds: every image the docker ladders use --------------------
        cold_locks: set = set()
        for v in catalog.environments("docker"):
            builder.ensure(v, lambda _: None)  # current first, so "cached" means cached
            builds += [
                timed_ensure(builder, v, "cached (force=True)"),
                throwaway_build(client, settings, v, "code", "code-only change"),
            ]
            if not args.no_cold and v.requirements not in cold_locks:  # once per lock: same build stage
                cold_locks.add(v.requirements)
                builds.append(throwaway_build(client, settings, v, "lock", "cold install (lock touched)"))
        table = Table("variant", "build", "time", "steps", title="(b) image builds", show_edge=False)
        for row in builds:
            table.add_row(*row)
        console.print(table)

        # -- (c) sizes ---------------------------------------------------------
        table = Table("variant", "tag", "state", "size", "venv layer", title="(c) image sizes", show_edge=False)
        for v in catalog.variants.values():
            d = builder.describe(v)
            layer = venv_layer_size(client, d["ref"]) if d["current"] else 0
            table.add_row(
                v.name,
                v.tag,
                d["state"],
                f"{d['size_bytes'] / 1e9:.2f} GB" if d["built"] else "-",
                f"{layer / 1e9:.2f} GB" if layer else "-",
            )
        console.print(table)
        current = builder.describe(catalog.get(CURRENT_TORCH))
        if current["current"]:
            verdict = "[green]GOAL MET[/]" if current["size_bytes"] < SIZE_GOAL else "[red]GOAL NOT MET[/]"
            console.print(
                f"{CURRENT_TORCH} image: [bold]{current['size_bytes'] / 1e9:.3f} GB[/] "
                f"(goal < {SIZE_GOAL / 1e9:.1f} GB): {verdict}"
            )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def venv_layer_size(client, ref: str) -> int:
    """Bytes of the `COPY --from=build /opt/venv` layer (what a lock costs on disk, once)."""
    for entry in client.images.get(ref).history():
        if (entry.get("CreatedBy") or "").rstrip().endswith(" in /opt/venv"):
            return int(entry.get("Size", 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
