"""The convertctl command line (typer + rich). Commands parse flags, call the
domain code and render; a ConvertError becomes one message and its exit code."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from convertctl import __version__
from convertctl.cli.batch_cmd import batch_command
from convertctl.cli.cache_cmd import cache_app, envs_summary, runs_app, verify_command
from convertctl.cli.images_cmd import images_app
from convertctl.cli.params import RUN_OPTIONS, given, with_options

# numpy, the pipeline and the runtimes are imported inside the commands that
# use them: `convertctl --help` and argument errors must not pay for them.
from convertctl.cli.ui import STATE, Progress, console, handled, options_of, runtime_for
from convertctl.config.catalog import load_catalog
from convertctl.config.options import ENVIRONMENT, OUTPUT, SPECS
from convertctl.errors import EXIT_ENVIRONMENT, ConvertError, UsageError
from convertctl.report.text import term
from convertctl.store import rundir, safefs

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="PyTorch -> ONNX -> TensorFlow -> validated TFLite, each stage in its own pinned environment.",
)
envs_app = typer.Typer(no_args_is_help=True, help="Local stage environments (virtualenvs).")
report_app = typer.Typer(no_args_is_help=True, help="Saved reports.")
app.add_typer(envs_app, name="envs")
app.add_typer(report_app, name="report")
app.add_typer(images_app, name="images")
app.add_typer(cache_app, name="cache")
app.add_typer(runs_app, name="runs")


def version_callback(value: bool):
    if value:
        console.print(f"convertctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool | None, typer.Option("--version", callback=version_callback, is_eager=True)] = None,
):
    STATE["debug"] = debug


@app.command()
@handled
@with_options(*RUN_OPTIONS)
def run(
    model: Annotated[Path, typer.Argument(help=SPECS["model"].help.split(": the command's")[0] + ".")],
    config: Annotated[
        Path | None,
        typer.Option(help="Settings file. Default: convertctl.toml next to the model.", rich_help_panel=OUTPUT),
    ] = None,
    trust_config: Annotated[
        bool,
        typer.Option(
            "--trust-config",
            help="Let the settings file name code to import (arch, arch_kwargs, code); refused otherwise.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    **flags,
):
    """Convert MODEL to one validated .tflite per quantization mode."""
    convert(model, config, trust_config, flags)


@app.command()
@handled
@with_options(*RUN_OPTIONS)
def quantize(
    model: Annotated[Path, typer.Argument(help="A float .tflite file (fp32 I/O and weights).")],
    config: Annotated[
        Path | None,
        typer.Option(help="Settings file. Default: convertctl.toml next to the model.", rich_help_panel=OUTPUT),
    ] = None,
    **flags,
):
    """Quantize an existing float .tflite: one validated file per mode, judged against the float file's own
    outputs (run by LiteRT)."""
    from convertctl.inputs import tfliteinfo

    try:
        with open(model, "rb") as f:
            is_tflite = tfliteinfo.is_tflite(f.read(8))
    except OSError as exc:
        raise UsageError(f"{model}: cannot read it ({exc.strerror or exc})") from None
    if not is_tflite:
        raise UsageError(f"{model}: not a .tflite file (no TFL3 identifier); `convertctl run` converts other models")
    if not flags.get("quant"):
        raise UsageError(f"convertctl quantize {model}: which modes? give --quant (-q), e.g. -q int8 -q fp16")
    convert(model, config, False, flags)


def convert(model: Path, config: Path | None, trust_config: bool, flags: dict) -> None:
    """What run and quantize do: options checked, the plan run (or printed), the report shown."""
    from convertctl.api.run import check, dry_run, execute
    from convertctl.report.render import print_report

    typed = given(flags)
    if "out" in typed and not str(typed["out"]).strip():  # an unset shell variable: not the working directory
        raise UsageError("--out '': an empty folder name (an unset variable?); give the output folder")
    checked = check(model, config, typed, trust_config)  # what the Python API runs too
    with Progress() as say:
        if checked.options.dry_run:
            plan, runtime = dry_run(checked, say)
        else:
            report = execute(checked, say)
    if checked.options.dry_run:
        console.print(f"plan for {term(model)} on the {runtime} runtime (nothing was run):", highlight=False)
        for line in plan.lines():
            console.print("  " + term(line), highlight=False)
        raise typer.Exit(0)
    print_report(report, console)
    raise typer.Exit(report.exit_code)


@app.command()
@handled
@with_options(*ENVIRONMENT)
def example(
    path: Annotated[Path, typer.Argument(help="Where to save the TorchScript model.")],
    name: Annotated[str, typer.Option(help="mobilenetv2, smallcnn or convnext.")] = "mobilenetv2",
    input_shape: Annotated[str, typer.Option("--input-shape")] = "1,3,256,256",
    seed: Annotated[int, typer.Option()] = 0,
    **flags,
):
    """Build an example model (random weights, BatchNorm recalibrated) in the export environment."""
    from convertctl.inputs.arrays import parse_shape
    from convertctl.runtimes.base import Step

    if name not in ("mobilenetv2", "smallcnn", "convnext"):
        raise UsageError(f"--name {name!r}: choose mobilenetv2, smallcnn or convnext")
    shape = parse_shape(input_shape)
    with Progress() as say:
        rt = runtime_for(options_of(flags), say)
        # The first export rung: on Docker the tutorial's torch, so that the
        # example loads in every export environment.
        variant = load_catalog().ladder(rt.name, "export")[0]
        run_dir = Path(tempfile.mkdtemp(prefix="convertctl-example-"))  # 0700: ours alone
        rundir.hold(run_dir)
        try:
            request = {
                "action": "example",
                "example": name,
                "seed": seed,
                "input_shape": list(shape),
                "output": "model.pt",
            }
            result = rt.run(Step(variant, "example", request), run_dir, say)
            if not result.ok:
                raise ConvertError(f"could not build the example: {result.error}")
            path.parent.mkdir(parents=True, exist_ok=True)
            with safefs.open_read(run_dir, "model.pt") as src, open(path, "wb") as dst:  # never through a link
                shutil.copyfileobj(src, dst)
        finally:
            rundir.release(run_dir)
            shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"saved {name} {list(shape)} to {term(path)}", highlight=False)


@envs_app.command("list")
@handled
def envs_list():
    """Local environments: which variant, ready, building, half-built or broken, size."""
    from convertctl.store import envprune
    from convertctl.store.diskuse import human, usage
    from convertctl.store.envstore import EnvStore

    store = EnvStore()
    current = {store.path_for(v).name for v in load_catalog().variants.values()}
    rows = envprune.entries(store)
    if not rows:
        console.print(f"no environments in {term(store.envs_dir)}", highlight=False)
    for row in rows:
        state = row["state"] if row["state"] in ("ready", "building") else row["state"].upper()
        stale = "" if row["name"] in current else " (stale: no variant uses it)"
        line = f"{row['name']}  {row['variant']}  {state}  {human(row['size_bytes'])}{stale}"
        console.print(term(line), highlight=False)
    for name in envprune.foreign(store):
        console.print(f"not made by convertctl (prune leaves it alone): {term(name)}", highlight=False)
    if rows:
        stale_paths = [Path(r["path"]) for r in rows if r["name"] not in current or r["state"] != "ready"]
        both = usage(*(Path(r["path"]) for r in rows), store.uv_cache)
        console.print(
            f"{len(rows)} environment(s) in {term(store.envs_dir)}; with uv's download cache "
            f"{human(both.total)} on disk"
            + (f"; `convertctl envs prune` would free {human(usage(*stale_paths).freed)}" if stale_paths else ""),
            highlight=False,
        )
    console.print(envs_summary(), highlight=False)


@envs_app.command("prune")
@handled
def envs_prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go, remove nothing.")] = False,
    all_envs: Annotated[
        bool, typer.Option("--all", help="Remove every environment, and uv's download cache in the store.")
    ] = False,
):
    """Remove the environments no catalog variant uses, and half-built or broken ones (--all: every one).
    One that a run is building or using is left alone; so is anything convertctl did not make."""
    from convertctl.store import envprune
    from convertctl.store.diskuse import human, usage
    from convertctl.store.envstore import EnvStore

    store = EnvStore()
    keep = set() if all_envs else {store.path_for(v).name for v in load_catalog().variants.values()}
    done = envprune.prune(store, keep, dry_run)
    verb, frees = ("would remove", "would free") if dry_run else ("removed", "freed")
    shared = done.size_bytes - done.freed_bytes
    console.print(
        f"{verb} {len(done.rows)} environment(s), {human(done.size_bytes)}: {frees} {human(done.freed_bytes)}"
        + (f" (the other {human(shared)}: files uv's cache or a kept environment links too)" if shared > 0 else "")
        + "".join(f"\n  {term(r['name'])}  {term(r['variant'])}  {human(r['size_bytes'])}" for r in done.rows),
        highlight=False,
    )
    if all_envs:
        said, freed = envprune.clean_uv_cache(store, dry_run, busy=bool(done.busy))
        if dry_run:  # removed together, the cache and the environments free their shared files too
            freed = usage(*(Path(r["path"]) for r in done.rows), store.uv_cache).freed
        else:
            freed += done.freed_bytes
        console.print(f"{term(said)}; {frees} {human(freed)} in all", highlight=False)
    for name in done.busy:
        console.print(f"left alone (a run is building or using it): {term(name)}", highlight=False)
    for name in envprune.foreign(store):
        console.print(f"left alone (not made by convertctl): {term(name)}", highlight=False)
    for name, why in done.failed:
        console.print(f"[red]could not remove {term(name)}[/]: {term(why)}", highlight=False)
    if done.failed:
        raise typer.Exit(EXIT_ENVIRONMENT)


@report_app.command("show")
@handled
def report_show(
    path: Annotated[Path, typer.Argument(help="report.json")],
    markdown_out: Annotated[bool, typer.Option("--markdown", help="Print Markdown instead.")] = False,
    html_out: Annotated[
        bool, typer.Option("--html", help="Print the self-contained HTML page instead (as report.html).")
    ] = False,
):
    """Re-render a saved report.json."""
    from convertctl.report.model import load_report
    from convertctl.report.render import markdown, print_report, rendered

    report = load_report(path)
    if markdown_out and html_out:
        raise UsageError("--markdown and --html: choose one")
    if html_out:
        from convertctl.report.html import render

        typer.echo(rendered(path, lambda: render(report)), nl=False)
        return
    if markdown_out:
        typer.echo(rendered(path, lambda: markdown(report)), nl=False)  # verbatim: no wrapping, no markup
        return

    def terminal() -> str:
        with console.capture() as shown:
            print_report(report, console)
        return shown.get()

    typer.echo(rendered(path, terminal), nl=False)  # whole or not at all


app.command("verify")(verify_command)
app.command("batch")(batch_command)


def main() -> None:
    app(prog_name="convertctl")


if __name__ == "__main__":
    main()
    sys.exit(0)
