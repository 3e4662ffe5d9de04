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
