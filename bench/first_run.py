"""What does the README's first command cost a new user, cold? (issue 18)

Runs the first line of README.md's first code block, as written, in a fresh
copy of this checkout, with every cache a new user would not have pointed
at empty temporary folders (XDG_CACHE_HOME: convertctl's environments,
stage cache and uv cache, pip's cache; CONVERTCTL_*, UV_CACHE_DIR and
PIP_CACHE_DIR unset), and measures, side by side:

  local   (DOCKER_HOST pointed at nothing, so --runtime auto picks local):
          wall time per part of the line, the time spent building stage
          environments, the bytes of every environment created (what each
          holds: its largest packages), the bytes of uv's cache, and the disk
          both take together (uv hard-links files from its cache into the
          venvs, so the two overlap).
  docker  (--docker; auto picks Docker): wall time, image build time (from
          the "building <ref>" line to the image's creation time), the bytes
          of the images made, and the untagged (dangling) images left after.
          It refuses to run while any convertctl image exists (a cold
          measure needs none): `convertctl images prune --all` removes them.
          Base images (convertctl-base:<suite>, images/base/make-base.sh)
          stay: a new user's Docker pulls python:*-slim instead.

The numbers are printed with the machine's load (load averages, CPUs)
and compared with the issue's goals as ratios: local <= 2 min and <= 3 GB
of environments; Docker <= 6 min of image builds and no untagged leftovers.
GB are 10^9 bytes; sizes are disk usage (du), each file counted once.

    python bench/first_run.py [--docker] [--skip-local] [--keep]

Exit 0 whether or not a goal is met (a benchmark, not a test); 2 when
nothing could be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import console, fail
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"local_seconds": 120, "local_bytes": 3e9, "docker_build_seconds": 360, "docker_dangling": 0}
BASES = ("convertctl-base:",)  # made by images/base/make-base.sh, not by a run


def first_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    if block is None:
        fail("README.md", "has no ```bash code block")
    return block.group(1).splitlines()[0]


def disk_usage(*folders: Path) -> int:
    """Bytes on disk under the folders, each inode once (du's count)."""
    seen: set = set()
    total = 0
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def checkout_copy(dest: Path) -> None:
    """The checkout's files as git sees them (no .venv, no out/): what a clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def new_user_env(cache: Path, **extra: str) -> dict:
    mine = ("UV_CACHE_DIR", "PIP_CACHE_DIR", "VIRTUAL_ENV", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTCTL_") and k not in mine}
    # No venv of ours on PATH: `python3` is the machine's, as in a new shell.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p).parent / "pyvenv.cfg").exists()
    )
    # Wide: convertctl's lines (a "building <ref>" one, say) are read back whole.
    return {**env, "XDG_CACHE_HOME": str(cache), "COLUMNS": "250", **extra}


def run_line(line: str, cwd: Path, env: dict, log: Path) -> tuple[list, list]:
    """Each `&&` part of the line in bash, in order, stopping at a failure:
    ([(part, seconds, exit code)], [(seconds since start, output line)])."""
    parts, lines = [], []
    start = time.monotonic()
    with open(log, "w") as out:
        for part in line.split(" && "):
            began = time.monotonic()
            proc = subprocess.Popen(
                ["bash", "-c", part], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            for text in proc.stdout:
                out.write(text)
                lines.append((time.monotonic() - start, text.rstrip()))
            code = proc.wait()
            parts.append((part, time.monotonic() - began, code))
            if code:
                break
    return parts, lines


def print_parts(parts: list) -> float:
    table = Table(show_edge=False)
    table.add_column("part of the README's first line")
    table.add_column("wall", justify="right")
    for part, secs, code in parts:
        shown = part if len(part) < 90 else part[:87] + "..."
        table.add_row(escape(shown), f"{secs:.0f} s" + (f" (exit {code})" if code else ""))
    total = sum(s for _, s, _ in parts)
    table.add_row("[bold]total[/]", f"[bold]{total:.0f} s[/]")
    console.print(table)
    return total


def largest(site: Path, n: int = 4) -> str:
    sizes = sorted(((disk_usage(p), p.name) for p in site.iterdir() if not p.name.endswith(".dist-info")), reverse=True)
    return ", ".join(f"{name} {size / 1e6:.0f} MB" for size, name in sizes[:n])


def report_of(repo: Path) -> dict:
    path = repo / "out" / "report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def measure_local(line: str, work: Path) -> None:
    repo, cache = work / "local" / "repo", work / "local" / "cache"
    checkout_copy(repo)
    console.print(f"[bold]local[/] (DOCKER_HOST points at nothing), caches in {cache}")
    env = new_user_env(cache, DOCKER_HOST=f"unix://{work}/no-docker.sock")
    parts, _ = run_line(line, repo, env, work / "local.log")
    total = print_parts(parts)
    if parts[-1][2]:
        fail(f"the line failed (exit {parts[-1][2]}), log {work / 'local.log'}", (work / "local.log").read_text())
    store = cache / "convertctl"
    envs = sorted(p for p in (store / "envs").iterdir() if p.is_dir())
    table = Table(title="stage environments created", show_edge=False)
    for column in ("environment", "variant", "disk", "largest packages"):
        table.add_column(column, justify="right" if column == "disk" else "left")
    for env_dir in envs:
        marker = env_dir / ".convertctl-ready"
        variant = json.loads(marker.read_text()).get("variant", "?") if marker.is_file() else "(not ready)"
        site = next(env_dir.glob("lib/python*/site-packages"), None)
        table.add_row(env_dir.name, variant, gb(disk_usage(env_dir)), largest(site) if site else "")
    console.print(table)
    env_bytes, uv_bytes = disk_usage(*envs), disk_usage(store / "uv-cache")
    both = disk_usage(*envs, store / "uv-cache")
    host = disk_usage(repo / ".venv")
    built = [e for e in report_of(repo).get("environments", []) if e.get("created")]
    console.print(
        f"environments {gb(env_bytes)}; uv cache {gb(uv_bytes)}; both together {gb(both)} on disk "
        f"(uv hard-links its files into the venvs); convertctl's own .venv {gb(host)}, pip cache "
        f"{gb(disk_usage(cache / 'pip'))}; stage cache {gb(disk_usage(store / 'cache'))}",
        highlight=False,
    )
    if built:  # `convertctl example`'s own build is not in the run's report
        console.print(
            "built during `convertctl run`: "
            + ", ".join(f"{e['variant']} {e['seconds']:.0f} s" for e in built)
            + f" (total {sum(e['seconds'] for e in built):.0f} s)",
            highlight=False,
        )
    ratio("local: wall time of the line", total, GOALS["local_seconds"], "s")
    ratio("local: environments on disk", env_bytes / 1e9, GOALS["local_bytes"] / 1e9, "GB")


def ratio(what: str, value: float, goal: float, unit: str) -> None:
    verdict = "[green]goal met[/]" if value <= goal else "[red]goal not met[/]"
    console.print(f"{what}: {value:.2f} {unit} / goal {goal:g} {unit} = [bold]{value / goal:.2f}[/] {verdict}")


def convertctl_images(client) -> list:
    """Images a run or `images build` made: a convertctl tag or label, bases aside."""
    found = []
    for image in client.images.list():  # tagged and dangling; intermediate layers go with them
        tags = image.tags or []
        if tags and all(t.startswith(BASES) for t in tags):
            continue
        labels = (image.attrs.get("Config") or {}).get("Labels") or {}
        if any(t.startswith("convertctl/") for t in tags) or any(k.startswith("org.convertctl.") for k in labels):
            found.append(image)
    return found


def created(image) -> float:
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", image.attrs["Created"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def measure_docker(line: str, work: Path) -> None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure: no daemon to measure
        fail("--docker: no Docker daemon answers", str(exc))
    present = convertctl_images(client)
    if present:
        names = [(i.tags or [i.short_id])[0] for i in present]
        console.print(
            f"[red]--docker measures a cold start, and {len(present)} convertctl image(s) exist[/] "
            f"({escape(', '.join(names[:6]))}{', ...' if len(names) > 6 else ''}): remove them with "
            "`convertctl images prune --all` (untagged build stages included), then run this again",
            highlight=False,
        )
        sys.exit(2)
    before = {i.id for i in client.images.list(all=True)}
    dangling_before = {i.id for i in client.images.list(filters={"dangling": True})}
    layers_before = client.df().get("LayersSize", 0)
    repo, cache = work / "docker" / "repo", work / "docker" / "cache"
    checkout_copy(repo)
    console.print(f"[bold]docker[/] (--runtime auto, a daemon answers), caches in {cache}")
    wall_start = time.time()
    parts, lines = run_line(line, repo, new_user_env(cache), work / "docker.log")
    total = print_parts(parts)
    if parts[-1][2]:
        fail(f"the line failed (exit {parts[-1][2]}), log {work / 'docker.log'}", (work / "docker.log").read_text())
    new = [i for i in client.images.list() if i.id not in before]  # tagged ones, and dangling ones
    dangling = [i for i in client.images.list(filters={"dangling": True}) if i.id not in dangling_before]
    builds = []
    for at, text in lines:
        found = re.search(r"(?:^|\s)building (\S+) \(", text)  # "› building <ref> (stage, ...)"
        if found:
            try:
                builds.append((found.group(1), created(client.images.get(found.group(1))) - (wall_start + at)))
            except docker.errors.ImageNotFound:
                builds.append((found.group(1), float("nan")))
    for ref, secs in builds:
        console.print(f"  built {ref} in {secs:.0f} s", highlight=False)
    build_secs = sum(s for _, s in builds)
    image_bytes = client.df().get("LayersSize", 0) - layers_before
    console.print(
        f"images made: {len(new) - len(dangling)} tagged, {len(dangling)} untagged; wall {total:.0f} s; layers grew by "
        f"{gb(image_bytes)} (the new images' own sizes: {gb(sum(i.attrs.get('Size', 0) for i in new))}, "
        "layers shared between them counted in each)",
        highlight=False,
    )
    if not builds:
        console.print("[yellow]no 'building <ref>' line in the output: image build time unknown[/]")
    ratio("docker: image builds", build_secs, GOALS["docker_build_seconds"], "s")
    verdict = "[green]goal met[/]" if len(dangling) <= GOALS["docker_dangling"] else "[red]goal not met[/]"
    console.print(f"docker: untagged images left: {len(dangling)} / goal 0 {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docker", action="store_true", help="Also measure the Docker runtime (no convertctl images).")
    parser.add_argument("--skip-local", action="store_true", help="Only the Docker runtime.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folders (printed).")
    args = parser.parse_args()
    line = first_command()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cpus = len(os.sched_getaffinity(0))
    console.print(f"README's first command: {line}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"machine: {cpus} CPUs, load average {load} (1, 5, 15 min) at the start", highlight=False)
    work = Path(tempfile.mkdtemp(prefix="convertctl-first-run-"))
    try:
        if not args.skip_local:
            measure_local(line, work)
        if args.docker:
            measure_docker(line, work)
    finally:
        end = " ".join(f"{x:.2f}" for x in os.getloadavg())
        console.print(f"load average at the end {end}; {time.strftime('%Y-%m-%d %H:%M %Z')}", highlight=False)
        if args.keep:
            console.print(f"kept {work}", highlight=False)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
