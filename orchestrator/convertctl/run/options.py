"""`convertctl run`'s flags and convertctl.toml, once validated by the
settings schema, turned into the pipeline's RunOptions; and the checks that
need the runtime (a pinned variant it cannot make)."""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.config import settings
from convertctl.config.settings import mode_values
from convertctl.errors import UsageError
from convertctl.inputs.inputspec import parse_input
from convertctl.run.pipeline import RunOptions
from convertctl.run.selective import Int8Options, parse_cost, parse_float_layers


def tolerance_flags(atol: list[str] | None, rtol: list[str] | None) -> dict | None:
    """--atol/--rtol N or MODE=N -> {mode: {"atol": .., "rtol": ..}}."""
    out: dict = {}
    for key, items in (("atol", atol), ("rtol", rtol)):
        for mode, value in mode_values(items or [], f"--{key}").items():
            out.setdefault(mode, {})[key] = value
    return out or None


def json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} {text!r}: expected a JSON object, e.g. '{{\"num_classes\": 10}}'")
    return value


def run_options(
    cfg: settings.Settings, model: Path, out: Path, keep_run: bool, trust_model: bool = False
) -> RunOptions:
    """Validated settings -> the pipeline's options. --trust-model is a flag
    only: a settings file next to a model must not vouch for that model."""
    return RunOptions(
        model=model,
        shapes=list(cfg.input_shape or []),
        modes=list(dict.fromkeys(cfg.quant or ["fp32"])),
        out=out,
        opset=cfg.opset,
        calib=Path(cfg.calib) if cfg.calib else None,
        mean=tuple(cfg.mean) if cfg.mean else None,
        std=tuple(cfg.std) if cfg.std else None,
        sample_inputs=Path(cfg.sample_inputs) if cfg.sample_inputs else None,
        samples=cfg.samples if cfg.samples is not None else RunOptions.samples,
        seed=cfg.seed or 0,
        allow_flex=bool(cfg.allow_flex),
        tolerances={m: t.given() for m, t in cfg.tolerance.items()},
        eval_data=Path(cfg.eval_data) if cfg.eval_data else None,
        max_drop=dict(cfg.max_accuracy_drop),
        latency_runs=cfg.latency_runs if cfg.latency_runs is not None else RunOptions.latency_runs,
        threads=cfg.threads or RunOptions.threads,
        keep_run=keep_run,
        converter=cfg.converter or cfg.convert_image,
        export_image=cfg.export_image,
        layout=cfg.layout,
        inputs=[parse_input(text) for text in cfg.input or []],
        dynamic_batch=bool(cfg.dynamic_batch),
        arch=cfg.arch,
        arch_kwargs=dict(cfg.arch_kwargs or {}),
        code_dir=Path(cfg.code) if cfg.code else None,
        trust_model=trust_model,
        resize=cfg.resize or "stretch",
        int8=Int8Options(
            float_layers=parse_float_layers(cfg.int8_float_layers),
            io=cfg.int8_io or "int8",
            max_latency_cost=parse_cost(cfg.max_int8_latency_cost),
        ),
    )


def preflight(rt, catalog, opts: RunOptions) -> None:
    """A variant pinned with --export-image or --converter, the only rung of
    its stage, that this runtime cannot make (its Python is missing locally)
    fails now, with what to use instead, not after the stages before it ran.
    Exit 5: the flags are valid (the variant works on Docker); the machine
    lacks an interpreter, like any environment that cannot be built."""
    check = getattr(rt, "preflight", None)
    if check is None:
        return
    for stage, choice in (("export", opts.export_image), ("convert", opts.converter)):
        if choice and choice != "auto":
            rungs = catalog.pick(rt.name, stage, choice)
            if len(rungs) == 1:
                check(rungs + ([catalog.quantizer(rungs[0])] if stage == "convert" else []))
