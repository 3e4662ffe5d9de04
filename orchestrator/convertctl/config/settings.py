"""Every setting of a run in one strict schema (schema.py): the
convertctl.toml next to the model and the command-line flags are validated
by the same rules, so a wrong type or range is one usage error naming the
key (or flag), what was expected, and the file. Flags win over the file.

Strict on purpose: TOML's `allow_flex = "no"` is a string, not false, and
`mean = "abc"` is not a number; coercing either would silently run
something other than what the user meant."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from convertctl.config.schema import (
    Invalid,
    anything,
    at_least,
    before,
    boolean,
    checked,
    dict_of,
    either,
    integer,
    list_of,
    number,
    one_of,
    optional,
    table,
    text,
)
from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODES = ("fp32", "dynamic", "int8", "fp16", "int16x8")  # catalog.MODES: a test holds them equal
# One sample of one input: beyond this the seeded inputs alone take
# gigabytes (1,3,20000,20000 is 1.2e9 values) and the stages die of memory.
MAX_INPUT_VALUES = 1 << 26
# All generated data of a run (sample inputs + synthetic calibration).
MAX_GENERATED_BYTES = 2 << 30
# Synthetic calibration when no --calib is given. 100 was tried: the example MobileNetV2's
# onnx2tf int8 file then fell to cosine 0.9796 (< 0.98) and int8 went to the next rung.
SYNTHETIC_CALIB = 200
BATCH_CHECK = 4  # --dynamic-batch: the TFLite file is checked at batch 1 and at this batch

FILE_KEYS = {
    "input_shape",
    "quant",
    "opset",
    "convert_image",
    "export_image",
    "calib",
    "mean",
    "std",
    "tolerance",
    "max_accuracy_drop",
    "allow_flex",
    "runtime",
    "converter",
    "layout",
    "input",
    "dynamic_batch",
    "arch",
    "arch_kwargs",
    "code",
    "resize",
    "int8_float_layers",
    "int8_io",
    "max_int8_latency_cost",
}
# Which flag sets a key, for messages about flags.
FLAGS = {
    "input_shape": "--input-shape",
    "quant": "--quant",
    "opset": "--opset",
    "converter": "--converter",
    "convert_image": "--convert-image",
    "export_image": "--export-image",
    "calib": "--calib",
    "mean": "--mean",
    "std": "--std",
    "max_accuracy_drop": "--max-accuracy-drop",
    "allow_flex": "--allow-flex",
    "runtime": "--runtime",
    "layout": "--layout",
    "samples": "--samples",
    "seed": "--seed",
    "latency_runs": "--latency-runs",
    "threads": "--threads",
    "sample_inputs": "--sample-inputs",
    "eval_data": "--eval-data",
    "input": "--input",
    "dynamic_batch": "--dynamic-batch",
    "arch": "--arch",
    "arch_kwargs": "--arch-kwargs",
    "code": "--code",
    "resize": "--resize",
    "int8_float_layers": "--int8-float-layers",
    "int8_io": "--int8-io",
    "max_int8_latency_cost": "--max-int8-latency-cost",
}
# What a key takes, in words; "*" stands for a mode.
EXPECTED = {
    "input_shape": 'a shape such as "1,3,224,224" or [1, 3, 224, 224] (whole numbers > 0), or a list of shapes',
    "quant": "a mode (fp32, dynamic, int8, fp16, int16x8) or a list of modes",
    "opset": "a whole number from 7 to 20",
    "converter": "a variant name, image tag or family (a string)",
    "convert_image": "a variant name or image tag (a string)",
    "export_image": "a variant name or image tag (a string)",
    "calib": "a path (a string)",
    "sample_inputs": "a path (a string)",
    "eval_data": "a path (a string)",
    "mean": 'finite numbers, one per channel (a list, or "0.485,0.456,0.406")',
    "std": 'finite numbers > 0, one per channel (a list, or "0.229,0.224,0.225")',
    "tolerance": "a table per mode, e.g. [tolerance.fp16] with atol, rtol, cosine, top1",
    "tolerance.*": "a table with atol, rtol, cosine and/or top1, e.g. [tolerance.fp16] atol = 0.05",
    "tolerance.*.atol": "a finite number >= 0",
    "tolerance.*.rtol": "a finite number >= 0",
    "tolerance.*.cosine": "a number from -1 to 1",
    "tolerance.*.top1": "a fraction from 0 to 1",
    "max_accuracy_drop": "a table of points per mode, e.g. int8 = 1.5",
    "max_accuracy_drop.*": "a number of percentage points from 0 to 100",
    "allow_flex": "true or false (a TOML boolean, not a string)",
    "runtime": "auto, local or docker",
    "layout": "nchw or nhwc",
    "samples": "a whole number from 1 to 10000",
    "seed": "a whole number from 0 to 4294967295",
    "latency_runs": "a whole number from 0 to 10000",
    "threads": "a whole number from 1 to 256",
    "input": 'an input such as "tokens:1,16:int64:0..999" (NAME:SHAPE[:DTYPE][:LOW..HIGH]), or a list of them',
    "dynamic_batch": "true or false (a TOML boolean, not a string)",
    "arch": "module:callable (a string)",
    "arch_kwargs": "a table of keyword arguments for --arch",
    "code": "a folder path (a string)",
    "resize": "stretch or shorter-side+center-crop",
    "int8_float_layers": 'auto, or layer names (a list, or "a,b,c")',
    "int8_io": "int8, uint8 or float",
    "max_int8_latency_cost": 'a share such as "10%" or 0.1',
}


def _shape(value: Any) -> tuple:
    """'1,3,8,8' or [1, 3, 8, 8] -> (1, 3, 8, 8), each dimension > 0."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if not all(p.lstrip("+").isdigit() for p in parts):
            raise Invalid("shape", "not comma-separated whole numbers")
        dims = tuple(int(p) for p in parts)
    elif isinstance(value, (list, tuple)) and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        dims = tuple(value)
    else:
        raise Invalid("shape", "not a shape")
    if not dims or any(d <= 0 for d in dims):
        raise Invalid("shape", "every dimension must be a whole number > 0")
    values = math.prod(dims)
    if values > MAX_INPUT_VALUES:
        # Beyond a float's range (a 400-digit dimension) it is said without one
        count = f"{values:.3g}" if values < 10**300 else f"about 1e{len(str(values)) - 1}"
        size = f"{values * 4 / 1e9:.1f} GB" if values < 10**300 else "more than any disk"
        limit = f"convertctl takes at most {MAX_INPUT_VALUES} values per input"
        why = f"{count} values per sample ({size} as float32); {limit}"
        raise Invalid("shape", why)
    return dims


def _floats(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return [float(p) for p in value.split(",") if p.strip()]
        except ValueError:
            raise Invalid("floats", "not comma-separated numbers") from None
    return value


def _one(value: Any) -> Any:
    """quant = "int8" or --input "x:1,3": a list of one."""
    return [value] if isinstance(value, str) else value


def _one_shape(value: Any) -> Any:
    """One shape ("1,3,8,8" or [1, 3, 8, 8]) -> a list of it; [[1, 3], "1,5"] is two already."""
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, int) for v in value)):
        return [value]
    return value


TEXT = text(min_length=1)
MODE = one_of(*MODES)
PERCENT = number(ge=0, le=100)


@dataclass
class Tolerance:
    """A mode's bounds as the user gave them; None: the mode's default (validate.py)."""

    atol: float | None = None
    rtol: float | None = None
    cosine: float | None = None
    top1: float | None = None

    def given(self) -> dict:
        """The bounds that are set, without the Nones."""
        return {k: v for k, v in vars(self).items() if v is not None}


TOLERANCE_KEYS = tuple(f.name for f in fields(Tolerance))
TOLERANCE = table(
    "Tolerance",
    {
        "atol": optional(number(ge=0)),
        "rtol": optional(number(ge=0)),
        "cosine": optional(number(ge=-1, le=1)),
        "top1": optional(number(ge=0, le=1)),
    },
    make=Tolerance,
)


@dataclass
class Settings:
    """What a run may be told, from the file or from flags. RULES says what
    each field takes; None (or empty for the per-mode tables): not told."""

    input_shape: list[tuple] | None = None
    quant: list[str] | None = None
    opset: int | None = None
    converter: str | None = None
    convert_image: str | None = None
    export_image: str | None = None
    calib: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    tolerance: dict[str, Tolerance] = field(default_factory=dict)
    max_accuracy_drop: dict[str, float] = field(default_factory=dict)
    allow_flex: bool | None = None
    runtime: str | None = None
    layout: str | None = None
    # flags only
    samples: int | None = None
    seed: int | None = None
    latency_runs: int | None = None
    threads: int | None = None
    sample_inputs: str | None = None
    eval_data: str | None = None
    # what the model is and takes (see inputspec.py, modelfile.py)
    input: list[str] | None = None
    dynamic_batch: bool | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    code: str | None = None
    # int8 (see selective.py) and calibration preprocessing
    resize: str | None = None
    int8_float_layers: str | list[str] | None = None
    int8_io: str | None = None
    max_int8_latency_cost: str | float | None = None


# One rule per Settings field, in the order problems are listed. The union
# members carry pydantic's names for their types ("constrained-str"): the
# file messages quote them (max_int8_latency_cost.constrained-float = 500).
RULES = {
    "input_shape": before(_one_shape, optional(list_of(before(_shape, anything)))),
    "quant": before(_one, optional(list_of(MODE))),
    "opset": optional(integer(ge=7, le=20)),
    "converter": optional(TEXT),
    "convert_image": optional(TEXT),
    "export_image": optional(TEXT),
    "calib": optional(TEXT),
    # "" is no numbers at all: refused, quoting the "" (at_least around before)
    "mean": optional(at_least(1, before(_floats, list_of(number())))),
    "std": optional(at_least(1, before(_floats, list_of(number(gt=0))))),
    "tolerance": dict_of(MODE, TOLERANCE),
    "max_accuracy_drop": dict_of(MODE, PERCENT),
    "allow_flex": optional(boolean),
    "runtime": optional(one_of("auto", "local", "docker")),
    "layout": optional(one_of("nchw", "nhwc")),
    "samples": optional(integer(ge=1, le=10000)),
    "seed": optional(integer(ge=0, le=2**32 - 1)),
    "latency_runs": optional(integer(ge=0, le=10000)),
    "threads": optional(integer(ge=1, le=256)),
    "sample_inputs": optional(TEXT),
    "eval_data": optional(TEXT),
    "input": before(_one, optional(list_of(TEXT))),
    "dynamic_batch": optional(boolean),
    "arch": optional(TEXT),
    "arch_kwargs": optional(dict_of(text(), anything)),
    "code": optional(TEXT),
    "resize": optional(one_of("stretch", "shorter-side+center-crop")),
    "int8_float_layers": optional(either(("constrained-str", TEXT), ("list[constrained-str]", list_of(TEXT)))),
    "int8_io": optional(one_of("int8", "uint8", "float")),
    "max_int8_latency_cost": optional(either(("constrained-str", TEXT), ("constrained-float", PERCENT))),
}
SETTINGS = table("Settings", RULES, make=Settings)


def _pattern(loc: tuple) -> str:
    if loc[0] in ("tolerance", "max_accuracy_drop") and len(loc) > 1:
        return ".".join([loc[0], "*", *map(str, loc[2:3])])
    return str(loc[0])


def _describe(error: dict, source: Path | None, raw: dict) -> str:
    loc = tuple(p for p in error["loc"] if p != "[key]" and not isinstance(p, int))
    key = loc[0] if loc else "?"
    value = error.get("input")
    if error["type"] == "literal_error" and "[key]" in error["loc"]:
        what = f"unknown mode {value!r} (choose from {', '.join(MODES)})"
    elif error["type"] == "literal_error" and key == "quant":
        what = f"unknown mode (choose from {', '.join(MODES)})"
    elif error["type"] == "extra_forbidden":
        what = f"unknown key (known: {', '.join(sorted(TOLERANCE_KEYS))})"
    else:
        what = "expected " + EXPECTED.get(_pattern(loc), error["msg"])
        if error["type"] in ("shape", "floats"):
            what += f": {error['msg']}"
    if source is not None:
        shown = "" if "[key]" in error["loc"] else f" = {as_toml(value)}"
        return f"{source}: {'.'.join(map(str, loc))}{shown}: {what}"
    # A flag: quote what was typed (a list flag's item, a MODE=N flag's number).
    flag = f"--{loc[2]}" if key == "tolerance" and len(loc) > 2 else FLAGS.get(key, key)
    typed = raw.get(key)
    if isinstance(typed, list) and len(error["loc"]) > 1 and isinstance(error["loc"][1], int):
        typed = typed[error["loc"][1]]
    if not isinstance(typed, (str, int, float)) or isinstance(typed, bool):
        typed = value
    quoted = repr(typed) if isinstance(typed, str) and key not in ("quant", "runtime", "layout") else typed
    return f"{flag} {quoted}: {what}"


def as_toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def validate(values: dict, source: Path | None = None) -> Settings:
    """The typed settings, or one UsageError listing every bad key."""
    settings, problems = checked(SETTINGS, values)
    if problems:
        raise UsageError("; ".join(dict.fromkeys(_describe(p, source, values) for p in problems)))
    return settings


def read_file(model: Path, explicit: Path | None = None) -> tuple[dict, Path | None]:
    """The raw values of convertctl.toml (next to the model, or --config)."""
    path = explicit or model.parent / "convertctl.toml"
    if not path.is_file():
        if explicit:
            raise UsageError(f"--config {path}: no such file")
        return {}, None
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(values) - FILE_KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(FILE_KEYS))})")
    return values, path


# Keys that name code to import and run inside the export stage. A file
# that travels with a model (downloaded, shared) must not choose code: these
# come from the command line, or from the file under --trust-config.
CODE_KEYS = ("arch", "arch_kwargs", "code")


def refuse_code(values: dict, source: Path, flag: str = "--trust-config") -> None:
    """A UsageError naming the first key of a file that names code, unless allowed."""
    named = [k for k in CODE_KEYS if values.get(k) not in (None, "", {})]
    if named:
        key = named[0]
        raise UsageError(
            f"{source}: {key} names code to run ({key} = {values[key]!r}); a file next to a model must not "
            f"choose code. Give --arch/--arch-kwargs/--code on the command line, or pass {flag} to let this "
            "file name it"
        )


def code_notice(values: dict, source: Path) -> str:
    """What a trusted file makes convertctl import, said before it happens."""
    arch, code = values.get("arch"), values.get("code")
    where = f" from {code}" if code else ""
    return f"{source} names code to run (--trust-config): it imports {arch}{where} in the export stage"


def load(model: Path, explicit: Path | None, flags: dict, trust_config: bool = False) -> tuple[Settings, Path | None]:
    """File settings, then flags over them (per mode for tolerances and
    accuracy budgets). An atol given without an rtol means exactly that
    bound: the mode's default relative term is dropped, not silently added.
    A file naming code (arch, arch_kwargs, code) is refused unless trust_config."""
    raw, path = read_file(model, explicit)
    if path is not None and not trust_config:
        refuse_code(raw, path)
    from_file = validate(raw, path)
    if path is not None:  # paths in the file are relative to the file, not the working directory
        for key in ("calib", "code"):
            if getattr(from_file, key) is not None:
                setattr(from_file, key, str((path.parent / getattr(from_file, key)).resolve()))
    if flags.get("input") and not flags.get("input_shape"):
        from_file.input_shape = None  # --input replaces the file's shapes, as --input-shape does
    from_flags = validate({k: v for k, v in flags.items() if v is not None})
    # A flag overrides only what it was given: every field not at its default.
    unset = Settings()
    merged = replace(from_file, **{k: v for k, v in vars(from_flags).items() if v != getattr(unset, k)})
    tolerance: dict = {}
    for source in (from_file, from_flags):
        for mode, tol in source.tolerance.items():
            given = tol.given()
            if "atol" in given and "rtol" not in given:
                given["rtol"] = 0.0
            tolerance[mode] = {**tolerance.get(mode, {}), **given}
    merged.tolerance = {m: Tolerance(**t) for m, t in tolerance.items()}
    merged.max_accuracy_drop = {**from_file.max_accuracy_drop, **from_flags.max_accuracy_drop}
    return merged, path


def mode_values(items: list[str], flag: str, modes: tuple = MODES) -> dict:
    """'0.01' (every mode) or 'fp16=0.01' (one mode), repeatable. Numbers
    stay as typed here; their ranges are the schema's business."""
    out: dict = {}
    for item in items:
        mode, _, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{flag} {item!r}: expected NUMBER or MODE=NUMBER") from None
        if mode and mode not in modes:
            raise UsageError(f"{flag} {item!r}: unknown mode {mode!r} (choose from {', '.join(modes)})")
        if not math.isfinite(number):
            raise UsageError(f"{flag} {item!r}: expected a finite number")
        for m in [mode] if mode else modes:
            out[m] = number
    return out


def check_budget(shapes: list, samples: int, synthetic_calib: bool) -> None:
    """Refuse, before anything is generated, inputs that cannot fit in memory."""
    per_sample = sum(math.prod(s) for s in shapes) * 4
    count = samples + (SYNTHETIC_CALIB if synthetic_calib else 0)
    if per_sample * count > MAX_GENERATED_BYTES:
        calib = f" + {SYNTHETIC_CALIB} synthetic calibration samples" if synthetic_calib else ""
        raise UsageError(
            f"--input-shape {' '.join(','.join(map(str, s)) for s in shapes)}: {samples} sample(s){calib} "
            f"would take {per_sample * count / 1e9:.1f} GB (limit {MAX_GENERATED_BYTES / 1e9:.1f} GB): "
            "lower --samples" + (", give real data with --calib" if synthetic_calib else "")
        )
