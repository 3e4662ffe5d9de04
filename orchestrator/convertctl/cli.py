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
from convertctl.catalog import load_catalog
from convertctl.config import load_config, mode_values
from convertctl.data import parse_floats
from convertctl.errors import ConvertError, UsageError
from convertctl.images_cli import images_app
from convertctl.inputs import parse_shape
from convertctl.pipconfig import settings_from_flags
from convertctl.pipeline import MODES, Pipeline, RunOptions
from convertctl.render import print_report
from convertctl.runtimes import select_runtime
from convertctl.runtimes.base import Step
from convertctl.selective import Int8Options, parse_cost, parse_float_layers
from convertctl.ui import STATE, BaseImage, CaBundle, IndexUrl, Progress, Runtime, console, handled

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


def _as_list(value) -> list:
    """A config value given once ("fp16", [1, 3, 8, 8]) or as a list of them."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, int) for v in value)):
        return [value]
    return list(value)


def _runtime(name: str, ca_bundle: Path | None, index_url: str, say, **build):
    return select_runtime(name, settings_from_flags(ca_bundle, index_url), say, build)


@app.command()
@handled
def run(
    model: Annotated[Path, typer.Argument(help="TorchScript file (torch.jit.save).")],
    quant: Annotated[
        list[str] | None, typer.Option("--quant", "-q", help=f"Mode, repeatable: {', '.join(MODES)}. Default fp32.")
    ] = None,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="e.g. 1,3,256,256; repeat per input.")
    ] = None,
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset. Default: the highest both the converter and the exporter take.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("convertctl-out"),
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
    atol: Annotated[list[str] | None, typer.Option("--atol", help="Absolute tolerance: N or MODE=N.")] = None,
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
    ca_bundle: CaBundle = None,
    pip_index_url: IndexUrl = "",
    keep_run: Annotated[bool, typer.Option("--keep-run", help="Keep the run directory after success.")] = False,
    base_image: BaseImage = "",
):
    """Convert MODEL to one validated .tflite per quantization mode."""
    cfg = load_config(model, config)
    modes = list(dict.fromkeys(quant or _as_list(cfg.get("quant", ["fp32"]))))
    shapes_text = input_shape or _as_list(cfg.get("input_shape", []))
    tolerances = {m: {"atol": v} for m, v in mode_values(atol or [], "--atol", MODES).items()}
    for mode, values in cfg.get("tolerance", {}).items():
        tolerances[mode] = {**values, **tolerances.get(mode, {})}  # the flag wins over the file
    opts = RunOptions(
        model=model,
        shapes=[parse_shape(",".join(map(str, s)) if isinstance(s, list) else s) for s in shapes_text],
        modes=modes,
        out=out,
        opset=opset or cfg.get("opset"),
        calib=calib or (Path(cfg.get("calib")) if cfg.get("calib") else None),
        mean=parse_floats(mean, "--mean") if mean else cfg.get("mean"),
        std=parse_floats(std, "--std") if std else cfg.get("std"),
        sample_inputs=sample_inputs,
        samples=samples,
        seed=seed,
        allow_flex=allow_flex or cfg.get("allow_flex", False),
        tolerances=tolerances,
        eval_data=eval_data,
        max_drop={
            **cfg.get("max_accuracy_drop", {}),
            **mode_values(max_accuracy_drop or [], "--max-accuracy-drop", MODES),
        },
        latency_runs=latency_runs,
        threads=threads,
        keep_run=keep_run,
        converter=converter or cfg.get("converter") or cfg.get("convert_image"),
        export_image=export_image or cfg.get("export_image"),
        layout=layout or cfg.get("layout"),
        resize=resize or cfg.get("resize", "stretch"),
        int8=Int8Options(
            float_layers=parse_float_layers(int8_float_layers or cfg.get("int8_float_layers")),
            io=int8_io or cfg.get("int8_io", "int8"),
            max_latency_cost=parse_cost(max_int8_latency_cost or cfg.get("max_int8_latency_cost")),
        ),
    )
    opts.check()
    with Progress() as say:
        rt = _runtime(
            cfg.get("runtime", runtime) if runtime == "auto" else runtime,
            ca_bundle,
            pip_index_url,
            say,
            base_image=base_image,
        )
        report = Pipeline(opts, rt, load_catalog(), say).run()
    print_report(report, console)
    raise typer.Exit(report.exit_code)


@app.command()
@handled
def example(
    path: Annotated[Path, typer.Argument(help="Where to save the TorchScript model.")],
    name: Annotated[str, typer.Option(help="mobilenetv2 or smallcnn.")] = "mobilenetv2",
    input_shape: Annotated[str, typer.Option("--input-shape")] = "1,3,256,256",
    seed: Annotated[int, typer.Option()] = 0,
    runtime: Runtime = "auto",
    ca_bundle: CaBundle = None,
    pip_index_url: IndexUrl = "",
):
    """Build an example model (random weights, BatchNorm recalibrated) in the export environment."""
    if name not in ("mobilenetv2", "smallcnn"):
        raise UsageError(f"--name {name!r}: choose mobilenetv2 or smallcnn")
    shape = parse_shape(input_shape)
    with Progress() as say:
        rt = _runtime(runtime, ca_bundle, pip_index_url, say)
        # The first export rung: on Docker the tutorial's torch, so that the
        # example loads in every export environment.
        variant = load_catalog().ladder(rt.name, "export")[0]
        run_dir = Path(tempfile.mkdtemp(prefix="convertctl-example-"))
        run_dir.chmod(0o777)
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
            shutil.copyfile(run_dir / "model.pt", path)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"saved {name} {list(shape)} to {path}")


@envs_app.command("list")
@handled
def envs_list():
    """Local environments: which variant, ready or half-built, size."""
    from convertctl.envstore import EnvStore

    store = EnvStore()
    catalog = load_catalog()
    current = {store.path_for(v).name for v in catalog.variants.values()}
    rows = store.entries()
    if not rows:
        console.print(f"no environments in {store.envs_dir}")
    for row in rows:
        state = "ready" if row["ready"] else "HALF-BUILT"
        stale = "" if row["name"] in current else " (stale: no variant uses it)"
        console.print(
            f"{row['name']}  {row['variant']}  {state}  {row['size_bytes'] / 1e6:.0f} MB{stale}", highlight=False
        )


@envs_app.command("prune")
@handled
def envs_prune(
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    all_envs: Annotated[bool, typer.Option("--all", help="Remove every environment.")] = False,
):
    """Remove environments no catalog variant uses (or all of them)."""
    from convertctl.envstore import EnvStore

    store = EnvStore()
    keep = set() if all_envs else {store.path_for(v).name for v in load_catalog().variants.values()}
    removed = store.prune(keep, dry_run)
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(removed)} environment(s)" + "".join(f"\n  {n}" for n in removed))


@report_app.command("show")
@handled
def report_show(
    path: Annotated[Path, typer.Argument(help="report.json")],
    markdown_out: Annotated[bool, typer.Option("--markdown", help="Print Markdown instead.")] = False,
):
    """Re-render a saved report.json."""
    from convertctl.render import markdown
    from convertctl.report import load_report

    report = load_report(path)
    if markdown_out:
        typer.echo(markdown(report), nl=False)  # verbatim: no wrapping, no markup
    else:
        print_report(report, console)


def main() -> None:
    app(prog_name="convertctl")


if __name__ == "__main__":
    main()
    sys.exit(0)
