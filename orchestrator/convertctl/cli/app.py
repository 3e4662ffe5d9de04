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
from convertctl.cli.params import given, with_options

# numpy, the pipeline and the runtimes are imported inside the commands that
# use them: `convertctl --help` and argument errors must not pay for them.
from convertctl.cli.ui import STATE, Progress, console, handled, options_of, runtime_for
from convertctl.config import modes, settings
from convertctl.config.catalog import load_catalog
from convertctl.config.options import OUTPUT, SPECS
from convertctl.errors import ConvertError, UsageError
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


RUN_OPTIONS = [name for name, spec in SPECS.items() if spec.flags]


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
    from convertctl.report.render import print_report
    from convertctl.run.options import preflight
    from convertctl.run.pipeline import Pipeline, check_options, input_specs

    typed = given(flags)
    if "out" in typed and not str(typed["out"]).strip():  # an unset shell variable: not the working directory
        raise UsageError("--out '': an empty folder name (an unset variable?); give the output folder")
    opts, cfg_path = settings.load(model, config, {**typed, "model": str(model)}, trust_config)
    check_options(opts)
    calibrated = modes.calibrated(opts.modes)
    if opts.calib and not calibrated:
        raise UsageError(f"--calib {opts.calib}: calibration is for --quant int8 and int16x8, and neither is asked for")
    shapes = [s.shape for s in input_specs(opts)]
    settings.check_budget(shapes, opts.samples, bool(calibrated) and opts.calib is None)
    with Progress() as say:
        if trust_config and cfg_path is not None and (opts.arch or opts.code) and not typed.get("arch"):
            say("WARNING: " + settings.code_notice(opts, cfg_path))
        rt = runtime_for(opts, say)
        catalog = load_catalog()
        preflight(rt, catalog, opts)
        report = Pipeline(opts, rt, catalog, say).run()
    print_report(report, console)
    raise typer.Exit(report.exit_code)


@app.command()
@handled
@with_options("runtime", "ca_bundle", "pip_index_url", "wheelhouse", "base_image")
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
    console.print(f"saved {name} {list(shape)} to {path}")


@envs_app.command("list")
@handled
def envs_list():
    """Local environments: which variant, ready, building, half-built or broken, size."""
    from convertctl.store.envstore import EnvStore

    store = EnvStore()
    catalog = load_catalog()
    current = {store.path_for(v).name for v in catalog.variants.values()}
    rows = store.entries()
    if not rows:
        console.print(f"no environments in {store.envs_dir}")
    for row in rows:
        state = row["state"] if row["state"] in ("ready", "building") else row["state"].upper()
        stale = "" if row["name"] in current else " (stale: no variant uses it)"
        console.print(
            f"{row['name']}  {row['variant']}  {state}  {row['size_bytes'] / 1e6:.0f} MB{stale}", highlight=False
        )
    console.print(envs_summary(), highlight=False)


@envs_app.command("prune")
@handled
def envs_prune(
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    all_envs: Annotated[bool, typer.Option("--all", help="Remove every environment.")] = False,
):
    """Remove environments no catalog variant uses, half-built or broken ones (or all of them).
    One that a run is building or using is left alone."""
    from convertctl.store.envstore import EnvStore

    store = EnvStore()
    keep = set() if all_envs else {store.path_for(v).name for v in load_catalog().variants.values()}
    busy: list = []
    removed = store.prune(keep, dry_run, busy)
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(removed)} environment(s)" + "".join(f"\n  {n}" for n in removed), highlight=False)
    for name in busy:
        console.print(f"left alone (a run is building or using it): {name}", highlight=False)


@report_app.command("show")
@handled
def report_show(
    path: Annotated[Path, typer.Argument(help="report.json")],
    markdown_out: Annotated[bool, typer.Option("--markdown", help="Print Markdown instead.")] = False,
):
    """Re-render a saved report.json."""
    from convertctl.report.model import load_report
    from convertctl.report.render import markdown, print_report

    report = load_report(path)
    if markdown_out:
        typer.echo(markdown(report), nl=False)  # verbatim: no wrapping, no markup
    else:
        print_report(report, console)


app.command("verify")(verify_command)
app.command("batch")(batch_command)


def main() -> None:
    app(prog_name="convertctl")


if __name__ == "__main__":
    main()
    sys.exit(0)
