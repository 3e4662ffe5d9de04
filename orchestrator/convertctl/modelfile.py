"""What a model file is, read on the host without torch: its format, and
what it says about the torch that wrote it, so that export rungs that
cannot load it are skipped before anything runs."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.catalog import Variant, version_tuple
from convertctl.errors import UsageError

SAVE_HINT = (
    "Save it with torch.jit.save(torch.jit.trace(model, example), path), "
    "torch.export.save(torch.export.export(model, (example,)), 'model.pt2'), or export it to ONNX."
)


@dataclass
class ModelFacts:
    path: Path
    format: str  # torchscript | exported-program | state-dict | pickle | onnx
    min_torch: tuple = (0,)  # the oldest torch that can load it, as far as the file tells
    why: str = ""  # the evidence for min_torch, in words
    details: dict = field(default_factory=dict)

    def loadable_by(self, variant: Variant) -> str:
        """'' when the export variant can load this file, else why not."""
        if variant.formats and self.format not in variant.formats:
            return f"torch {variant.torch} here does not load {self.format} files"
        if variant.torch and version_tuple(variant.torch) < self.min_torch:
            return f"{self.why}; torch {variant.torch} cannot load or export it"
        return ""

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "min_torch": ".".join(map(str, self.min_torch)),
            "evidence": self.why,
            **self.details,
        }


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if not path.is_file():
        raise UsageError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: not readable")


def _torchscript(path: Path, archive: zipfile.ZipFile, names: list) -> ModelFacts:
    facts = ModelFacts(path.resolve(), "torchscript")
    version = next((n for n in names if n.endswith("/version") and n.count("/") == 1), None)
    if version:
        text = archive.read(version).decode(errors="replace").strip()
        facts.details["file_format_version"] = int(text) if text.isdigit() else text
    # torch >= 2.1 records the byte order of its tensors. Such archives carry
    # ops (aten::linear, scaled_dot_product_attention...) that torch 1.7's
    # exporter does not know, even where its loader still reads the file.
    if any(n.endswith("/byteorder") for n in names):
        facts.min_torch, facts.why = (2, 1), "the archive has a byteorder record: saved by torch >= 2.1"
    elif isinstance(facts.details.get("file_format_version"), int) and facts.details["file_format_version"] > 5:
        facts.min_torch = (1, 8)
        facts.why = f"TorchScript file format {facts.details['file_format_version']}: saved by torch >= 1.8"
    return facts


def read_model(path: Path) -> ModelFacts:
    """The model's format and provenance; a UsageError naming the file when
    it is none of the formats convertctl converts."""
    _check_readable(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if any("/code/" in n for n in names):
                return _torchscript(path, archive, names)
    except (zipfile.BadZipFile, OSError):
        pass
    else:
        raise UsageError(
            f"{path}: a torch.save() pickle, not TorchScript (it has no code/ folder). "
            "Save it with torch.jit.save(torch.jit.script(model), path) "
            "or torch.jit.save(torch.jit.trace(model, example), path)."
        )
    raise UsageError(
        f"{path}: not a TorchScript file (not a zip archive). "
        "Save the model with torch.jit.save(torch.jit.script(model), path) or torch.jit.trace."
    )
