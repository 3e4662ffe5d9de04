"""The variant catalog (images/catalog.toml): which environments exist, what
each can do, and per runtime the order in which they are tried (the
ladders). Data, not code: a new converter version is a new table there."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.config import modes, runtimes
from convertctl.config.options import LAYOUTS, TEXT
from convertctl.config.schema import boolean, checked, dict_of, either, integer, list_of, one_of, optional, table, text
from convertctl.config.settings import as_toml
from convertctl.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts only
    import tomli as tomllib

STAGES = ("export", "convert", "quantize", "measure", "metadata")


def images_dir() -> Path:
    """Stage code and locks: package data in a wheel, images/ in a checkout."""
    here = Path(__file__).resolve().parent.parent  # the package: convertctl/config/catalog.py
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
    folder: str = ""  # image folder under images/; default: the stage's
    script: str = ""  # relative to images/; default: <folder>/<stage>.py
    pins: dict = field(default_factory=dict, compare=False, hash=False)
    apt: tuple = ()  # Debian packages the image needs beside the lock (a library a wheel links)
    # export variants
    torch: str = ""
    formats: tuple = ()
    max_opset: int = 0
    torch_index: str = ""  # where its lock's +cpu torch comes from, when no wheelhouse holds it
    # convert variants
    family: str = ""
    input: str = "onnx"
    opsets: tuple = ()
    opset: int = 0
    layouts: tuple = ("nchw",)
    quantize: tuple = ()  # the quantize variants that make its files, tried per mode in this order
    # quantize variants
    kind: str = modes.TFLITE_CONVERTER  # which quantizer it runs: the modes registry says what each kind makes
    float_layers: bool = True  # can keep chosen layers float in int8 (--int8-float-layers)

    def makes(self, mode: str) -> str:
        """'' when this quantize variant makes the mode, else why not (the modes registry's words)."""
        return "" if modes.get(mode).made_by(self.kind) else modes.get(mode).why_not(self.kind)

    @property
    def image_folder(self) -> str:
        return self.folder or self.stage

    @property
    def lock_path(self) -> Path:
        return images_dir() / self.requirements

    @property
    def lock_input(self) -> Path:
        """The .in file the lock is made from (images/lock.py)."""
        return self.lock_path.with_suffix(".in")

    def lock_text(self) -> str:
        return self.lock_path.read_text()

    def lock_digest(self) -> str:
        return hashlib.sha256(self.lock_text().encode()).hexdigest()

    @property
    def stage_dir(self) -> Path:
        return images_dir() / self.image_folder

    @property
    def script_rel(self) -> str:
        return self.script or f"{self.image_folder}/{self.stage}.py"

    @property
    def script_path(self) -> Path:
        return images_dir() / self.script_rel

    def reads_opset(self, opset: int) -> bool:
        return not self.opsets or self.opsets[0] <= opset <= self.opsets[1]

    def torch_version(self) -> tuple:
        return version_tuple(self.torch)


def version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class Catalog:
    variants: dict
    ladders: dict

    def get(self, name_or_tag: str, stage: str | None = None) -> Variant:
        for v in self.variants.values():
            if name_or_tag in (v.name, v.tag) and (stage is None or v.stage == stage):
                return v
        known = sorted(v.name for v in self.variants.values() if stage is None or v.stage == stage)
        what = f"{stage} variant" if stage else "variant"
        raise UsageError(f"unknown {what} {name_or_tag!r}; known: {', '.join(known)} (or their tags)")

    def ladder(self, runtime: str, stage: str) -> list[Variant]:
        """The runtime's variants for a stage, in the order they are tried."""
        names = self.ladders.get(runtime, {}).get(stage, [])
        return [self.get(n, stage) for n in names]

    def families(self) -> list[str]:
        return sorted({v.family for v in self.variants.values() if v.family})

    def pick(self, runtime: str, stage: str, choice: str | None) -> list[Variant]:
        """The rungs to try: the runtime's ladder for 'auto' (or nothing
        chosen); one variant for a name or tag; for a family name, that
        family's rungs of the runtime's ladder."""
        if not choice or choice == "auto":
            return self.ladder(runtime, stage)
        if stage == "convert" and choice in self.families():
            # The family's rungs of this runtime's ladder; a family the
            # ladder leaves out: its variants in catalog order.
            ordered = [v for v in self.ladder(runtime, stage) if v.family == choice]
            return ordered or [v for v in self.variants.values() if v.family == choice]
        return [self.get(choice, stage)]

    def quantizers(self, convert: Variant) -> list[Variant]:
        """The quantize variants of a convert variant, in the order they are tried for a mode."""
        if not convert.quantize:
            raise UsageError(f"catalog: convert variant {convert.name} names no quantize variant")
        return [self.get(name, "quantize") for name in convert.quantize]

    def quantizers_for(self, convert: Variant, mode: str) -> tuple[list[Variant], str]:
        """(the quantize variants that make mode for this convert variant, in the
        order they are tried, '') or ([], why none does)."""
        able = [q for q in self.quantizers(convert) if not q.makes(mode)]
        if able:
            return able, ""
        whys = [q.makes(mode) for q in self.quantizers(convert)]
        return [], f"the {convert.family} family cannot make {mode}: " + "; ".join(dict.fromkeys(whys))

    def quantizer_for(self, convert: Variant, mode: str) -> tuple[Variant | None, str]:
        """(the first quantize variant that makes mode for this convert variant, '') or (None, why none does)."""
        able, why = self.quantizers_for(convert, mode)
        return (able[0] if able else None), why

    def environments(self, runtime: str) -> list[Variant]:
        """Every variant a runtime's ladders can use (quantize partners included)."""
        out: list[Variant] = []
        for stage in ("export", "convert", "measure", "metadata"):
            for v in self.ladder(runtime, stage):
                out += [v] + (self.quantizers(v) if stage == "convert" else [])
        return list(dict.fromkeys(out))

    def measurer(self, runtime: str) -> Variant | None:
        """The environment that times the final files (LiteRT), if any."""
        ladder = self.ladder(runtime, "measure")
        return ladder[0] if ladder else None

    def metadata_writer(self, runtime: str) -> Variant | None:
        """The environment that writes TFLite metadata into the final files (--labels), if any."""
        ladder = self.ladder(runtime, "metadata")
        return ladder[0] if ladder else None


def _variant(path: Path, name: str, table: dict) -> Variant:
    if table.get("stage") not in STAGES:
        raise UsageError(f"{path}: variant {name} has no valid stage (one of {', '.join(STAGES)})")
    known = set(Variant.__dataclass_fields__) - {"name"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"{path}: variant {name}: unknown field(s) {', '.join(unknown)}")
    values = dict(table)
    if isinstance(values.get("quantize"), str):  # one quantize variant, or a list of alternatives
        values["quantize"] = [values["quantize"]]
    for key in ("formats", "opsets", "layouts", "quantize", "apt"):
        if key in values:
            values[key] = tuple(values[key])
    return Variant(name=name, **values)


def catalog_path() -> Path:
    """images/catalog.toml, or the file CONVERTCTL_CATALOG names: a catalog of
    one's own (other ladders, a test's variants). Its paths stay relative to
    images/, so it can name the shipped locks and scripts."""
    override = os.environ.get("CONVERTCTL_CATALOG")
    return Path(override) if override else images_dir() / "catalog.toml"


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or catalog_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the image catalog: {exc}") from exc
    check_catalog(path, data)
    variants = {name: _variant(path, name, table) for name, table in data.get("variants", {}).items()}
    catalog = Catalog(variants=variants, ladders=data.get("ladders", {}))
    for runtime, stages in catalog.ladders.items():
        for stage, names in stages.items():
            for name in names:
                if name not in variants or variants[name].stage != stage:
                    raise UsageError(f"{path}: ladders.{runtime}.{stage} names {name!r}, not a {stage} variant")
        for v in catalog.ladder(runtime, "convert"):
            catalog.quantizers(v)
    return catalog


# The catalog in the same strict typed terms as convertctl.toml and the flags
# (schema.py): a wrong type in the catalog is a usage error naming the field
# and the file, not a crash later. What each field means: catalog.toml's header.
STAGE = one_of(*STAGES)
OPSET = integer(ge=0, le=30)  # 0: not pinned
VARIANT_TABLE = table(
    "VariantTable",
    {
        "stage": STAGE,
        "python": text(pattern=r"^\d+\.\d+$"),
        "requirements": TEXT,
        "tag": TEXT,
        "base_image": TEXT,
        "debian": TEXT,
        "folder": text(),
        "script": text(),
        "pins": dict_of(text(), text()),
        "apt": list_of(text(pattern=r"^[a-z0-9][a-z0-9.+-]*$")),  # rendered into a shell line: names only
        "torch": text(),
        "formats": list_of(TEXT),
        "max_opset": OPSET,
        "torch_index": text(),
        "family": text(),
        "input": one_of("onnx", "torch"),
        "opsets": optional(list_of(integer(ge=1, le=30), min_length=2, max_length=2)),
        "opset": OPSET,
        "layouts": list_of(one_of(*LAYOUTS)),
        "quantize": either(("str", TEXT), ("list[str]", list_of(TEXT, min_length=1))),
        "kind": one_of(*modes.QUANTIZER_KINDS),
        "float_layers": boolean,
    },
    required=("stage", "python", "requirements", "tag", "base_image"),
    extra="allow",  # unknown fields are named by _variant, which knows the Variant
)
CATALOG_FILE = table(
    "CatalogFile",
    {
        "variants": dict_of(text(), VARIANT_TABLE),
        "ladders": dict_of(one_of(*runtimes.BY_NAME), dict_of(STAGE, list_of(TEXT))),
    },
    required=("variants",),
)


def check_catalog(path: Path, data: dict) -> None:
    """A UsageError naming every bad field of the catalog, and the file."""
    _, errors = checked(CATALOG_FILE, data)
    if errors:
        problems = []
        for e in errors:
            loc = ".".join(str(p) for p in e["loc"] if p != "[key]")
            problems.append(f"{loc}: {e['msg']} (got {as_toml(e.get('input'))})")
        raise UsageError(f"{path}: invalid catalog: " + "; ".join(dict.fromkeys(problems))) from None
