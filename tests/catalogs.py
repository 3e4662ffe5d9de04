"""Catalogs made for a test: the shipped variants with other ladders, plus
test-only variants, written as TOML for CONVERTCTL_CATALOG."""

from __future__ import annotations

import re
from pathlib import Path

from convertctl.config.catalog import images_dir, load_catalog


def toml_value(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


def variant_table(name: str, fields: dict) -> str:
    lines = [f'[variants."{name}"]'] + [f"{k} = {toml_value(v)}" for k, v in fields.items() if v not in ("", (), 0)]
    return "\n".join(lines) + "\n"


def catalog_file(tmp_path: Path, convert: list, extra: str = "") -> Path:
    """The shipped catalog's variants, its local export ladder, and this
    convert ladder."""
    shipped = (images_dir() / "catalog.toml").read_text()
    variants = re.sub(r"(?ms)^\[ladders\.[^\]]*\].*?(?=^\[variants)", "", shipped)
    export = [v.name for v in load_catalog(images_dir() / "catalog.toml").ladder("local", "export")]
    ladders = f"[ladders.local]\nexport = {toml_value(export)}\nconvert = {toml_value(convert)}\n\n"
    path = tmp_path / "catalog.toml"
    path.write_text(ladders + variants + "\n" + extra)
    return path
