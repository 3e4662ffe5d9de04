"""What each model format needs from the command line, checked before any
work: a state_dict its --arch, a pickled module --trust-model (and the
Docker runtime); and the request fields that tell a stage how to load it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from convertctl.errors import UsageError
from convertctl.inputs.inputspec import safe_name
from convertctl.inputs.modelfile import ModelFacts

QUANTIZED_IO = ("int8", "uint8", "int16")  # a .tflite with such I/O was quantized already
ARCH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def check_model_flags(opts) -> None:
    """--arch, --arch-kwargs, --code, before the model file is read."""
    if opts.arch is not None and not ARCH.fullmatch(opts.arch):
        raise UsageError(f"--arch {opts.arch!r}: expected module:callable, e.g. mynet:build_model or mynet:Net")
    if opts.arch_kwargs and not opts.arch:
        raise UsageError("--arch-kwargs given without --arch")
    if not isinstance(opts.arch_kwargs, dict):
        raise UsageError("--arch-kwargs: expected a JSON object, e.g. '{\"num_classes\": 10}'")
    if opts.code is not None:
        if not opts.arch and not opts.trust_model:
            raise UsageError(
                "--code DIR holds the module --arch names (or a pickled module's classes); no --arch given"
            )
        if not Path(opts.code).is_dir():
            raise UsageError(f"--code {opts.code}: not a directory")


def check_format(facts: ModelFacts, opts, runtime) -> None:
    """What each format needs from the command line, before any work."""
    path = Path(opts.model)
    if facts.format == "state-dict" and not opts.arch:
        raise UsageError(
            f"{path}: a state_dict/checkpoint holds weights, not the model: give its architecture with "
            "--arch module:callable (and --arch-kwargs JSON), with --code DIR the folder holding that module"
        )
    if opts.arch and facts.format not in ("state-dict", "pickle"):
        raise UsageError(f"--arch is for state_dict files; {path} is a {facts.name} file, which carries its model")
    if facts.format == "pickle" and not opts.trust_model:
        classes = ", ".join(facts.details.get("globals", [])[:5])
        raise UsageError(
            f"{path}: a pickled module (torch.save(model)) or a checkpoint holding more than tensors; loading it "
            f"imports {classes} and runs code from the file. Save a state_dict (then --arch), TorchScript or an "
            "ExportedProgram instead, or pass "
            "--trust-model to load it in a Docker container without network that writes only its run directory."
        )
    if facts.format == "tflite":
        quantized = [f"{t['name']} is {t['dtype']}" for t in facts.inputs + facts.outputs if t["dtype"] in QUANTIZED_IO]
        if quantized:
            raise UsageError(f"{path}: already quantized ({', '.join(quantized)}): give the float .tflite to quantize")
    if opts.trust_model and not runtime.sandboxed:
        raise UsageError(
            f"--trust-model needs --runtime docker: a pickled module is only unpickled in a container without "
            f"network that writes only its run directory; the {runtime.name} runtime has no such sandbox"
        )


def load_fields(facts: ModelFacts, opts) -> Any:
    """The request fields that say how to load the model (common/modelio.py):
    the protocol's LoadPart (run/protocol.py)."""
    out: dict = {}
    if opts.arch:
        out.update(arch=opts.arch, arch_kwargs=dict(opts.arch_kwargs or {}))
    if opts.code:
        out["code_dir"] = str(Path(opts.code).resolve())
    if facts.format == "pickle" and opts.trust_model:
        out["trusted"] = True
    if facts.format == "onnx":
        tensors = [(t["name"], "input") for t in facts.inputs] + [(t["name"], "output") for t in facts.outputs]
        renames = {name: safe_name(name, kind) for name, kind in tensors if safe_name(name, kind) != name}
        if renames:
            out["onnx_renames"] = renames
    return out
