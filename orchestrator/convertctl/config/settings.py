"""A run's Options from the convertctl.toml next to the model (or --config)
and the command-line flags, validated by the same rules (the option table,
options.py), so a wrong type or range is one usage error naming the key (or
flag), what was expected, and the file. Flags win over the file.

Strict on purpose: TOML's `allow_flex = "no"` is a string, not false, and
`mean = "abc"` is not a number; coercing either would silently run
something other than what the user meant. A file that travels with a model
(downloaded, shared) must not choose code: the keys that name code are
refused unless the user passes --trust-config."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from convertctl import userfiles
from convertctl.config import modes
from convertctl.config.options import ALIASES, BOUNDS, FILE_KEYS, SPECS, Options, flag
from convertctl.config.schema import checked, table
from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODES = modes.NAMES
# All generated data of a run (sample inputs + synthetic calibration).
MAX_GENERATED_BYTES = 2 << 30
# Synthetic calibration when no --calib is given. 100 was tried: the example MobileNetV2's
# onnx2tf int8 file then fell to cosine 0.9796 (< 0.98) and int8 went to the next rung.
SYNTHETIC_CALIB = 200
CODE_KEYS = tuple(name for name, spec in SPECS.items() if spec.code)
MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few lines; anything near this is not one

SETTINGS = table("Settings", {name: spec.rule for name, spec in SPECS.items()})
# Table keys whose values are per mode: a problem there is named "key.*" in EXPECTED.
PER_MODE = {name for name, spec in SPECS.items() if spec.per_mode or spec.sub}
EXPECTED = {name: spec.expected for name, spec in SPECS.items()}
EXPECTED.update({f"{name}.*": spec.expected for name, spec in SPECS.items() if spec.per_mode and not spec.sub})
EXPECTED.update({f"{name}.{sub}": words for name, spec in SPECS.items() for sub, words in spec.sub.items()})


def _pattern(loc: tuple) -> str:
    if loc[0] in PER_MODE and len(loc) > 1:
        return ".".join([loc[0], "*", *map(str, loc[2:3])])
    return str(loc[0])


def _describe(error: dict, source: Path | str | None, raw: dict) -> str:
    loc = tuple(p for p in error["loc"] if p != "[key]" and not isinstance(p, int))
    key = loc[0] if loc else "?"
    value = error.get("input")
    if error["type"] == "literal_error" and "[key]" in error["loc"]:
        what = f"unknown mode {value!r} (choose from {', '.join(MODES)})"
    elif error["type"] == "literal_error" and key == "quant":
        what = f"unknown mode (choose from {', '.join(MODES)})"
    elif error["type"] == "extra_forbidden" and key in SPECS:
        what = f"unknown key (known: {', '.join(sorted(BOUNDS))})"
    elif error["type"] == "extra_forbidden":
        what = f"unknown setting (known: {', '.join(sorted(FILE_KEYS))})"
    else:
        what = "expected " + EXPECTED.get(_pattern(loc), error["msg"])
        if error["type"] in ("shape", "floats"):
            what += f": {error['msg']}"
    if source is not None:
        shown = "" if "[key]" in error["loc"] else f" = {as_toml(value)}"
        return f"{source}: {'.'.join(map(str, loc))}{shown}: {what}"
    # A flag: quote what was typed (a list flag's item, a MODE=N flag's number).
    typed = raw.get(key)
    if isinstance(typed, list) and len(error["loc"]) > 1 and isinstance(error["loc"][1], int):
        typed = typed[error["loc"][1]]
    if not isinstance(typed, (str, int, float)) or isinstance(typed, bool):
        typed = value
    quoted = repr(typed) if isinstance(typed, str) and key not in ("quant", "runtime", "layout") else typed
    return f"{flag(key) or key} {quoted}: {what}"


def as_toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def validate(values: dict, source: Path | str | None = None) -> dict:
    """The checked values of the options given (None: not given), or one
    UsageError listing every bad key; source names a file (None: flags)."""
    given = {k: v for k, v in values.items() if v is not None}
    out, problems = checked(SETTINGS, given)
    if problems:
        raise UsageError("; ".join(dict.fromkeys(_describe(p, source, given) for p in problems)))
    return out


def refuse_code(values: dict, source: Path | str, allow: str = "--trust-config") -> None:
    """A UsageError naming the first key of a file that names code."""
    named = [k for k in CODE_KEYS if values.get(k) not in (None, "", {})]
    if named:
        key = named[0]
        raise UsageError(
            f"{source}: {key} names code to run ({key} = {values[key]!r}); a file next to a model must not "
            f"choose code. Give --arch/--arch-kwargs/--code on the command line, or pass {allow} to let this "
            "file name it"
        )


def code_notice(options: Options, source: Path | str) -> str:
    """What a trusted file makes convertctl import, said before it happens."""
    where = f" from {options.code}" if options.code else ""
    return f"{source} names code to run (--trust-config): it imports {options.arch}{where} in the export stage"


def read_file(model: Path, explicit: Path | None = None) -> tuple[dict, Path | None]:
    """The raw values of convertctl.toml (next to the model, or --config)."""
    path = explicit or model.parent / "convertctl.toml"
    if not path.exists():
        if explicit:
            raise UsageError(f"--config {path}: no such file")
        return {}, None
    data = userfiles.read_bytes(path, "settings file", MAX_SETTINGS_BYTES)  # a FIFO there: refused, not read
    try:
        values = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(
            f"{path}: not valid TOML ({type(exc).__name__ if isinstance(exc, RecursionError) else exc})"
        ) from None
    return file_values(values, path), path


def file_values(values: dict, source: Path | str) -> dict:
    """A settings table's keys checked (unknown ones refused, aliases
    folded: convert_image is converter), as a file may give them."""
    unknown = sorted(set(values) - FILE_KEYS, key=str)
    if unknown:
        known = ", ".join(sorted(FILE_KEYS))
        raise UsageError(f"{source}: unknown setting(s) {', '.join(map(str, unknown))} (known: {known})")
    out = dict(values)
    for alias, name in ALIASES.items():
        if alias in out:
            value = out.pop(alias)
            try:  # checked under the name the file gave it, so the message names that key
                validate({name: value}, source)
            except UsageError as exc:
                raise UsageError(exc.message.replace(f"{source}: {name} ", f"{source}: {alias} ", 1)) from None
            out.setdefault(name, value)
    return out


def _tolerances(checked_values: dict) -> dict:
    """{mode: bounds} of one source, --atol/--rtol folded in. An atol given
    without an rtol means exactly that bound: the mode's default relative
    term is dropped, not silently added."""
    out = {m: {k: v for k, v in t.items() if v is not None} for m, t in checked_values.get("tolerance", {}).items()}
    for name, spec in SPECS.items():
        if spec.into and checked_values.get(name):
            for mode, value in checked_values[name].items():
                out.setdefault(mode, {})[spec.into[1]] = value
    for bounds in out.values():
        if "atol" in bounds and "rtol" not in bounds:
            bounds["rtol"] = 0.0
    return out


def merge(file: dict, flags: dict, file_path: Path | str | None = None) -> Options:
    """Options from a file's raw values and the flags' (only those given),
    each validated with messages naming where it came from; flags win, per
    mode for tolerances and accuracy budgets."""
    from_file = validate(file, file_path) if file else {}
    if file_path is not None and not isinstance(file_path, str):  # paths in a file are relative to the file
        for name, spec in SPECS.items():
            if spec.path and from_file.get(name):
                from_file[name] = str((Path(file_path).parent / from_file[name]).resolve())
    if flags.get("input") and not flags.get("input_shape"):
        from_file.pop("input_shape", None)  # --input replaces the file's shapes, as --input-shape does
    from_flags = validate(flags)
    merged = {**from_file, **from_flags}
    tolerance: dict = {}
    for source in (from_file, from_flags):
        for mode, bounds in _tolerances(source).items():
            tolerance[mode] = {**tolerance.get(mode, {}), **bounds}
    merged["tolerance"] = tolerance
    merged["max_accuracy_drop"] = {**from_file.get("max_accuracy_drop", {}), **from_flags.get("max_accuracy_drop", {})}
    return Options(**merged)


def load(model: Path, explicit: Path | None, flags: dict, trust_config: bool = False) -> tuple[Options, Path | None]:
    """The run's Options: convertctl.toml (or --config), then the flags given
    over it. A file naming code (arch, arch_kwargs, code) is refused unless
    trust_config."""
    raw, path = read_file(model, explicit)
    if path is not None and not trust_config:
        refuse_code(raw, path)
    return merge(raw, flags, path), path


def with_values(options: Options, **changes: Any) -> Options:
    return replace(options, **changes)


def mode_values(items: list[str], flag: str, names: tuple = MODES) -> dict:
    """'0.01' (every mode) or 'fp16=0.01' (one mode), repeatable. Numbers
    stay as typed here; their ranges are the schema's business."""
    out: dict = {}
    for item in items:
        mode, equals, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{flag} {item!r}: expected NUMBER or MODE=NUMBER") from None
        if equals and not mode:  # "=0.1": a mode left out (an unset variable?), not "every mode"
            raise UsageError(f"{flag} {item!r}: no mode before '='; give MODE=NUMBER, or NUMBER for every mode")
        if mode and mode not in names:
            raise UsageError(f"{flag} {item!r}: unknown mode {mode!r} (choose from {', '.join(names)})")
        if not math.isfinite(number):
            raise UsageError(f"{flag} {item!r}: expected a finite number")
        for m in [mode] if mode else names:
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
