"""Per-model settings in convertctl.toml next to the model: what a model
always needs (input shape, a convert image that can handle it, looser
tolerances) without repeating flags. Command-line flags win."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = {
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
    "resize",
    "int8_float_layers",
    "int8_io",
    "max_int8_latency_cost",
}


@dataclass
class ModelConfig:
    path: Path | None = None
    values: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.values.get(key, default)


def load_config(model: Path, explicit: Path | None = None) -> ModelConfig:
    path = explicit or model.parent / "convertctl.toml"
    if not path.is_file():
        if explicit:
            raise UsageError(f"--config {path}: no such file")
        return ModelConfig()
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(values) - KEYS)
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    if "calib" in values:  # relative to the config file, not the working directory
        values["calib"] = str((path.parent / values["calib"]).resolve())
    return ModelConfig(path, values)


def mode_values(items: list[str], flag: str, modes: tuple) -> dict:
    """'0.01' (every mode) or 'fp16=0.01' (one mode), repeatable."""
    out: dict = {}
    for item in items:
        mode, _, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise UsageError(f"{flag} {item!r}: expected NUMBER or MODE=NUMBER") from None
        if mode and mode not in modes:
            raise UsageError(f"{flag} {item!r}: unknown mode {mode!r} (choose from {', '.join(modes)})")
        for m in [mode] if mode else modes:
            out[m] = number
    return out
