"""The image catalog (images/catalog.toml) in the same strict typed terms
as convertctl.toml and the flags (settings.py): a wrong type in the catalog
is a usage error naming the field and the file, not a crash later."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from convertctl.errors import UsageError
from convertctl.settings import STRICT, Mode, Text, as_toml

Stage = Literal["export", "convert", "quantize", "measure"]


class VariantTable(BaseModel):
    """One [variants.NAME] table. What each field means: catalog.toml's header.
    Fields it does not know are left to catalog.py, which knows the Variant."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    stage: Stage
    python: Annotated[str, Field(pattern=r"^\d+\.\d+$")]
    requirements: Text
    tag: Text
    base_image: Text
    debian: Text = "bookworm"
    folder: str = ""
    script: str = ""
    pins: dict[str, str] = {}
    torch: str = ""
    formats: list[Text] = []
    max_opset: int = Field(0, ge=0, le=30)
    family: str = ""
    input: Literal["onnx", "torch"] = "onnx"
    opsets: Annotated[list[Annotated[int, Field(ge=1, le=30)]], Field(min_length=2, max_length=2)] | None = None
    opset: int = Field(0, ge=0, le=30)
    layouts: list[Literal["nchw", "nhwc"]] = ["nchw"]
    quantize: str = ""
    modes: list[Mode] = []
    float_layers: bool = True


class CatalogFile(BaseModel):
    model_config = STRICT
    variants: dict[str, VariantTable]
    ladders: dict[Literal["docker", "local"], dict[Stage, list[Text]]] = {}


def check_catalog(path: Path, data: dict) -> None:
    """A UsageError naming every bad field of the catalog, and the file."""
    try:
        CatalogFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in e["loc"] if p != "[key]")
            problems.append(f"{loc}: {e['msg']} (got {as_toml(e.get('input'))})")
        raise UsageError(f"{path}: invalid catalog: " + "; ".join(dict.fromkeys(problems))) from None
