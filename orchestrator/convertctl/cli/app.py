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
from convertctl.cli.cache_cmd import cache_app, envs_summary, runs_app, verify_command
from convertctl.cli.images_cmd import images_app

# numpy, the pipeline and the runtimes are imported inside the commands that
# use them: `convertctl --help` and argument errors must not pay for them.
from convertctl.cli.ui import STATE, BaseImage, CaBundle, IndexUrl, Progress, Runtime, Wheelhouse, console, handled
from convertctl.config import settings
from convertctl.config.catalog import MODES, load_catalog
from convertctl.config.settings import BATCH_CHECK, mode_values
from convertctl.errors import ConvertError, UsageError
from convertctl.store import rundir, safefs
from convertctl.store.pipconfig import settings_from_flags

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


def _runtime(name: str, ca_bundle: Path | None, index_url: str, say, wheelhouse: Path | None = None, **build):
    from convertctl.runtimes import select_runtime

    return select_runtime(name, settings_from_flags(ca_bundle, index_url, wheelhouse), say, build)


@app.command()
@handled
def run(
    model: Annotated[
        Path,
        typer.Argument(
            help="TorchScript (torch.jit.save), ExportedProgram (torch.export.save, .pt2), "
            "state_dict or checkpoint (with --arch), or ONNX file."
        ),
    ],
    quant: Annotated[
        list[str] | None, typer.Option("--quant", "-q", help=f"Mode, repeatable: {', '.join(MODES)}. Default fp32.")
    ] = None,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="e.g. 1,3,256,256; repeat per input.")
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            help="NAME:SHAPE[:DTYPE][:LOW..HIGH], repeatable, in forward()'s order: e.g. image:1,3,224,224 "
            "tokens:1,16:int64:0..999. DTYPE float32 (default), int64 or int32; LOW..HIGH (both included): "
            "the range of synthetic data (default integers 0..9). The names become the TFLite signature's.",
        ),
    ] = None,
    dynamic_batch: Annotated[
        bool,
        typer.Option(
            "--dynamic-batch",
            help=f"Export with a free batch dimension; the TFLite file is checked at batch 1 and {BATCH_CHECK}.",
        ),
    ] = False,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="module:callable building the nn.Module a state_dict or checkpoint fits."),
    ] = None,
    arch_kwargs: Annotated[
        str | None, typer.Option("--arch-kwargs", help="JSON object of keyword arguments for --arch.")
    ] = None,
    code: Annotated[
        Path | None,
        typer.Option("--code", help="Folder holding the --arch module; mounted read-only into the export stage only."),
    ] = None,
    trust_model: Annotated[
        bool,
        typer.Option(
            "--trust-model",
            help="Unpickle a pickled module (torch.save(model)), which runs code from the file: Docker runtime "
            "only, in a container without network that writes only its run directory.",
        ),
    ] = False,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset. Default: the highest both the converter and the exporter take.")
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory.")] = "convertctl-out",
    calib: Annotated[
        Path | None, typer.Option(help="int8 calibration: image folder, .npy or .npz (100-500 samples).")
    ] = None,
    mean: Annotated[str | None, typer.Option(help="Image normalisation mean per channel. Default ImageNet's.")] = None,
    std: Annotated[str | None, typer.Option(help="Image normalisation std per channel. Default ImageNet's.")] = None,
    sample_inputs: Annotated[
        Path | None, typer.Option("--sample-inputs", help="npz of inputs to compare on (instead of random ones).")
    ] = None,
    samples: Annotated[int, typer.Option(help="How many seeded random sample inputs.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the random sample inputs.")] = 0,
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="Labelled data: folder of class folders, or npz with x and y.")
    ] = None,
    max_accuracy_drop: Annotated[
        list[str] | None, typer.Option("--max-accuracy-drop", help="Points of accuracy a mode may lose: N or MODE=N.")
    ] = None,
    atol: Annotated[
        list[str] | None,
        typer.Option("--atol", help="Max abs difference: N or MODE=N. Without --rtol it is the whole bound."),
    ] = None,
    rtol: Annotated[
        list[str] | None, typer.Option("--rtol", help="Relative tolerance (times max |PyTorch output|): N or MODE=N.")
    ] = None,
    allow_flex: Annotated[bool, typer.Option("--allow-flex", help="Allow Flex (SELECT_TF_OPS) ops.")] = False,
    latency_runs: Annotated[int, typer.Option("--latency-runs", help="Timed runs per TFLite file (0: skip).")] = 10,
    threads: Annotated[int, typer.Option(help="Interpreter threads for latency.")] = 1,
    runtime: Runtime = "auto",
    converter: Annotated[
        str | None,
        typer.Option(
            "--converter",
            "--convert-image",
            help="auto (try the catalog's ladder until one converts and validates), a family "
            "(onnx-tf, onnx2tf, litert-torch), or a variant name or image tag (see `convertctl images list`).",
        ),
    ] = None,
    export_image: Annotated[
        str | None, typer.Option("--export-image", help="auto (the catalog's ladder), or an export variant or tag.")
    ] = None,
    layout: Annotated[
        str | None, typer.Option("--layout", help="nchw or nhwc I/O. Default: whatever the converter gives.")
    ] = None,
    resize: Annotated[
        str | None,
        typer.Option(help="Images to inputs: stretch (default) or shorter-side+center-crop (ImageNet's view)."),
    ] = None,
    int8_float_layers: Annotated[
        str | None,
        typer.Option(
            "--int8-float-layers",
            help="int8: keep layers float. auto: the worst, until --max-accuracy-drop holds; or NAME,... "
            "(as the report lists them).",
        ),
    ] = None,
    max_int8_latency_cost: Annotated[
        str | None,
        typer.Option("--max-int8-latency-cost", help="auto: at most this much slower than full int8, e.g. 10%."),
    ] = None,
    int8_io: Annotated[
        str | None, typer.Option("--int8-io", help="int8 file's input/output type: int8 (default), uint8, float.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Settings file. Default: convertctl.toml next to the model.")
    ] = None,
    trust_config: Annotated[
        bool,
        typer.Option(
            "--trust-config",
            help="Let the settings file name code to import (arch, arch_kwargs, code); refused otherwise.",
        ),
    ] = False,
    ca_bundle: CaBundle = None,
    pip_index_url: IndexUrl = "",
    keep_run: Annotated[bool, typer.Option("--keep-run", help="Keep the run directory after success.")] = False,
    keep_intermediates: Annotated[
        bool, typer.Option("--keep-intermediates", help="Put the ONNX file and SavedModel in --out too.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", envvar="CONVERTCTL_NO_CACHE", help="Run every stage; reuse nothing cached.")
    ] = False,
    base_image: BaseImage = "",
    wheelhouse: Wheelhouse = None,
):
    """Convert MODEL to one validated .tflite per quantization mode."""
    from convertctl.report.render import print_report
    from convertctl.run.options import json_object, preflight, run_options, tolerance_flags
    from convertctl.run.pipeline import Pipeline

    flags = {
        "input_shape": input_shape,
        "quant": quant,
        "opset": opset,
        "calib": str(calib) if calib else None,
        "mean": mean,
        "std": std,
        "samples": samples,
        "seed": seed,
        "latency_runs": latency_runs,
        "threads": threads,
        "allow_flex": True if allow_flex else None,
        "runtime": None if runtime == "auto" else runtime,
        "converter": converter,
        "export_image": export_image,
        "layout": layout,
        "sample_inputs": str(sample_inputs) if sample_inputs else None,
        "eval_data": str(eval_data) if eval_data else None,
        "tolerance": tolerance_flags(atol, rtol),
        "max_accuracy_drop": mode_values(max_accuracy_drop or [], "--max-accuracy-drop") or None,
        "input": input_,
        "dynamic_batch": True if dynamic_batch else None,
        "arch": arch,
        "arch_kwargs": json_object(arch_kwargs, "--arch-kwargs") if arch_kwargs else None,
        "code": str(code) if code else None,
        "resize": resize,
        "int8_float_layers": int8_float_layers,
        "int8_io": int8_io,
        "max_int8_latency_cost": max_int8_latency_cost,
    }
    if not out.strip():  # an unset shell variable: not the working directory
        raise UsageError("--out '': an empty folder name (an unset variable?); give the output folder")
    cfg, cfg_path = settings.load(model, config, flags, trust_config)
    opts = run_options(cfg, model, Path(out), keep_run, trust_model)
    opts.keep_intermediates, opts.no_cache = keep_intermediates, no_cache
    calibrated = [m for m in opts.modes if m in ("int8", "int16x8")]
    if calib and not calibrated:
        raise UsageError(f"--calib {calib}: calibration is for --quant int8 and int16x8, and neither is asked for")
    settings.check_budget(opts.shapes, opts.samples, bool(calibrated) and opts.calib is None)
    runtime = cfg.runtime or "auto"
    opts.check()
    with Progress() as say:
        if trust_config and cfg_path is not None and (cfg.arch or cfg.code) and not (arch or code):
            say("WARNING: " + settings.code_notice({"arch": cfg.arch, "code": cfg.code}, cfg_path))
        rt = _runtime(
            runtime,
            ca_bundle,
            pip_index_url,
            say,
            wheelhouse,
            base_image=base_image,
        )
        catalog = load_catalog()
        preflight(rt, catalog, opts)
        report = Pipeline(opts, rt, catalog, say).run()
    print_report(report, console)
    raise typer.Exit(report.exit_code)


@app.command()
@handled
def example(
    path: Annotated[Path, typer.Argument(help="Where to save the TorchScript model.")],
    name: Annotated[str, typer.Option(help="mobilenetv2, smallcnn or convnext.")] = "mobilenetv2",
    input_shape: Annotated[str, typer.Option("--input-shape")] = "1,3,256,256",
    seed: Annotated[int, typer.Option()] = 0,
    runtime: Runtime = "auto",
    ca_bundle: CaBundle = None,
    pip_index_url: IndexUrl = "",
    wheelhouse: Wheelhouse = None,
):
    """Build an example model (random weights, BatchNorm recalibrated) in the export environment."""
    from convertctl.inputs.arrays import parse_shape
    from convertctl.runtimes.base import Step

    if name not in ("mobilenetv2", "smallcnn", "convnext"):
        raise UsageError(f"--name {name!r}: choose mobilenetv2, smallcnn or convnext")
    shape = parse_shape(input_shape)
    with Progress() as say:
        rt = _runtime(runtime, ca_bundle, pip_index_url, say, wheelhouse)
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


def main() -> None:
    app(prog_name="convertctl")


if __name__ == "__main__":
    main()
    sys.exit(0)
