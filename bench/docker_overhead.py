"""What convertctl costs on the Docker runtime, and what its images cost.

(a) A = a warm `convertctl run MODEL --runtime docker` (images current); B =
    the same three stages bare: one container each (Docker SDK; same image,
    hardening and mounts), fed the request.json files of a kept run. A/B is
    the overhead factor, goal <= 1.15. Both pay container start/stop; A adds
    host start-up, image key checks, inputs, log streaming, validation and
    the report. Interleaved A, B, A, B..., medians of --repeat pairs. "Own
    time" (A's wall minus the time inside its containers) and the ratio it
    implies (wall / time in stages) are drift-free: if the two ratios differ
    much, the machine was noisy. The default model is the example built IN
    THE DOCKER EXPORT IMAGE (torch 1.7 cannot load newer TorchScript).
(b) Builds, through convertctl's ImageBuilder. cached: ensure(force=True) on
    an existing image. code-only: the context with one extra comment line in
    the stage .py, under a throwaway tag removed afterwards. cold install:
    the context with one extra comment line in the lock, so the package
    layer (download + install, uv without a cache) is built from nothing on
    top of the cached base, under a throwaway tag removed afterwards; this
    needs no deletion of anything, and never --no-cache (see
    images/DOCKER-NOTES.md). A first build on a new machine adds the base
    image (images/base/make-base.sh, ~1 min per suite). "cached k/n": steps
    from cache (all cached = n-2: FROM and the ARG before it never hit).
(c) Size per catalog variant (describe()); images of one TF version share
    their heavy layer, so sizes do not add up on disk.

Exit 0 whether or not the goal is met (a benchmark, not a test); 2 only if
nothing could be measured.

    python bench/docker_overhead.py [--repeat 3] [--model M.pt] [--quant fp16]
                                    [--input-shape 1,3,256,256] [--no-cold]
    (with the Python that has convertctl installed; common.py is imported
    from beside this file)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import console, convertctl_cmd, example_model, fail, med, print_overhead, run_convertctl, timed, warm_up
from convertctl.catalog import STAGES, load_catalog
from convertctl.pipconfig import load_settings
from convertctl.runtimes import docker as docker_rt
from convertctl.runtimes.images import ImageBuilder
from rich.table import Table


class StepCounter:
    """A `say` callback on the legacy builder's output: steps, cache hits, and
    whether the install step (after `COPY requirements.txt`) was cached."""

    def __init__(self):
        self.steps: list = []  # [step text, from cache]

    def __call__(self, line: str) -> None:
        if line.startswith("Step "):
            self.steps.append([line, False])
        elif line.startswith("---> Using cache") and self.steps:
            self.steps[-1][1] = True

    def summary(self) -> str:
        lock = next((i for i, (text, _) in enumerate(self.steps) if "COPY requirements.txt" in text), None)
        install = (
            ""
            if lock is None or lock + 1 >= len(self.steps)
            else (", install cached" if self.steps[lock + 1][1] else ", install BUILT")
        )
        return f"cached {sum(c for _, c in self.steps)}/{len(self.steps)}{install}"


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def timed_ensure(builder: ImageBuilder, variant, what: str) -> tuple:
    steps = StepCounter()
    secs = seconds(lambda: builder.ensure(variant, steps, force=True))
    return variant.name, what, f"{secs:.1f} s", steps.summary()


class Changed(ImageBuilder):
    """convertctl's builder, with one extra comment line in one context file."""

    def __init__(self, client, settings, file: str):
        super().__init__(client, settings)
        self.file = file

    def context(self, variant, into: Path) -> Path:
        ctx = super().context(variant, into)
        path = ctx / (f"stage/{variant.script.name}" if self.file == "code" else "requirements.txt")
        with open(path, "a") as f:
            f.write(f"# bench change {time.time_ns()}\n")  # unique: never a cache hit
        return ctx


def throwaway_build(client, settings, variant, file: str, what: str) -> tuple:
    throwaway = replace(variant, tag=f"convertctl-bench/{variant.stage}:{file}-change")
    try:
        return timed_ensure(Changed(client, settings, file), throwaway, what)
    finally:
        try:  # the tag and the layers only it uses; the cached ones stay
            client.images.remove(throwaway.tag)
        except Exception:  # noqa: BLE001 - the build may have failed before tagging
            pass


def run_bare(client, plan: dict, template: Path, run_dir: Path, model: Path) -> dict:
    """One hardened container per stage, as convertctl starts them; seconds per stage."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    for d in [run_dir] + [run_dir / s for s in STAGES]:
        d.chmod(0o777)
    volumes = {
        str(run_dir): {"bind": docker_rt.RUN_MOUNT, "mode": "rw"},
        str(model): {"bind": f"{docker_rt.MODEL_MOUNT}/{model.name}", "mode": "ro"},
    }
    times = {}
    for stage in STAGES:
        started = time.perf_counter()
        container = client.containers.run(
            plan[stage].tag, command=[docker_rt.RUN_MOUNT], detach=True, volumes=volumes, **docker_rt.hardening()
        )
        try:
            code = container.wait().get("StatusCode", 1)
            logs = container.logs().decode(errors="replace") if code else ""
        finally:
            container.remove(force=True)
        times[stage] = time.perf_counter() - started
        if code:
            fail(f"bare {stage} container failed ({code})", logs)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="TorchScript the docker export image can load (default: the example)")
    parser.add_argument("--example", default="mobilenetv2", choices=["mobilenetv2", "smallcnn"])
    parser.add_argument("--input-shape", default="1,3,256,256")
    parser.add_argument("--quant", default="fp16")
    parser.add_argument("--repeat", type=int, default=3, help="timed A/B pairs (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold package-layer builds (~40 s each)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    client, why = docker_rt.connect()
    if client is None:
        fail("no Docker daemon answers", why)
    catalog, settings = load_catalog(), load_settings()
    plan = catalog.plan("docker")
    builder = ImageBuilder(client, settings)
    work = Path(tempfile.mkdtemp(prefix="convertctl-bench-docker-"))
    builds = []
    try:
        # -- (a) run overhead ------------------------------------------------
        model = example_model(args, "docker", work)
        warm_up(args, model, "docker", work)
        startup = med([timed(convertctl_cmd() + ["--help"], work / "help.log")[0] for _ in range(3)])
        # What a run does before its first container: connect, one content key per image.
        checks = seconds(
            lambda: docker_rt.DockerRuntime(docker_rt.connect()[0], settings).prepare(
                list(plan.values()), lambda _: None
            )
        )
        # Docker's own floor per container (create, start, wait, remove), paid by A and B alike.
        noop = med(
            [
                seconds(
                    lambda: client.containers.run(
                        plan["convert"].tag, entrypoint=["true"], remove=True, **docker_rt.hardening()
                    )
                )
                for _ in range(3)
            ]
        )
        a_total, b_total, a_st, b_st = [], [], [], []  # wall times; {stage: seconds} per run
        for i in range(args.repeat):
            secs, report = run_convertctl(args, model, "docker", work / "out")
            a_total.append(secs)
            a_st.append({row["stage"]: row["seconds"] for row in report["stages"]})
            b_st.append(run_bare(client, plan, work / "template", work / "bare", model))
            b_total.append(sum(b_st[-1].values()))
            console.print(f"  pair {i + 1}/{args.repeat}: convertctl {a_total[-1]:.1f} s, bare {b_total[-1]:.1f} s")

        # -- (b) builds ------------------------------------------------------
        for v in plan.values():
            builds += [
                timed_ensure(builder, v, "cached (force=True)"),
                throwaway_build(client, settings, v, "code", "code-only change"),
            ]
            if not args.no_cold:
                builds.append(throwaway_build(client, settings, v, "lock", "cold install (lock touched)"))

        # -- report ----------------------------------------------------------
        print_overhead(
            f"(a) docker: {model.name} {args.input_shape} {args.quant}, median of {args.repeat}",
            plan,
            a_total,
            b_total,
            a_st,
            b_st,
            [("startup (convertctl --help)", startup), ("connect + image key checks", checks)],
            "bare containers",
            f"; a no-op container (in both): {noop:.2f} s",
        )
        console.print()
        table = Table("variant", "build", "time", "steps", title="(b) image builds", show_edge=False)
        for row in builds:
            table.add_row(*row)
        console.print(table)
        table = Table("variant", "tag", "state", "size", title="(c) image sizes", show_edge=False)
        for v, d in ((v, builder.describe(v)) for v in catalog.variants.values()):
            table.add_row(v.name, v.tag, d["state"], f"{d['size_bytes'] / 1e9:.2f} GB" if d["built"] else "-")
        console.print(table)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
