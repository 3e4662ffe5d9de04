"""The variant catalog (images/catalog.toml): which environment runs which
stage. Data, not code: a new TF version is a new table there."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib

STAGES = ("export", "convert", "quantize")


def images_dir() -> Path:
    """Stage code and locks: package data in a wheel, images/ in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_images", here.parent.parent / "images"):
        if (candidate / "catalog.toml").is_file():
            return candidate
    raise UsageError("convertctl's stage files are missing (no images/catalog.toml); reinstall convertctl")


@dataclass(frozen=True)
class Variant:
    name: str
    stage: str
    python: str
    requirements: str
    tag: str
    base_image: str
    debian: str = "bookworm"
    quantize: str = ""
    max_opset: int = 13  # onnx-tf 1.10 reads up to 13
    pins: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def lock_path(self) -> Path:
        return images_dir() / self.requirements

    def lock_text(self) -> str:
        return self.lock_path.read_text()

    def lock_digest(self) -> str:
        return hashlib.sha256(self.lock_text().encode()).hexdigest()

    @property
    def stage_dir(self) -> Path:
        return images_dir() / self.stage

    @property
    def script(self) -> Path:
        return self.stage_dir / f"{self.stage}.py"


@dataclass(frozen=True)
class Catalog:
    variants: dict
    defaults: dict

    def get(self, name_or_tag: str, stage: str | None = None) -> Variant:
        for v in self.variants.values():
            if name_or_tag in (v.name, v.tag) and (stage is None or v.stage == stage):
                return v
        known = sorted(v.name for v in self.variants.values() if stage is None or v.stage == stage)
        what = f"{stage} variant" if stage else "variant"
        raise UsageError(f"unknown {what} {name_or_tag!r}; known: {', '.join(known)} (or their tags)")

    def plan(self, runtime: str, convert: str | None = None, export: str | None = None) -> dict:
        """The variant for each stage: the runtime's defaults, with the
        convert (and so quantize) and export choices applied."""
        defaults = self.defaults.get(runtime, {})
        exp = self.get(export or defaults["export"], "export")
        conv = self.get(convert or defaults["convert"], "convert")
        if not conv.quantize:
            raise UsageError(f"catalog: convert variant {conv.name} names no quantize variant")
        return {"export": exp, "convert": conv, "quantize": self.get(conv.quantize, "quantize")}


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or images_dir() / "catalog.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the image catalog: {exc}") from exc
    variants = {}
    for name, table in data.get("variants", {}).items():
        if table.get("stage") not in STAGES:
            raise UsageError(f"{path}: variant {name} has no valid stage")
        variants[name] = Variant(name=name, **table)
    return Catalog(variants=variants, defaults=data.get("defaults", {}))
