"""The Python API: `convertctl.convert(model, inputs=..., quant=[...], **options)`.

The same run as `convertctl run`, which is a thin layer over check() and
execute() below: options are the option table's (config/options.py),
spelled as in convertctl.toml, validated by config/settings.py with
messages naming the keyword; convertctl.toml next to a model file is read
as the command reads it. A torch.nn.Module or ExportedProgram the caller
passes is saved by the caller's own torch (torch.export) as an
ExportedProgram, so the stages load a file in their own environments; torch
is touched only when the caller passed a torch object (it is then already
imported), never imported here.

Errors before any work (a bad option, a missing file, no runtime) raise the
error family the CLI maps to exit codes; a run that got under way returns a
Result, whose raise_for_status() raises the same family for a failed run."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convertctl.config import modes, settings
from convertctl.config.options import ALIASES, SPECS, Options
from convertctl.errors import ConvertError, UsageError

if TYPE_CHECKING:
    from convertctl.api.result import Result
    from convertctl.report.model import Report

SOURCE = "convertctl.convert()"
DTYPES = {"float32": "float32", "int64": "int64", "int32": "int32"}
log = logging.getLogger("convertctl")


# -- shared with `convertctl run` ---------------------------------------------------
@dataclass
class Checked:
    """A run's options, checked: everything that can be refused before any work."""

    options: Options
    config: Path | None  # the settings file read, if any
    trust_config: bool = False
    arch_given: bool = False  # --arch came from the caller, not from the settings file


def check(model: Path, config: Path | None, given: dict, trust_config: bool = False) -> Checked:
    """Options from convertctl.toml (next to the model, or `config`) and the
    values given (in a settings file's shape), with every check that needs
    no runtime: the same for the command line and the API."""
    opts, cfg_path = settings.load(model, config, {**given, "model": str(model)}, trust_config)
    check_before_work(opts)
    return Checked(opts, cfg_path, trust_config, bool(given.get("arch")))


def check_before_work(opts: Options) -> None:
    """What is refused of a run's options before anything runs, however they
    were made (flags, a settings file, the API, a batch's model table)."""
    from convertctl.run.pipeline import check_options, input_specs

    check_options(opts)
    calibrated = modes.calibrated(opts.modes)
    if opts.calib and not calibrated:
        raise UsageError(f"--calib {opts.calib}: calibration is for --quant int8 and int16x8, and neither is asked for")
    shapes = [s.shape for s in input_specs(opts)]
    settings.check_budget(shapes, opts.samples, bool(calibrated) and opts.calib is None)


def index_settings(opts: Options):
    from convertctl.store.pipconfig import settings_from_flags

    return settings_from_flags(
        Path(opts.ca_bundle) if opts.ca_bundle else None,
        opts.pip_index_url or "",
        Path(opts.wheelhouse) if opts.wheelhouse else None,
    )


def runtime_for(opts: Options, say, name: str | None = None):
    """The runtime the options name (or `name`), built with their index settings and base image."""
    from convertctl.runtimes import select_runtime

    return select_runtime(name or opts.runtime, index_settings(opts), say, {"base_image": opts.base_image or ""})


def execute(p: Checked, say: Callable[[str], None], runtime=None, watch=None) -> Report:
    """Run a plan: the runtime made (or the one given), pinned variants
    checked, the pipeline run. Returns its report (failed or not).
    watch(pipeline): a context the run goes on in (a batch worker's Ctrl-C
    handling reads whether the pipeline has placed its files)."""
    from convertctl.config.catalog import load_catalog
    from convertctl.run.options import preflight
    from convertctl.run.pipeline import Pipeline

    opts = p.options
    if p.trust_config and p.config is not None and (opts.arch or opts.code) and not p.arch_given:
        say("WARNING: " + settings.code_notice(opts, p.config))
    rt = runtime or runtime_for(opts, say)
    try:
        catalog = load_catalog()
        preflight(rt, catalog, opts)
        pipeline = Pipeline(opts, rt, catalog, say)
        with watch(pipeline) if watch else contextlib.nullcontext():
            return pipeline.run()
    finally:
        if runtime is None:
            rt.close()


def dry_run(p: Checked, say: Callable[[str], None], runtime=None):
    """What a run would do, decided and nothing run: (the plan, the runtime's name)."""
    from convertctl.config.catalog import load_catalog
    from convertctl.run.pipeline import Pipeline

    rt = runtime or runtime_for(p.options, say)
    return Pipeline(p.options, rt, load_catalog(), say).prepare().plan, rt.name


# -- the API ------------------------------------------------------------------------
def convert(
    model: Any,
    *,
    inputs: Sequence | None = None,
    quant: Sequence[str] | str | None = None,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    config: str | os.PathLike | None = None,
    trust_config: bool = False,
    say: Callable[[str], None] | None = None,
    **options: Any,
) -> Result:
    """Convert `model` to one validated .tflite per mode in `quant` (default fp32).

    model: a file `convertctl run` takes (TorchScript, .pt2, state_dict with
      arch=..., ONNX), or a torch.nn.Module / torch.export.ExportedProgram.
    inputs: one entry per input of forward(), in order: a shape such as
      (1, 3, 224, 224), an --input spec such as "tokens:1,16:int64:0..999", or
      an example tensor (torch or numpy: its shape and dtype).
    name: the files' stem for an in-memory model (default: its class name).
    options: the option table's, spelled as in convertctl.toml (runtime="local",
      calib="calib/", max_accuracy_drop={"int8": 1.5}, int8_float_layers="auto").
      Per-mode options (atol, rtol, max_accuracy_drop) take a number for every mode.
    say: called with each progress line (default: the "convertctl" logger).
    """
    from convertctl.api.result import Result

    given = _given(options, quant, out)
    torch_model = _torch_object(model)
    specs, examples = _inputs(inputs, torch_model is not None)
    given.update(specs)
    settings.validate(given, SOURCE)  # a wrong keyword or value, named as the caller spelled it
    say = say or _log
    if torch_model is None:
        p = check(Path(os.fspath(model)), _path(config), given, trust_config)
    else:
        path = _save_torch(torch_model, examples, Path(given.get("out") or Options().out), name)
        p = check(path, _path(config), given, trust_config)
    try:
        return Result(execute(p, say))
    except OSError as exc:  # a full disk, a quota: the error family's words and exit code, as the CLI says it
        from convertctl.store.rundir import os_error

        mapped = os_error(exc, getattr(exc, "run_dir", None))
        if mapped is exc:
            raise
        mapped.run_dir = getattr(exc, "run_dir", "")  # type: ignore[attr-defined]
        raise mapped from exc


def _log(line: str) -> None:
    if line.startswith("WARNING: "):
        log.warning(line[len("WARNING: ") :])
    else:
        log.info(line)


def _path(value) -> Path | None:
    return Path(os.fspath(value)) if value is not None else None


def _given(options: dict, quant, out) -> dict:
    """Keyword arguments in a settings file's shape: aliases folded, a
    number for a per-mode option meaning every mode."""
    known = [f.name for f in fields(Options) if f.name not in ("model",)]
    given: dict = {}
    for key, value in options.items():
        name = ALIASES.get(key, key)
        if name not in known or name in ("input", "input_shape"):
            hint = " (give inputs=...)" if name in ("input", "input_shape") else ""
            raise UsageError(f"{SOURCE}: unknown option {key!r}{hint} (options: {', '.join(sorted(known))})")
        spec = SPECS[name]
        if spec.per_mode and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {m: value for m in modes.NAMES}
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        given[name] = value
    if quant is not None:
        given["quant"] = [quant] if isinstance(quant, str) else list(quant)
    if out is not None:
        given["out"] = os.fspath(out)
        if not given["out"].strip():
            raise UsageError(f"{SOURCE}: out='': an empty folder name; give the output folder")
    return given


# -- inputs ---------------------------------------------------------------------------
def _dtype(value) -> str:
    text = str(getattr(value, "dtype", "")).replace("torch.", "")
    if text not in DTYPES:
        raise UsageError(f"{SOURCE}: an input tensor of dtype {text or '?'}; convertctl feeds {', '.join(DTYPES)}")
    return DTYPES[text]


def _is_shape(value) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool) for d in value)


def _inputs(inputs, for_torch: bool) -> tuple[dict, list]:
    """({input or input_shape: ...}, example inputs: tensors, or (shape,
    dtype, low, high)). For an in-memory model the saved file declares its
    inputs: only --input specs (their names and value ranges) are passed on."""
    if inputs is None:
        return {}, []
    if isinstance(inputs, str) or _is_shape(inputs) or hasattr(inputs, "shape"):
        inputs = [inputs]  # one input given alone
    from convertctl.inputs.inputspec import parse_input, parse_shape

    named, unnamed, examples = [], [], []  # unnamed: (shape, dtype)
    for i, item in enumerate(inputs):
        if isinstance(item, str) and ":" in item:
            spec = parse_input(item)
            named.append(item)
            examples.append((spec.shape, spec.dtype or "float32", spec.low, spec.high))
        elif isinstance(item, str) or _is_shape(item):
            shape = parse_shape(item, f"{SOURCE}: inputs[{i}]") if isinstance(item, str) else tuple(item)
            unnamed.append((shape, "float32"))
            examples.append((shape, "float32", None, None))
        elif hasattr(item, "shape") and hasattr(item, "dtype"):
            unnamed.append((tuple(int(d) for d in item.shape), _dtype(item)))
            examples.append(item)
        else:
            raise UsageError(
                f"{SOURCE}: inputs[{i}] is a {type(item).__name__}; give a shape such as (1, 3, 224, 224), "
                'an --input spec such as "tokens:1,16:int64:0..999", or an example tensor'
            )
    if named and unnamed:
        raise UsageError(f"{SOURCE}: inputs mixes NAME:SHAPE specs with shapes or tensors; name every input or none")
    if named:
        return {"input": named}, examples
    if for_torch:
        return {}, examples
    shapes = [",".join(map(str, shape)) for shape, _ in unnamed]
    if all(dtype == "float32" for _, dtype in unnamed):
        return {"input_shape": shapes}, examples
    # Integer tensors: named as --input-shape names them (input, or input_0, input_1, ...).
    names = ["input"] if len(unnamed) == 1 else [f"input_{i}" for i in range(len(unnamed))]
    return {"input": [f"{n}:{s}:{d}" for n, s, (_, d) in zip(names, shapes, unnamed)]}, examples


# -- an in-memory torch model -----------------------------------------------------------
def _torch_object(model) -> Any:
    """The model when it is a torch Module or ExportedProgram, else None.
    A torch object exists only if the caller imported torch: look, never import."""
    torch = sys.modules.get("torch")
    if torch is None or isinstance(model, (str, bytes, os.PathLike)):
        return None
    kinds = (torch.nn.Module, torch.export.ExportedProgram)
    if isinstance(model, kinds):
        return model
    if type(model).__module__.split(".")[0] == "torch":
        raise UsageError(f"{SOURCE}: a {type(model).__name__} is neither a torch.nn.Module nor an ExportedProgram")
    return None


def _examples(torch, examples: list) -> tuple:
    """Example arguments for torch.export: the tensors given, or made from shapes."""
    gen = torch.Generator().manual_seed(0)
    args = []
    for item in examples:
        if not isinstance(item, tuple):
            args.append(item if isinstance(item, torch.Tensor) else torch.as_tensor(item))
            continue
        shape, dtype, low, high = item
        if dtype == "float32":
            args.append(torch.randn(*shape, generator=gen))
        else:
            lo, hi = int(low if low is not None else 0), int(high if high is not None else 9)
            args.append(torch.randint(lo, hi + 1, shape, generator=gen, dtype=getattr(torch, dtype)))
    return tuple(args)


def _save_torch(model, examples: list, out_dir: Path, name: str | None) -> Path:
    """Save the caller's model with the caller's torch as an ExportedProgram,
    in OUT/.convertctl/models/<content hash>/<name>.pt2: beside the run's
    other private files, kept so that the report's model path (and
    `convertctl verify`) still name a file after the run."""
    torch = sys.modules["torch"]
    if isinstance(model, torch.export.ExportedProgram):
        program, stem = model, name or "model"
    else:
        if not examples:
            raise UsageError(
                f"{SOURCE}: an in-memory torch.nn.Module needs inputs=: example tensors or shapes "
                "such as [(1, 3, 224, 224)], to export it with torch.export"
            )
        stem = name or type(model).__name__.lower() or "model"
        was_training = model.training
        model.eval()
        try:
            program = torch.export.export(model, _examples(torch, examples))
        except Exception as exc:  # noqa: BLE001 - torch's own words, as a usage error
            raise UsageError(f"{SOURCE}: torch.export could not export the {type(model).__name__}: {exc}") from None
        finally:
            model.train(was_training)
    from convertctl.inputs.inputspec import NAME

    if not NAME.fullmatch(stem):
        raise UsageError(f"{SOURCE}: name={stem!r}: the files' stem must be a Python-style identifier")
    models = out_dir / ".convertctl" / "models"
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models) as tmp:
        staged = Path(tmp) / f"{stem}.pt2"
        torch.export.save(program, str(staged))
        digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:16]
        final = models / digest / f"{stem}.pt2"
        if not final.is_file():
            final.parent.mkdir(exist_ok=True)
            shutil.move(str(staged), final)
    return final


__all__ = ["convert", "ConvertError"]
