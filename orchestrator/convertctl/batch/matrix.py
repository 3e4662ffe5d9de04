"""`convertctl batch … --emit gha-matrix`: the batch as GitHub Actions
strategy.matrix objects for the composite action (.github/actions/convert),
one job per model, {"include": [...]} per chunk of at most 256 jobs
(GitHub's limit per matrix): printed as one JSON list of matrices.

Each entry names the action's inputs: model, quant, input-shape, converter,
calib, eval-data, max-accuracy-drop and runtime where the action has an
input for the option; every other option becomes `run` flags in `args`;
out is OUT/NAME and artifact-name convertctl-NAME; `name` is the model's
name. The model's own convertctl.toml is not read here: the job's `convertctl
run` reads it, next to the model, as it does for any run."""

from __future__ import annotations

import json
import os
from pathlib import Path

from convertctl.config.options import SPECS, flag
from convertctl.errors import UsageError

MAX_JOBS = 256
# Options the action takes as inputs of their own: option -> input.
INPUTS = {
    "quant": "quant",
    "input_shape": "input-shape",
    "converter": "converter",
    "calib": "calib",
    "eval_data": "eval-data",
    "max_accuracy_drop": "max-accuracy-drop",
    "runtime": "runtime",
}


def shown_path(value: str) -> str:
    """A path as the job sees it: relative to the workspace (here) when inside it."""
    path = Path(value)
    try:
        return os.path.relpath(path, Path.cwd()) if path.resolve().is_relative_to(Path.cwd().resolve()) else value
    except ValueError:
        return value


def words(name: str, value) -> list:
    """An option's value as the words of its flag (repeated per item)."""
    spec = SPECS[name]
    if spec.cli is bool:
        return ["true"] if value else []
    if spec.per_mode or name == "max_accuracy_drop":
        return [f"{mode}={number:g}" for mode, number in value.items()]
    if spec.json:
        return [json.dumps(value, separators=(",", ":"))]
    items = (
        value if isinstance(value, list) and (spec.repeat or name in ("mean", "std", "int8_float_layers")) else [value]
    )
    if name in ("mean", "std", "int8_float_layers") and isinstance(value, list):
        items = [",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]
    out = []
    for item in items:
        if isinstance(item, (list, tuple)):  # a shape
            item = ",".join(map(str, item))
        out.append(shown_path(item) if spec.path and isinstance(item, str) else str(item))
    return out


def entry(name: str, model: Path, values: dict, out: str) -> dict:
    row = {"name": name, "model": shown_path(str(model)), "out": f"{out.rstrip('/')}/{name}"}
    row["artifact-name"] = f"convertctl-{name}"
    args: list = []
    tolerance = values.get("tolerance") or {}
    for mode, bounds in tolerance.items():
        for key, bound in bounds.items():
            if bound is None:
                continue
            if key not in ("atol", "rtol"):
                raise UsageError(
                    f"model {name}: tolerance.{mode}.{key} has no `run` flag, so no job can be given it: "
                    "put it in the model's own convertctl.toml"
                )
            args += [f"--{key}", f"{mode}={bound:g}"]
    for option, value in values.items():
        if option in ("model", "tolerance") or value in (None, [], {}, False):
            continue
        said = words(option, value)
        if option in INPUTS:
            row[INPUTS[option]] = " ".join(said)
            continue
        for word in said:
            args += [flag(option)] + ([] if SPECS[option].cli is bool else [word])
    for word in args:
        if not word or any(c.isspace() for c in word):
            raise UsageError(f"model {name}: {word!r} cannot pass through the action's args (words split at spaces)")
    row["args"] = " ".join(args)
    return row


def matrices(found: list, out: str) -> list:
    """[{"include": [entry, ...]}, ...], at most MAX_JOBS entries each."""
    rows = [entry(e.name, e.path, e.values, out) for e in found]
    names = [r["name"] for r in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"two models named {twice[0]}: each job needs its own name")
    seen: dict = {}
    for row in rows:
        key = json.dumps({k: v for k, v in row.items() if k not in ("name", "out", "artifact-name")}, sort_keys=True)
        if key in seen:
            raise UsageError(f"{row['model']} is listed twice ({seen[key]} and {row['name']}) with the same options")
        seen[key] = row["name"]
    return [{"include": rows[i : i + MAX_JOBS]} for i in range(0, len(rows), MAX_JOBS)]
