"""What a model file is, read on the host without torch or onnx: its format,
what it says about the torch that wrote it (so that export rungs that cannot
load it are skipped before anything runs), and the inputs it declares.

Formats: TorchScript (torch.jit.save), ExportedProgram (torch.export.save),
a state_dict or checkpoint (torch.save of tensors in dicts), a pickled
module (torch.save(model): loading it runs code), ONNX. A torch.save file is
never unpickled here: its pickle's opcodes are read (pickletools.genops) to
see which globals it would import."""

from __future__ import annotations

import json
import os
import pickletools
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from convertctl import userfiles
from convertctl.config.catalog import Variant, version_tuple
from convertctl.errors import UsageError
from convertctl.inputs import onnxinfo, tfliteinfo
from convertctl.inputs.picklescan import LEGACY_MAGIC, archive_unsafe, is_safe_global, pickle_globals
from convertctl.store.filestate import FileState

FORMATS = ("torchscript", "exported-program", "state-dict", "pickle", "onnx", "tflite")
NAMES = {
    "torchscript": "TorchScript",
    "exported-program": "ExportedProgram",
    "state-dict": "state_dict/checkpoint",
    "pickle": "pickled module",
    "onnx": "ONNX",
    "tflite": "TFLite",
}
# Why an export variant without a format in its catalog `formats` cannot take it.
WHY_NOT = {
    "exported-program": "torch.export came with torch 2.1",
    "state-dict": "it has no weights_only=True loading, which keeps a torch.save file from running code",
    "pickle": "a pickled module loads only in the current-torch environment",
    "onnx": "it has no onnxruntime to make the reference outputs",
    "tflite": "a .tflite is quantized as it is (convertctl quantize), its reference made by LiteRT",
}
SAVE_HINT = (
    "Save it with torch.jit.save(torch.jit.trace(model, example), path), "
    "torch.export.save(torch.export.export(model, (example,)), 'model.pt2'), "
    "torch.save(model.state_dict(), path) (then give --arch), or export it to ONNX."
)
EP_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64"}
EP_DTYPES.update({12: "bool", 13: "bfloat16"})
# The small records read from an archive (version, model.json): a member
# declaring more than this is no record torch writes (a zip bomb, say).
MAX_RECORD_BYTES = 64 << 20


@dataclass
class ModelFacts:
    path: Path
    format: str  # one of FORMATS
    min_torch: tuple = (0,)  # the oldest torch that can load it, as far as the file tells
    why: str = ""  # the evidence for min_torch, in words
    details: dict = field(default_factory=dict)
    # What the file declares, where it does (ONNX, ExportedProgram): {"name", "dtype", "shape"}
    # with None (or a name) for a dimension that is not fixed.
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    opset: int | None = None  # ONNX files: the opset they were written at

    @property
    def name(self) -> str:
        return NAMES[self.format]

    def loadable_by(self, variant: Variant) -> str:
        """'' when the export variant can load this file, else why not."""
        if variant.formats and self.format not in variant.formats:
            why = WHY_NOT.get(self.format, "")
            return f"torch {variant.torch} here does not load {self.name} files" + (f" ({why})" if why else "")
        if variant.torch and version_tuple(variant.torch) < self.min_torch:
            return f"{self.why}; torch {variant.torch} cannot load or export it"
        return ""

    def dynamic_batch(self) -> bool | None:
        """Whether every declared input has a free first dimension (None: the file does not say)."""
        if not self.inputs:
            return None
        return all(t["shape"] and not isinstance(t["shape"][0], int) for t in self.inputs)

    def to_dict(self) -> dict:
        out = {
            "format": self.format,
            "min_torch": ".".join(map(str, self.min_torch)),
            "evidence": self.why,
            **self.details,
        }
        if self.inputs:
            out["declared_inputs"] = self.inputs
        if self.opset is not None:
            out["opset"] = self.opset
        return out


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    userfiles.check(path, "the model")  # a FIFO or device: refused without opening it
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: not readable")


def _record(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    """A small member of the archive (its declared size checked first)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_RECORD_BYTES:
        raise UsageError(
            f"{path}: the archive's {name} declares {info.file_size / 1e6:.0f} MB; no record torch writes is "
            "that large, refused"
        )
    return archive.read(info)


def _check_crc(path: Path, archive: zipfile.ZipFile) -> None:
    """Every member's CRC, before anything reads the archive: a truncated
    download or a damaged copy is named here, not deep inside a stage."""
    try:
        bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise UsageError(f"{path}: a damaged zip archive ({exc}); copy or save the model again") from None
    if bad is not None:
        raise UsageError(f"{path}: a damaged zip archive ({bad} fails its CRC check); copy or save the model again")


def _check_pickles(path: Path, archive: zipfile.ZipFile, state: FileState | None, kind: str) -> None:
    """Every pickle inside a TorchScript or ExportedProgram archive (sample
    inputs, constants, weights kept as torch.save payloads) through the same
    allowlist as a torch.save file, before anything loads it: torch.export.load
    unpickles some of them with weights_only=False, which runs what a pickle
    names. Remembered per file version, like the CRC check."""
    if state and state.get(path, "pickles_ok"):
        return
    try:
        found = archive_unsafe(archive, torchscript=kind == "TorchScript")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise UsageError(f"{path}: a damaged zip archive ({exc}); copy or save the model again") from None
    if found is not None and not found[1]:
        raise UsageError(f"{path}: member {found[0]} of the archive is not a readable pickle; save the model again")
    if found is not None:
        member, name = found
        article = "an" if kind[0] in "AEIOU" else "a"
        raise UsageError(
            f"{path}: {article} {kind} archive whose member {member} would import {name} when loaded, which "
            "runs code; convertctl loads only tensors and plain data from a model archive. Save the model "
            "again from code you trust."
        )
    if state:
        state.put(path, "pickles_ok", True)


def _torchscript(path: Path, archive: zipfile.ZipFile, names: list) -> ModelFacts:
    facts = ModelFacts(path.resolve(), "torchscript")
    version = next((n for n in names if n.endswith("/version") and n.count("/") == 1), None)
    if version:
        text = _record(path, archive, version).decode(errors="replace").strip()
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


def _ep_shape(sizes: list) -> list:
    """Fixed sizes as ints, symbolic ones by their symbol ("s40") as torch.export names them."""
    out: list = []
    for size in sizes:
        if "as_int" in size:
            value = size["as_int"]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TypeError(f"a size {value!r} that is no whole number")
            out.append(value)
        else:
            expr = str(size.get("as_expr", {}).get("expr_str", "dynamic"))
            found = re.match(r"Symbol\('(\w+)'", expr)
            out.append(found.group(1) if found else expr)
    return out


def _exported_program(path: Path, archive: zipfile.ZipFile, names: list) -> ModelFacts:
    facts = ModelFacts(path.resolve(), "exported-program", min_torch=(2, 1), why="an ExportedProgram (torch >= 2.1)")
    model_json = next((n for n in names if n.endswith("/models/model.json")), None) or next(
        (n for n in names if "/models/" in n and n.endswith(".json")), None
    )
    if model_json is None:  # torch 2.1-2.5 wrote serialized_exported_program.json: no details read
        return facts
    try:
        data = json.loads(_record(path, archive, model_json))
        graph_module = data["graph_module"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise UsageError(f"{path}: an ExportedProgram archive whose {model_json} is not readable JSON") from None
    try:
        return _ep_facts(facts, data, graph_module)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:  # JSON, but not the shapes torch writes
        raise UsageError(
            f"{path}: an ExportedProgram archive whose {model_json} is not as torch writes it ({exc})"
        ) from None


def _ep_facts(facts: ModelFacts, data: dict, graph_module: dict) -> ModelFacts:
    saved_by = str(data.get("torch_version", ""))
    schema = data.get("schema_version") or {}
    facts.details.update(torch_version=saved_by, schema_version=f"{schema.get('major')}.{schema.get('minor')}")
    if saved_by:
        # torch.export's format moves with torch: a program loads in the torch that saved it or a newer one.
        facts.min_torch = version_tuple(saved_by)[:2]
        facts.why = f"an ExportedProgram saved by torch {saved_by}"
    values = graph_module.get("graph", {}).get("tensor_values", {})
    for spec in graph_module.get("signature", {}).get("input_specs", []):
        arg = spec.get("user_input", {}).get("arg", {})
        name = arg.get("as_tensor", {}).get("name")
        if name is None:
            if "user_input" in spec:  # a non-tensor user input: the shapes cannot be told
                facts.inputs = []
                break
            continue
        if not isinstance(name, str):
            raise TypeError(f"an input name {name!r} that is no text")
        meta = values.get(name, {})
        facts.inputs.append(
            {
                "name": name,
                "dtype": EP_DTYPES.get(meta.get("dtype"), "unknown"),
                "shape": _ep_shape(meta.get("sizes", [])),
            }
        )
    return facts


def _torch_save(path: Path, found: list, layout: str) -> ModelFacts:
    unsafe = sorted({g for g in found if not is_safe_global(g)})
    facts = ModelFacts(path.resolve(), "pickle" if unsafe else "state-dict", details={"layout": layout})
    if unsafe:
        facts.details["globals"] = unsafe
    return facts


def _legacy_torch_save(path: Path) -> ModelFacts | None:
    """torch.save's pre-zip layout: pickles of the magic number, the protocol,
    system info, then the object (storages follow as raw bytes)."""
    try:
        with open(path, "rb") as f:
            ops = list(pickletools.genops(f))
            if not any(op.name.startswith("LONG") and arg == LEGACY_MAGIC for op, arg, _ in ops):
                return None
            found = []
            for _ in range(3):
                found += pickle_globals(f)
    # Any bytes can look like a pickle opcode announcing 2**63 bytes to read:
    # that file is no pickle, not a reason to run out of memory.
    except (ValueError, EOFError, OSError, OverflowError, MemoryError, IndexError, KeyError):
        return None
    return _torch_save(path, found, "legacy")


def _onnx(path: Path) -> ModelFacts | None:
    try:
        info = onnxinfo.parse(path.read_bytes())
    except onnxinfo.NotOnnx as exc:
        if path.suffix.lower() == ".onnx":
            raise UsageError(f"{path}: not a readable ONNX file ({exc})") from None
        return None
    if info.external_data:
        raise UsageError(
            f"{path}: an ONNX file whose weights live in separate files (external data); "
            "save it as one file: onnx.save(model, path, save_as_external_data=False)"
        )
    if not info.inputs:
        raise UsageError(f"{path}: an ONNX graph without inputs; nothing to feed")
    facts = ModelFacts(path.resolve(), "onnx", details={"ir_version": info.ir_version, "nodes": info.nodes})
    if info.producer:
        facts.details["producer"] = info.producer
    facts.opset = info.opset
    facts.inputs = [{"name": t.name, "dtype": t.dtype, "shape": t.shape} for t in info.inputs]
    facts.outputs = [{"name": t.name, "dtype": t.dtype, "shape": t.shape} for t in info.outputs]
    return facts


def _tflite(path: Path) -> ModelFacts | None:
    with open(path, "rb") as f:
        head = f.read(8)
    if not tfliteinfo.is_tflite(head):
        return None
    try:
        info = tfliteinfo.parse(path.read_bytes())
    except tfliteinfo.NotTflite as exc:
        raise UsageError(f"{path}: not a readable .tflite file ({exc})") from None
    facts = ModelFacts(path.resolve(), "tflite", details={"subgraphs": info.subgraphs, "schema_version": info.version})
    facts.inputs = [{"name": t.name, "dtype": t.dtype, "shape": t.shape} for t in info.inputs]
    facts.outputs = [{"name": t.name, "dtype": t.dtype, "shape": t.shape} for t in info.outputs]
    return facts


def read_model(path: Path, state: FileState | None = None) -> ModelFacts:
    """The model's format and provenance; a UsageError naming the file when
    it is none of the formats convertctl converts. With a FileState, an
    archive unchanged since its CRC check passed is not read again."""
    _check_readable(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        archive = None
    except NotImplementedError as exc:  # a zip of a version or compression torch never writes
        raise UsageError(f"{path}: a zip archive convertctl cannot read ({exc}); not a model torch saved") from None
    if archive is not None:
        with archive:
            if not (state and state.get(path, "zip_crc_ok")):
                _check_crc(path, archive)
                if state:
                    state.put(path, "zip_crc_ok", True)
            names = archive.namelist()
            if any("/code/" in n for n in names):
                _check_pickles(path, archive, state, "TorchScript")
                return _torchscript(path, archive, names)
            if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
                _check_pickles(path, archive, state, "ExportedProgram")
                return _exported_program(path, archive, names)
            pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise UsageError(
                    f"{path}: a zip archive, but not one torch wrote (no code/ folder, no data.pkl). " + SAVE_HINT
                )
            try:
                found = pickle_globals(archive.read(pkl))
            except (ValueError, EOFError, OverflowError, MemoryError, IndexError, KeyError) as exc:
                raise UsageError(
                    f"{path}: a torch.save() archive whose data.pkl is not a readable pickle ({exc})"
                ) from None
            return _torch_save(path, found, "zip")
    facts = _tflite(path) or _legacy_torch_save(path) or _onnx(path)
    if facts is None:
        raise UsageError(
            f"{path}: not a model file convertctl reads (not TorchScript, an ExportedProgram, "
            f"a torch.save() file, ONNX nor a .tflite). {SAVE_HINT}"
        )
    return facts
