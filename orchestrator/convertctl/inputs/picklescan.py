"""Which globals a pickle would import, read from its opcodes
(pickletools.genops) without unpickling anything: a torch.save() file that
imports only tensor-rebuilding and container globals is data (a state_dict
or checkpoint); one that imports anything else (a model's class, os.system,
builtins.exec) runs code when loaded."""

from __future__ import annotations

import pickletools
import re

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.save before the zip format (torch < 1.6, or asked for)

# The globals torch.load(weights_only=True) allows (torch/_weights_only_unpickler.py):
# tensors, storages, dtypes and plain containers. Anything else is code to run.
SAFE_GLOBALS = {
    "collections.OrderedDict",
    "collections.Counter",
    "torch.nn.parameter.Parameter",
    "torch.serialization._get_layout",
    "torch._tensor._rebuild_from_type_v2",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "_codecs.encode",
    "builtins.set",
    "builtins.bytearray",
    "builtins.complex",
    "__builtin__.set",
    "__builtin__.bytearray",
    "__builtin__.complex",
}
SAFE_TORCH_NAME = re.compile(
    r"(u?int\d*|float\d*|bfloat16|half|double|long|short|bool|complex\d*|cfloat|cdouble|q?u?int\d+(x\d+)?"
    r"|per_\w+|Size|Tensor|device|\w+Storage|\w+Tensor)"
)


def pickle_globals(stream) -> list[str]:
    """The module.name of every global one pickle would import, in order,
    from its opcodes alone (nothing is unpickled). STACK_GLOBAL (protocol 4+)
    takes the two strings pushed before it, possibly through the memo."""
    found: list[str] = []
    pushed: list = []  # what each opcode pushed: the string, or None for anything else
    memo: dict = {}
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2:] + [None, None])[:2] if len(pushed) >= 2 else (None, None)
            found.append(f"{module}.{attr}" if module and attr else "<a global the opcodes do not name>")
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[len(memo) if name == "MEMOIZE" else arg] = pushed[-1] if pushed else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif name not in ("PROTO", "FRAME", "STOP"):
            is_text = isinstance(arg, str) and ("UNICODE" in name or name.endswith("STRING"))
            pushed.append(arg if is_text else None)
    return found


def is_safe_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if name in SAFE_GLOBALS or (module == "torch._utils" and attr.startswith("_rebuild_")):
        return True
    return module == "torch" and SAFE_TORCH_NAME.fullmatch(attr) is not None


# TorchScript archives are unpickled by TorchScript's own (C++) unpickler,
# which resolves these names against the archive's compiled code and a
# fixed table, never by importing Python: they are data there, and only there.
TORCHSCRIPT_PREFIXES = ("__torch__.", "torch.jit._pickle.")
PROTOCOL_OPS = {2, 3, 4, 5}
ZIP_MAGIC = b"PK\x03\x04"
MAX_NESTING = 3  # an archive inside an archive (a .pt2's sample inputs are a torch.save zip)


def _parses_as_pickle(data: bytes) -> bool:
    """A whole pickle stream, STOP at its very end: a member that is a pickle,
    told from raw tensor bytes (which do not parse as one)."""
    if len(data) < 3 or data[0] != 0x80 or data[1] not in PROTOCOL_OPS:
        return False
    end = -1
    try:
        for op, _, pos in pickletools.genops(data):
            if op.name == "STOP" and pos is not None:
                end = pos + 1
                break
    except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError, OverflowError, MemoryError):
        return False
    return end == len(data)


def archive_unsafe(archive, torchscript: bool = False, depth: int = 0, where: str = "") -> tuple[str, str] | None:
    """(member, global) of the first pickle inside a zip archive (or an
    archive inside it) that would import a global the tensor allowlist does
    not hold ("" for a .pkl member that is no readable pickle), or None when
    every pickle in it is data. Each member named
    .pkl is read as a pickle; any other member that parses as one whole is
    treated as one too (an ExportedProgram keeps torch.save payloads and
    plain pickles under other names). Nothing is unpickled."""
    import io
    import zipfile

    for info in archive.infolist():
        name = where + info.filename
        with archive.open(info) as member:
            head = member.read(4)
        candidate = info.filename.endswith(".pkl") or head == ZIP_MAGIC
        if not (candidate or (len(head) >= 2 and head[0] == 0x80 and head[1] in PROTOCOL_OPS)):
            continue  # raw tensor bytes, JSON, code: never unpickled
        data = archive.read(info)
        if data[:4] == ZIP_MAGIC and depth < MAX_NESTING:
            try:
                inner = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                inner = None
            if inner is not None:
                with inner:
                    found = archive_unsafe(inner, False, depth + 1, name + "!/")
                if found:
                    return found
                continue
        if not (info.filename.endswith(".pkl") or _parses_as_pickle(data)):
            continue
        try:
            names = pickle_globals(data)
        except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError, OverflowError, MemoryError):
            return name, ""  # a .pkl that is no pickle: nothing can say what it would import
        for global_name in names:
            if is_safe_global(global_name) or (torchscript and global_name.startswith(TORCHSCRIPT_PREFIXES)):
                continue
            return name, global_name
    return None
