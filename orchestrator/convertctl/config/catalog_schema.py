"""The image catalog (images/catalog.toml) in the same strict typed terms
as convertctl.toml and the flags (settings.py, schema.py): a wrong type in
the catalog is a usage error naming the field and the file, not a crash later."""

from __future__ import annotations

from pathlib import Path

from convertctl.config.schema import boolean, checked, dict_of, integer, list_of, one_of, optional, table, text
from convertctl.config.settings import MODE, TEXT, as_toml
from convertctl.errors import UsageError

STAGE = one_of("export", "convert", "quantize", "measure")
OPSET = integer(ge=0, le=30)  # 0: not pinned

# One [variants.NAME] table. What each field means: catalog.toml's header.
# Fields it does not know are left to catalog.py, which knows the Variant
# (extra="allow"). Left out, a field takes catalog.py's default.
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
        "torch": text(),
        "formats": list_of(TEXT),
        "max_opset": OPSET,
        "family": text(),
        "input": one_of("onnx", "torch"),
        "opsets": optional(list_of(integer(ge=1, le=30), min_length=2, max_length=2)),
        "opset": OPSET,
        "layouts": list_of(one_of("nchw", "nhwc")),
        "quantize": text(),
        "modes": list_of(MODE),
        "float_layers": boolean,
    },
    required=("stage", "python", "requirements", "tag", "base_image"),
    extra="allow",
)
CATALOG_FILE = table(
    "CatalogFile",
    {
        "variants": dict_of(text(), VARIANT_TABLE),
        "ladders": dict_of(one_of("docker", "local"), dict_of(STAGE, list_of(TEXT))),
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
