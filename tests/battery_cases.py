"""The battery's data: builders of hostile and faulty files, and the table of
cases (the README's promises turned into inputs that must be refused, or
shown safely). tests/test_battery_cli.py runs each case; every builder that
can carry a payload carries one that would `touch` the world's PWNED file
if anything executed it (a pickle naming os.system, a settings file or a
report naming os:system as the code to run)."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPE = (3, 8, 8)  # one sample of the 1,3,8,8 input every run case declares
RNG = np.random.default_rng(0)
MARKER = "PWNED"  # a payload that ran would create world/PWNED


def seeded_bytes(n: int, seed: int) -> bytes:
    """Random bytes, the same on every run (a failure can be rerun)."""
    return np.random.default_rng(1000 + seed).bytes(n)


# -- payloads -----------------------------------------------------------------
def evil_pickle(world: Path, protocol: int = 2) -> bytes:
    """A pickle that runs `touch world/PWNED` when loaded (os.system)."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {world / MARKER}",))

    return pickle.dumps(Payload(), protocol=protocol)


def torch_save_bytes(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


# -- model files ------------------------------------------------------------------
def torchscript(path: Path, world: Path, extra: dict | None = None) -> None:
    """The layout torch.jit.save writes (stored, not compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
        z.writestr("net/data/0", b"\x00" * 4096)
        z.writestr("net/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def ts_member(name: str, data: Callable[[Path], bytes]) -> Callable:
    return lambda path, world: torchscript(path, world, {name: data(world)})


def ep_json(graph_module) -> str:
    return json.dumps({"graph_module": graph_module, "torch_version": "2.13.0"})


def ep_inputs(*inputs) -> str:
    """model.json declaring user inputs: (name, dtype code, sizes)."""
    specs = [{"user_input": {"arg": {"as_tensor": {"name": n}}}} for n, _, _ in inputs]
    values = {
        n: {"dtype": d, "sizes": [{"as_int": s} if isinstance(s, int) else s for s in sizes]} for n, d, sizes in inputs
    }
    return ep_json({"graph": {"tensor_values": values}, "signature": {"input_specs": specs}})


def pt2(members: dict | None = None, model_json: str | bytes | None = None) -> Callable:
    """An ExportedProgram archive in torch 2.13's layout; members may be
    callables of the world (payloads)."""

    def write(path: Path, world: Path) -> None:
        base = {
            "m/archive_format": "pt2",
            "m/models/model.json": ep_json({"graph": {}, "signature": {}}) if model_json is None else model_json,
            "m/data/weights/weight_0": b"\x00" * 16,
            "m/data/sample_inputs/model.pt": torch_save_bytes(b"\x80\x02}q\x00."),
        }
        with zipfile.ZipFile(path, "w") as z:
            for name, data in {**base, **(members or {})}.items():
                z.writestr(name, data(world) if callable(data) else data)

    return write


def raw(data: bytes | Callable[[Path], bytes]) -> Callable:
    return lambda path, world: path.write_bytes(data(world) if callable(data) else data)


def legacy_torch_save(world: Path) -> bytes:
    """torch.save's pre-zip layout: magic, protocol, sys info, then the object (here a payload)."""
    magic = 0x1950A86A20F9469CFC6C
    return (
        pickle.dumps(magic, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({}, protocol=2)
        + evil_pickle(world)
    )


def zipped(members: dict) -> Callable:
    def write(path: Path, world: Path) -> None:
        with zipfile.ZipFile(path, "w") as z:
            for name, data in members.items():
                z.writestr(name, data(world) if callable(data) else data)

    return write


def crc_damaged(path: Path, world: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
        z.writestr("net/data/0", bytes(range(256)) * 16)
        z.writestr("net/version", "3\n")
    data = bytearray(path.read_bytes())
    at = data.find(bytes(range(32)))
    data[at + 7] ^= 0xFF
    path.write_bytes(bytes(data))


def zip_bomb_record(path: Path, world: Path) -> None:
    """A TorchScript archive whose version record inflates to 70 MB (more than any record torch writes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
        z.writestr("net/version", b"3" + b" " * (70 << 20))


# ONNX, written as protobuf wire format by hand (the host reads it without onnx).
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_value(name: bytes, elem: int, dims: list) -> bytes:
    shape = b"".join(_field(1, _field(1, d) if isinstance(d, int) else _field(2, d)) for d in dims)
    tensor_type = _field(1, elem) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def onnx_model(inputs=((b"x", 1, [1, 3, 8, 8]),), outputs=((b"y", 1, [1, 10]),), external=False, opset=13) -> bytes:
    graph = _field(1, b"node")  # one node (its content is not read)
    if external:
        graph += _field(5, _field(8, b"w") + _field(14, 1))
    graph += b"".join(_field(11, onnx_value(*i)) for i in inputs)
    graph += b"".join(_field(12, onnx_value(*o)) for o in outputs)
    return _field(1, 8) + _field(2, b"pytorch") + _field(7, graph) + _field(8, _field(1, b"") + _field(2, opset))


# -- arrays -------------------------------------------------------------------------
def good(n: int = 20, shape=SHAPE, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal((n, *shape)).astype(dtype)


def npy(arr, **kw) -> Callable:
    def write(path: Path, world: Path) -> None:
        with open(path, "wb") as f:  # np.save(path) would add .npy to a name without it
            np.save(f, arr(world) if callable(arr) else arr, **kw)

    return write


def npz(**arrays) -> Callable:
    def write(path: Path, world: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **{k: v(world) if callable(v) else v for k, v in arrays.items()})

    return write


def npy_header(shape: tuple, descr: str = "<f4", version: tuple = (1, 0), data: bytes = b"") -> Callable:
    """An .npy whose header declares any shape, followed by a few bytes."""

    def write(path: Path, world: Path) -> None:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        with open(path, "wb") as f:
            if version == (3, 0):  # numpy writes 3.0 only for structured arrays; here, by hand
                text = repr(header).encode() + b" " * 10 + b"\n"
                f.write(b"\x93NUMPY\x03\x00" + struct.pack("<I", len(text)) + text)
            else:
                getattr(np.lib.format, f"write_array_header_{version[0]}_0")(f, header)
            f.write(data)

    return write


def npz_members(**members) -> Callable:
    """An npz (a zip) with members given as bytes or writers of .npy bytes."""

    def write(path: Path, world: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                if callable(data):
                    buf = io.BytesIO()
                    data(buf)
                    data = buf.getvalue()
                z.writestr(name, data)

    return write


def header_bytes(shape: tuple, descr: str = "<f4") -> Callable:
    def write(buf) -> None:
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})

    return write


def npz_bomb(path: Path, world: Path) -> None:
    """An npz whose one member declares a sane shape but inflates hugely."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 28, 3, 8, 8)})
        z.writestr("input.npy", buf.getvalue() + b"\x00" * (8 << 20))


def poisoned(value, n=20, where=(3, 1, 2, 2)) -> np.ndarray:
    arr = good(n)
    arr[where] = value
    return arr


def evil_object_array(world: Path) -> np.ndarray:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {world / MARKER}",))

    arr = np.empty(20, dtype=object)
    arr[:] = [Payload()] * 20
    return arr


# -- images -------------------------------------------------------------------------
def png_bytes(w: int = 8, h: int = 8, value: int = 100) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height with a tiny (invalid) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def image_folder(count: int = 12, bad: dict | None = None, classes: tuple = ("a", "b")) -> Callable:
    """A folder of class subfolders of small PNGs; bad: extra files {relative name: bytes or writer}."""

    def write(folder: Path, world: Path) -> None:
        for i in range(count):
            sub = folder / classes[i % len(classes)]
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{i}.png").write_bytes(png_bytes(value=10 * i))
        for name, data in (bad or {}).items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            if callable(data):
                data(folder / name, world)
            else:
                (folder / name).write_bytes(data)

    return write


def fifo(path: Path, world: Path) -> None:
    os.mkfifo(path)


def symlink_to(target: str) -> Callable:
    return lambda path, world: path.symlink_to(target.replace("{w}", str(world)))


def folder(path: Path, world: Path) -> None:
    path.mkdir()


# -- reports ------------------------------------------------------------------------
def report_dict(**changes) -> dict:
    """A passed report as convertctl writes it (schema 3), with changes."""
    from convertctl.report.model import Report

    base = Report(model={"path": "/m/net.pt", "input_shapes": {"input": [1, 3, 8, 8]}}, runtime="local", modes=["fp32"])
    base.status, base.out_dir = "passed", "/m/out"
    data = base.to_dict()
    data.update(changes)
    return data


def report_file(data: dict | Callable[[Path], dict] | str | bytes) -> Callable:
    def write(path: Path, world: Path) -> None:
        value = data(world) if callable(data) else data
        if isinstance(value, dict):
            value = json.dumps(value)
        path.write_bytes(value.encode() if isinstance(value, str) else value)

    return write


# Text that must be shown as text: rich markup, terminal escapes, Markdown/HTML.
HOSTILE_TEXT = {
    "markup-close": "[/]",
    "markup-style": "[bold red]pwn[/bold red]",
    "ansi-clear": "\x1b[2J\x1b[H",
    "ansi-title": "\x1b]0;owned\x07",
    "ansi-8bit-csi": "\x9b31m",
    "carriage-return": "ok\rFAKE",
    "newline-fake-line": "x\nPASSED: all good",
    "backspace": "abc\x08\x08\x08",
    "bidi-override": "\u202etxt.exe",
    "html-img": "<img src=x onerror=alert(1)>",
    "md-heading": "# Heading",
    "md-link": "[click](https://evil.example)",
    "md-image": "![x](https://evil.example/p.png)",
    "md-code-break": "``` `x` ```",
    "md-table-break": "a | b | c",
    "md-emphasis": "*bold* _it_",
    "md-math": "$x^2$",
    "zero-width": "a\u200bb",
}

# What must never reach the terminal raw, and never stay live in Markdown.
RAW_TERMINAL = ("\x1b", "\x9b", "\r", "\x08", "\x07", "\u202e", "\u200b")


@dataclass
class Case:
    """One input and the answer the README promises. args follow
    `run MODEL --input-shape 1,3,8,8 --out OUT` (command "run"), or the
    command alone; {w} is the world folder, {o} the --out folder."""

    id: str
    args: list = field(default_factory=list)
    code: int = 2
    says: tuple = ()  # each in the output (the one error line, or the rendering)
    files: dict = field(default_factory=dict)  # world name -> writer(path, world)
    toml: str | None = None
    shape: bool = True
    model: Callable = torchscript
    model_name: str = "net.pt"
    command: tuple = ("run",)
    env: dict = field(default_factory=dict)
    runtime: str = "local"
    check: Callable | None = None  # (output, world) -> None
    never: tuple = ()  # strings that must not appear in the output
    mutable: tuple = ()  # world-relative prefixes the command may change (a registry it cleans)
    proc: bool = False  # through the real CLI in a subprocess
    root: bool = False  # needs root (mount)


# == the table =====================================================================
def _r(**kw):
    return Case(**kw)


def flag_cases() -> list:
    """Every option of `run` with values it must refuse, by flag; each
    message names the flag (or the file the flag names)."""
    c = []
    bad_numbers = {
        "--samples": ["0", "-5", "10001", "abc", "1.5", "", "[/]", "1e3", "99999999999999999999999"],
        "--seed": ["-1", "4294967296", "x", "", "[/]"],
        "--latency-runs": ["-1", "10001", "many", ""],
        "--threads": ["0", "-4", "257", "four", "", "\x1b[31m4"],
        "--opset": ["0", "6", "21", "99", "eleven", "", "-11", "1e1"],
    }
    for flag, values in bad_numbers.items():
        for i, value in enumerate(values):
            c.append(_r(id=f"flag{flag}-{i}", args=[flag, value], says=(flag,)))
    choices = {
        "--layout": ["xyz", "NCHW", "", "[/]", "\x1b[2Jnhwc"],
        "--runtime": ["podman", "", "DOCKER", "[red]local[/]"],
        "--resize": ["crop", "", "stretch,crop"],
        "--int8-io": ["int4", "", "Float"],
        "--quant": ["int4", "", "fp32,fp16", "[/]", "FP16"],
    }
    for flag, values in choices.items():
        for i, value in enumerate(values):
            args = [flag, value] + (["-q", "int8"] if flag == "--int8-io" else [])
            c.append(_r(id=f"choice{flag}-{i}", args=args, says=(flag,)))
    per_mode = {
        "--atol": [
            "=0.1",
            "nan",
            "fp16=nan",
            "fp16=inf",
            "-1",
            "fp16=-0.001",
            "fp17=1",
            "fp16=",
            "fp16",
            "==1",
            "fp16=1=2",
            "1e400",
            "[/]=1",
        ],
        "--rtol": ["=0.1", "fp16=abc", "-inf", "int8=-1", "x=1"],
        "--max-accuracy-drop": ["=1", "-1", "int8=150", "101", "int8=nan", "fp16=inf", "int9=1", "int8="],
    }
    for flag, values in per_mode.items():
        for i, value in enumerate(values):
            c.append(_r(id=f"mode{flag}-{i}", args=[flag, value], says=(flag,)))
    c += [
        _r(
            id=f"cost-{i}",
            args=["-q", "int8", "--int8-float-layers", "auto", "--max-int8-latency-cost", v],
            says=("--max-int8-latency-cost",),
        )
        for i, v in enumerate(["nan%", "-5%", "inf%", "%", "1e400%", "abc", "-0.1", "nan", "10%%", "[/]%"])
    ]
    floats = {
        "--mean": ["abc", "0.5,nan", "", "inf,0,0", "1,x", "[/]"],
        "--std": ["0,1,1", "-1", "nan", "0.2,0.0,0.2", "x"],
    }
    for flag, values in floats.items():
        for i, value in enumerate(values):
            c.append(_r(id=f"floats{flag}-{i}", args=[flag, value], says=(flag,)))
    shapes = [
        "1,3,x",
        "1,0,8,8",
        "1,-3,8,8",
        "",
        ",",
        "1,3,20000,20000",
        "2," * 40 + "1",
        "9" * 400,
        "1.5,3",
        "[/]",
        "1 3 8 8",
        "\x1b[31m1,3",
    ]
    c += [
        _r(id=f"shape-{i}", args=["--input-shape", v], shape=False, says=("--input-shape",))
        for i, v in enumerate(shapes)
    ]
    inputs = [
        "x:1,3:int32:0..1e12",
        "x:1,3:int64:0..1e20",
        "x:1,3:int32:-3000000000..0",
        "x:1,3:float32:0..1e39",
        "x:1,3:float32:-1e400..0",
        "x:1,3:int64:5..1",
        "x:1,3:int64:0.5..3",
        "x:1,3:nan..1",
        "x:1,3:0..inf",
        "1x:1,3",
        "x y:1,3",
        "x:1,3:int8",
        "x:1,3:int64:int32",
        "x:1,3:0..1:0..2",
        "x",
        "x:1,3:a:b:c",
        "x:1,0",
        "x:1,3,20000,20000",
        "[/]:1,3",
        "x\x1b[2J:1,3",
        "x:1,3:..",
        "x:1,3:1..",
    ]
    c += [_r(id=f"input-{i}", args=["--input", v], shape=False, says=("--input",)) for i, v in enumerate(inputs)]
    c += [
        _r(id="input-and-shape", args=["--input", "x:1,3,8,8"], says=("--input", "--input-shape")),
        _r(
            id="input-twice",
            args=["--input", "x:1,3,8,8", "--input", "x:1,3,8,8"],
            shape=False,
            says=("--input x", "twice"),
        ),
        _r(id="arch-kwargs-text", args=["--arch", "m:f", "--arch-kwargs", "{oops"], says=("--arch-kwargs",)),
        _r(id="arch-kwargs-list", args=["--arch", "m:f", "--arch-kwargs", "[1, 2]"], says=("--arch-kwargs",)),
        _r(id="arch-kwargs-deep", args=["--arch", "m:f", "--arch-kwargs", "[" * 100000], says=("--arch-kwargs",)),
        _r(id="int8-float-layers-without-int8", args=["--int8-float-layers", "a,b"], says=("--int8-float-layers",)),
        _r(
            id="calib-without-int8",
            args=["--calib", "{w}/c.npy"],
            files={"c.npy": npy(good())},
            says=("--calib", "c.npy"),
        ),
        _r(id="unknown-flag", args=["--bogus"], says=("--bogus",)),
        _r(id="unknown-flag-markup", args=["--bogus[/]"], says=("--bogus",)),
        _r(id="flag-without-value", args=["--samples"], says=("--samples",)),
        _r(id="out-empty", args=["--out", ""], says=("--out",)),
        _r(id="out-blank", args=["--out", "   "], says=("--out",)),
        _r(
            id="out-is-a-file",
            args=["--out", "{w}/file"],
            files={"file": raw(b"precious")},
            says=("file", "not a directory"),
        ),
        _r(id="out-under-a-file", args=["--out", "{w}/file/sub"], files={"file": raw(b"precious")}, says=("file",)),
        _r(id="out-is-dev-null", args=["--out", "/dev/null"], says=("/dev/null",)),
        _r(id="export-image-unknown", args=["--export-image", "nope-1.0"], says=("nope-1.0",)),
        _r(id="converter-unknown", args=["--converter", "nope"], says=("nope",)),
        _r(id="converter-markup", args=["--converter", "[/]\x1b[2J"], says=("convert variant", "[/]"), never=("\x1b",)),
        _r(id="trust-model-local", args=["--trust-model"], says=("--trust-model",)),
        _r(id="ca-bundle-missing", args=["--ca-bundle", "{w}/none.pem"], says=("none.pem",)),
        _r(id="ca-bundle-fifo", args=["--ca-bundle", "{w}/p"], files={"p": fifo}, says=("p",)),
        _r(id="wheelhouse-missing", args=["--wheelhouse", "{w}/none"], says=("none",)),
        _r(id="wheelhouse-a-file", args=["--wheelhouse", "{w}/f"], files={"f": raw(b"x")}, says=("f",)),
        _r(id="code-missing", args=["--arch", "m:f", "--code", "{w}/none"], says=("none",)),
        _r(id="code-a-file", args=["--arch", "m:f", "--code", "{w}/f"], files={"f": raw(b"x")}, says=("f",)),
        _r(id="arch-not-module-callable", args=["--arch", "nocolon"], says=("--arch",)),
        _r(
            id="dynamic-batch-not-1",
            args=["--dynamic-batch", "--input-shape", "2,3,8,8"],
            shape=False,
            says=("--dynamic-batch",),
        ),
        _r(
            id="input-shape-and-model-onnx-mismatch",
            args=["--input-shape", "1,3,9,9"],
            shape=False,
            model=raw(onnx_model()),
            model_name="net.onnx",
            says=("net.onnx",),
        ),
        _r(
            id="opset-for-onnx-model",
            args=["--opset", "11"],
            shape=False,
            model=raw(onnx_model(opset=13)),
            model_name="net.onnx",
            says=("--opset 11", "net.onnx"),
        ),
        _r(
            id="budget-too-big",
            args=["--input-shape", "1,3,1024,1024", "--samples", "1000"],
            shape=False,
            says=("--samples",),
        ),
    ]
    return c


def array_cases() -> list:
    """Every data kind (npy, npz) in every role (--calib, --sample-inputs,
    --eval-data), with what makes it unusable; each message names the file."""
    roles = {
        "calib": (["-q", "int8", "--calib"], lambda arr: {"x": arr}),
        "samples": (["--sample-inputs"], lambda arr: {"input": arr}),
        "eval": (["--eval-data"], lambda arr: {"x": arr, "y": np.zeros(len(arr) if arr.ndim else 1, np.int64)}),
    }
    contents = {
        "nan": (poisoned(np.nan), "NaN"),
        "inf": (poisoned(np.inf), "infinite"),
        "float64-overflow": (np.full((20, *SHAPE), 1e300), "infinite"),
        "strings": (np.full((20, *SHAPE), "abc"), "strings"),
        "bytes": (np.full((20, *SHAPE), b"ab"), "byte strings"),
        "complex": (good().astype(np.complex64) * 1j, "complex"),
        "dates": (np.full((20, *SHAPE), np.datetime64("2020-01-01")), "dates"),
        "records": (np.zeros((20, *SHAPE), dtype=[("a", "<f4"), ("b", "<i4")]), "records"),
        "wrong-shape": (good(20, (3, 9, 9)), "shape"),
        "scalar": (np.float32(1.0), ""),
        "empty": (np.zeros((0, *SHAPE), np.float32), ""),
    }
    c = []
    for role, (flags, arrays) in roles.items():
        for kind, (arr, word) in contents.items():
            name = "d.npz"
            says = (name, word) if word else (name,)
            c.append(
                _r(id=f"{role}-npz-{kind}", args=[*flags, "{w}/" + name], files={name: npz(**arrays(arr))}, says=says)
            )
            if role != "eval":
                c.append(
                    _r(
                        id=f"{role}-npy-{kind}",
                        args=[*flags, "{w}/d.npy"],
                        files={"d.npy": npy(arr)},
                        says=("d.npy", word) if word else ("d.npy",),
                    )
                )
        files = {
            "pickled-payload": (npy(evil_object_array, allow_pickle=True), "d.npy", ("d.npy", "cannot read")),
            "pickled-payload-npz": (
                npz_members(**{"x.npy": lambda buf: np.save(buf, np.empty(1, object), allow_pickle=True)}),
                "d.npz",
                ("d.npz",),
            ),
            "truncated-npz": (
                lambda p, w, arrays=arrays: (npz(**arrays(good()))(p, w), p.write_bytes(p.read_bytes()[:300])),
                "d.npz",
                ("d.npz", "cannot read"),
            ),
            "truncated-npy": (
                lambda p, w: (npy(good())(p, w), p.write_bytes(p.read_bytes()[:200])),
                "d.npy",
                ("d.npy", "truncated"),
            ),
            "huge-header": (npy_header((10**12, 3, 8, 8)), "d.npy", ("d.npy", "declares")),
            "huge-header-npz": (
                npz_members(**{"x.npy": header_bytes((10**9, 3, 8, 8))}),
                "d.npz",
                ("d.npz", "declares"),
            ),
            "header-beyond-int64": (npy_header((2**62, 2**62)), "d.npy", ("d.npy",)),
            "negative-shape": (npy_header((-5, 3, 8, 8)), "d.npy", ("d.npy",)),
            "bad-descr": (npy_header((20, 3, 8, 8), descr="<zz"), "d.npy", ("d.npy", "cannot read")),
            "object-descr": (npy_header((20, 3, 8, 8), descr="|O"), "d.npy", ("d.npy", "cannot read")),
            "header-garbage": (raw(b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n"), "d.npy", ("d.npy", "cannot read")),
            "header-v3": (npy_header((20, 3, 8, 8), version=(3, 0)), "d.npy", ("d.npy",)),
            "header-v9": (raw(b"\x93NUMPY\x09\x00\x10\x00" + b" " * 16), "d.npy", ("d.npy", "cannot read")),
            "npz-bomb": (npz_bomb, "d.npz", ("d.npz",)),
            "npz-not-npy-member": (npz_members(**{"readme.txt": b"hello"}), "d.npz", ("d.npz",)),
            "zip-not-npz": (zipped({"a/b": b"x"}), "d.npz", ("d.npz",)),
            "random-bytes": (raw(seeded_bytes(64, 1)), "d.npz", ("d.npz", "cannot read")),
            "empty-file": (raw(b""), "d.npy", ("d.npy", "cannot read")),
            "text-file": (raw(b"1,2,3\n4,5,6\n"), "d.npy", ("d.npy", "cannot read")),
            "plain-pickle": (raw(evil_pickle), "d.npy", ("d.npy", "cannot read")),
            "fifo": (fifo, "d.npz", ("d.npz", "FIFO")),
            "dev-zero": (symlink_to("/dev/zero"), "d.npz", ("d.npz", "character device")),
            "missing": (None, "d.npz", ("d.npz", "not found")),
            "dangling-link": (symlink_to("{w}/nowhere"), "d.npz", ("d.npz", "not found")),
            "link-loop": (symlink_to("{w}/d.npz"), "d.npz", ("d.npz",)),
        }
        for kind, (writer, name, says) in files.items():
            if role == "eval" and kind in (
                "truncated-npy",
                "huge-header",
                "header-beyond-int64",
                "negative-shape",
                "bad-descr",
                "object-descr",
                "header-garbage",
                "header-v3",
                "header-v9",
                "empty-file",
                "text-file",
                "plain-pickle",
            ):
                name = name.replace(".npy", ".npz")
                says = tuple(s.replace(".npy", ".npz") for s in says)
            c.append(
                _r(id=f"{role}-{kind}", args=[*flags, "{w}/" + name], files={name: writer} if writer else {}, says=says)
            )
    # labels
    labels = {
        "huge-float": (np.full(20, 1e30, np.float32), ("d.npz", "label")),
        "float64-1e300": (np.full(20, 1e300), ("d.npz",)),
        "int-huge": (np.full(20, 2**40, np.int64), ("d.npz", "label")),
        "negative": (np.arange(20) - 5, ("d.npz", "negative")),
        "fraction": (np.linspace(0, 3, 20), ("d.npz", "fractions")),
        "nan": (np.full(20, np.nan), ("d.npz", "NaN")),
        "bool": (np.zeros(20, bool), ("d.npz", "booleans")),
        "strings": (np.array(["cat"] * 20), ("d.npz", "strings")),
        "short": (np.zeros(7, np.int64), ("d.npz", "7 labels")),
        "2d": (np.zeros((20, 2), np.int64), ("d.npz",)),
        "uint64-max": (np.full(20, 2**64 - 1, np.uint64), ("d.npz", "label")),
    }
    c += [
        _r(id=f"labels-{k}", args=["--eval-data", "{w}/d.npz"], files={"d.npz": npz(x=good(), y=y)}, says=says)
        for k, (y, says) in labels.items()
    ]
    c += [
        _r(
            id="eval-npz-no-y", args=["--eval-data", "{w}/d.npz"], files={"d.npz": npz(x=good())}, says=("d.npz", "'y'")
        ),
        _r(
            id="samples-missing-input",
            args=["--sample-inputs", "{w}/d.npz"],
            files={"d.npz": npz(a=good(), b=good())},
            says=("d.npz", "input"),
        ),
        _r(
            id="calib-too-few",
            args=["-q", "int8", "--calib", "{w}/d.npy"],
            files={"d.npy": npy(good(3))},
            says=("d.npy", "at least 10"),
        ),
        _r(
            id="samples-different-counts",
            args=["--input", "a:1,3", "--input", "b:1,3", "--sample-inputs", "{w}/d.npz"],
            shape=False,
            files={"d.npz": npz(a=good(5, (3,)), b=good(6, (3,)))},
            says=("d.npz", "different numbers"),
        ),
        _r(
            id="samples-int-out-of-range",
            args=["--input", "t:1,4:int64:0..9", "--sample-inputs", "{w}/d.npz"],
            shape=False,
            files={"d.npz": npz(t=np.full((5, 4), 50, np.int64))},
            says=("d.npz", "outside its range"),
        ),
    ]
    return c


def image_cases() -> list:
    """Image folders for --calib and --eval-data: damaged, hostile or empty images, named."""
    bad = {
        "truncated": (png_bytes()[:40], "x.png"),
        "random": (seeded_bytes(200, 2), "x.png"),
        "empty": (b"", "x.png"),
        "bomb": (png_declaring(100000, 100000), "x.png"),
        "huge-dims-bad-body": (png_declaring(1 << 30, 1), "x.png"),
        "zero-dims": (png_declaring(0, 0), "x.png"),
        "jpeg-header-only": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "x.jpg"),
        "gif-garbage": (b"GIF89a" + seeded_bytes(30, 3), "x.gif"),
        "bmp-header-lies": (
            b"BM"
            + struct.pack("<IHHI", 70, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, 1 << 20, 1 << 20, 1, 24, 0, 0, 0, 0, 0, 0),
            "x.bmp",
        ),
        "tiff-garbage": (b"II*\x00" + seeded_bytes(40, 4), "x.tif"),
        "text-named-png": (b"not an image at all", "x.png"),
        "webp-garbage": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + seeded_bytes(8, 5), "x.webp"),
    }
    c = []
    for role, flags, few in (("calib", ["-q", "int8", "--calib"], 2), ("eval", ["--eval-data"], 0)):
        for kind, (data, name) in bad.items():
            where = f"a/{name}"
            c.append(
                _r(
                    id=f"{role}-image-{kind}",
                    args=[*flags, "{w}/imgs"],
                    files={"imgs": image_folder(bad={where: data})},
                    says=("imgs", name),
                )
            )
        c += [
            _r(id=f"{role}-image-folder-empty", args=[*flags, "{w}/imgs"], files={"imgs": folder}, says=("imgs",)),
            _r(
                id=f"{role}-image-folder-only-text",
                args=[*flags, "{w}/imgs"],
                files={"imgs": image_folder(0, bad={"a/readme.txt": b"hi"})},
                says=("imgs",),
            ),
            # special files inside a folder are skipped, never opened: what is left is too little
            _r(
                id=f"{role}-image-fifo-inside",
                args=[*flags, "{w}/imgs"],
                files={"imgs": image_folder(few, bad={"a/p.png": fifo})},
                says=("imgs",),
            ),
            _r(
                id=f"{role}-image-link-to-dev-zero",
                args=[*flags, "{w}/imgs"],
                files={"imgs": image_folder(few, bad={"a/z.png": symlink_to("/dev/zero")})},
                says=("imgs",),
            ),
            _r(
                id=f"{role}-image-folder-link-loop",
                args=[*flags, "{w}/imgs"],
                files={"imgs": image_folder(few, bad={"a/loop": symlink_to("{w}/imgs")})},
                says=("imgs",),
            ),
            _r(
                id=f"{role}-image-shape-not-4d",
                args=["--input-shape", "1,3,8", *flags, "{w}/imgs"],
                shape=False,
                files={"imgs": image_folder()},
                says=("imgs", "4-D"),
            ),
            _r(
                id=f"{role}-image-five-channels",
                args=["--input-shape", "1,5,8,8", *flags, "{w}/imgs"],
                shape=False,
                files={"imgs": image_folder()},
                says=("channels",),
            ),
            _r(
                id=f"{role}-image-mean-wrong-count",
                args=["--mean", "0.5,0.5", *flags, "{w}/imgs"],
                files={"imgs": image_folder()},
                says=("--mean",),
            ),
        ]
    c.append(
        _r(
            id="calib-image-too-few",
            args=["-q", "int8", "--calib", "{w}/imgs"],
            files={"imgs": image_folder(3)},
            says=("imgs", "at least 10"),
        )
    )
    c.append(
        _r(
            id="eval-image-no-class-folders",
            args=["--eval-data", "{w}/imgs"],
            files={"imgs": image_folder(0, bad={"x.png": png_bytes()})},
            says=("imgs", "subfolder"),
        )
    )
    return c


def model_cases() -> list:
    """Model files: damaged, disguised, hostile (a payload inside), declaring impossible inputs."""
    evil = evil_pickle
    c = [
        _r(id="model-crc-damaged", model=crc_damaged, says=("net.pt", "CRC")),
        _r(
            id="model-truncated",
            model=lambda p, w: (torchscript(p, w), p.write_bytes(p.read_bytes()[:-200])),
            says=("net.pt",),
        ),
        _r(id="model-empty", model=raw(b""), says=("net.pt",)),
        *[_r(id=f"model-random-{seed}", model=raw(seeded_bytes(512, seed)), says=("net.pt",)) for seed in range(12)],
        _r(
            id="model-pickle-announcing-2-62-bytes",
            model=raw(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x"),
            says=("net.pt",),
        ),
        _r(
            id="model-pickle-long4-huge",
            model=raw(b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"x"),
            says=("net.pt",),
        ),
        _r(id="model-text", model=raw(b"def forward(x): return x\n"), says=("net.pt",)),
        _r(id="model-zip-not-torch", model=zipped({"a.txt": b"x"}), says=("net.pt", "not one torch wrote")),
        _r(id="model-missing", model=lambda p, w: None, says=("net.pt", "no such file")),
        _r(id="model-folder", model=folder, says=("net.pt",)),
        _r(id="model-fifo", model=fifo, says=("net.pt", "FIFO")),
        _r(id="model-dev-zero", model=symlink_to("/dev/zero"), says=("net.pt", "device")),
        _r(id="model-dangling-link", model=symlink_to("{w}/nowhere"), says=("net.pt",)),
        _r(id="model-zip-bomb-record", model=zip_bomb_record, says=("net.pt",)),
        _r(id="model-ts-payload-pkl", model=ts_member("net/data.pkl", evil), says=("net.pt", "posix.system")),
        _r(
            id="model-ts-payload-constants",
            model=ts_member("net/constants.pkl", evil),
            says=("net.pt", "net/constants.pkl"),
        ),
        _r(
            id="model-ts-payload-proto4",
            model=ts_member("net/extra.pkl", lambda w: evil_pickle(w, 4)),
            says=("net.pt", "system"),
        ),
        _r(
            id="model-ts-pkl-garbage",
            model=ts_member("net/data.pkl", lambda w: b"\x80\x02garbage"),
            says=("net.pt", "net/data.pkl"),
        ),
        _r(
            id="model-torch-save-payload", model=zipped({"net/data.pkl": evil, "net/version": b"3\n"}), says=("net.pt",)
        ),
        _r(
            id="model-torch-save-payload-trusted-local",
            args=["--trust-model"],
            model=zipped({"net/data.pkl": evil, "net/version": b"3\n"}),
            says=("--trust-model",),
        ),
        _r(
            id="model-torch-save-garbage-pkl",
            model=zipped({"net/data.pkl": b"\x80\x02\xff\xff", "net/version": b"3\n"}),
            says=("net.pt", "data.pkl"),
        ),
        _r(id="model-legacy-payload", model=raw(legacy_torch_save), says=("net.pt",)),
        _r(id="model-plain-pickle-payload", model=raw(evil), says=("net.pt",)),
        _r(
            id="pt2-payload-sample-inputs",
            model=pt2({"m/data/sample_inputs/model.pt": lambda w: torch_save_bytes(evil_pickle(w))}),
            model_name="net.pt2",
            says=("net.pt2", "posix.system"),
        ),
        _r(
            id="pt2-payload-constant",
            model=pt2({"m/data/constants/c0": evil}),
            model_name="net.pt2",
            says=("net.pt2", "m/data/constants/c0"),
        ),
        _r(
            id="pt2-payload-weight",
            model=pt2({"m/data/weights/weight_1": evil}),
            model_name="net.pt2",
            says=("net.pt2",),
        ),
        _r(
            id="pt2-payload-nested-zip",
            model=pt2({"m/data/x.pt": lambda w: torch_save_bytes(torch_save_bytes(evil_pickle(w)))}),
            model_name="net.pt2",
            says=("net.pt2", "system"),
        ),
        _r(
            id="pt2-json-garbage",
            model=pt2(model_json="{not json"),
            model_name="net.pt2",
            says=("net.pt2", "model.json"),
        ),
        _r(id="pt2-json-list", model=pt2(model_json="[1, 2]"), model_name="net.pt2", says=("net.pt2", "model.json")),
        _r(
            id="pt2-json-deep", model=pt2(model_json="[" * 200000), model_name="net.pt2", says=("net.pt2", "model.json")
        ),
        _r(
            id="pt2-json-graph-not-table",
            model=pt2(model_json=ep_json([1, 2])),
            model_name="net.pt2",
            says=("net.pt2", "model.json"),
        ),
        _r(
            id="pt2-json-specs-not-list",
            model=pt2(model_json=ep_json({"graph": {}, "signature": {"input_specs": 5}})),
            model_name="net.pt2",
            says=("net.pt2", "model.json"),
        ),
        _r(
            id="pt2-json-name-not-text",
            model=pt2(
                model_json=ep_json(
                    {"graph": {}, "signature": {"input_specs": [{"user_input": {"arg": {"as_tensor": {"name": [1]}}}}]}}
                )
            ),
            model_name="net.pt2",
            says=("net.pt2",),
        ),
        _r(
            id="pt2-json-size-text",
            model=pt2(model_json=ep_inputs(("x", 7, ["a", {"as_int": "big"}]))),
            model_name="net.pt2",
            says=("net.pt2",),
        ),
        _r(
            id="pt2-json-size-negative",
            model=pt2(model_json=ep_inputs(("x", 7, [1, -3, 8, 8]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-json-size-bool",
            model=pt2(model_json=ep_inputs(("x", 7, [True, 3]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-declares-huge-input",
            model=pt2(model_json=ep_inputs(("x", 7, [1, 3, 1 << 20, 1 << 20]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2", "values per sample"),
        ),
        _r(
            id="pt2-declares-10e30-input",
            model=pt2(model_json=ep_inputs(("x", 7, [10**30]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-declares-zero-dim",
            model=pt2(model_json=ep_inputs(("x", 7, [1, 0, 8]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-declares-unknown-dtype",
            model=pt2(model_json=ep_inputs(("x", 99, [1, 3]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-declares-dtype-list",
            model=pt2(model_json=ep_inputs(("x", [7], [1, 3]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
        ),
        _r(
            id="pt2-declared-name-escape",
            args=["--input-shape", "1,4"],
            model=pt2(model_json=ep_inputs(("x\x1b[2J", 7, [1, 3]))),
            model_name="net.pt2",
            shape=False,
            says=("net.pt2",),
            never=("\x1b[2J",),
        ),
        _r(id="onnx-garbage", model=raw(b"\x08\x07garbage\xff\xff"), model_name="net.onnx", says=("net.onnx",)),
        _r(id="onnx-truncated-varint", model=raw(b"\x08\xff\xff\xff"), model_name="net.onnx", says=("net.onnx",)),
        _r(id="onnx-field-past-end", model=raw(b"\x3a\xff\x7f\x00"), model_name="net.onnx", says=("net.onnx",)),
        _r(id="onnx-no-graph", model=raw(_field(1, 8)), model_name="net.onnx", says=("net.onnx",)),
        _r(
            id="onnx-no-inputs",
            model=raw(onnx_model(inputs=())),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "without inputs"),
        ),
        _r(
            id="onnx-external-data",
            model=raw(onnx_model(external=True)),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "external"),
        ),
        _r(
            id="onnx-huge-dims",
            model=raw(onnx_model(inputs=((b"x", 1, [1, 3, 1 << 40, 1 << 40]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "values per sample"),
        ),
        _r(
            id="onnx-negative-dim",
            model=raw(onnx_model(inputs=((b"x", 1, [1, -3, 8, 8]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx",),
        ),
        _r(
            id="onnx-zero-dim",
            model=raw(onnx_model(inputs=((b"x", 1, [1, 0, 8, 8]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx",),
        ),
        _r(
            id="onnx-free-inner-dim",
            model=raw(onnx_model(inputs=((b"x", 1, [1, b"c", 8, 8]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "free dimension"),
        ),
        _r(
            id="onnx-name-not-utf8",
            model=raw(onnx_model(inputs=((b"\xff\xfe", 1, [1, 3]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx",),
        ),
        _r(
            id="onnx-string-input",
            model=raw(onnx_model(inputs=((b"x", 8, [1, 3]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx",),
        ),
        _r(
            id="onnx-name-escape",
            model=raw(onnx_model(inputs=((b"x\x1b]0;t\x07", 8, [1, 3]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx",),
            never=("\x1b]0;",),
        ),
        _r(
            id="onnx-name-markup",
            model=raw(onnx_model(inputs=((b"[/]", 8, [1, 3]),))),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "[/]"),
        ),
        _r(
            id="onnx-wrong-input-count",
            args=["--input-shape", "1,3,8,8", "--input-shape", "1,3"],
            model=raw(onnx_model()),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "1 input"),
        ),
        _r(
            id="onnx-named-input-wrong",
            args=["--input", "other:1,3,8,8"],
            model=raw(onnx_model()),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "other"),
        ),
        _r(
            id="onnx-dtype-mismatch",
            args=["--input", "x:1,3,8,8:int64"],
            model=raw(onnx_model()),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "int64"),
        ),
        _r(
            id="onnx-dynamic-batch-fixed",
            args=["--dynamic-batch"],
            model=raw(onnx_model()),
            model_name="net.onnx",
            shape=False,
            says=("net.onnx", "--dynamic-batch"),
        ),
    ]
    # Names a user might give a model: shown as text in every message.
    for key, text in HOSTILE_TEXT.items():
        if "\n" in text or "\r" in text or "/" in text:
            continue  # not a file name on this file system (or not one folder)
        c.append(
            _r(id=f"model-named-{key}", model=raw(b"junk"), model_name=f"m{text}.pt", says=("m",), never=RAW_TERMINAL)
        )
    return c


def toml_cases() -> list:
    """convertctl.toml next to the model: every key with a value of the wrong
    kind, syntax errors, code keys (a payload named), special files."""
    from convertctl.config.options import FILE_KEYS

    c = []
    wrong = {
        "bool": "true",
        "text": '"[/]\\u001b[2J"',
        "table": "{ a = 1 }",
        "list": "[[1], [2]]",
        "nan": "nan",
        "neg": "-1",
        "date": "1979-05-27",
    }
    for key in sorted(FILE_KEYS):
        if key in ("arch", "arch_kwargs", "code"):
            continue  # code keys: below
        for kind, value in wrong.items():
            c.append(_r(id=f"toml-{key}-{kind}", toml=f"{key} = {value}", says=("convertctl.toml", key), code=2))
    # values that are right in type: only some keys would accept them; drop the cases that pass
    c = [x for x in c if not _accepted(x)]
    c += [
        _r(id="toml-syntax", toml="quant = [fp32", says=("convertctl.toml", "not valid TOML")),
        _r(id="toml-duplicate-key", toml="opset = 11\nopset = 12", says=("convertctl.toml", "not valid TOML")),
        _r(id="toml-deep-nesting", toml="a = " + "[" * 5000, says=("convertctl.toml",)),
        _r(id="toml-not-utf8", toml="\udcff", says=("convertctl.toml",)),
        _r(id="toml-huge", toml="# " + "x" * (2 << 20), says=("convertctl.toml", "MB")),
        _r(id="toml-unknown-key-markup", toml='"[/]" = 1', says=("convertctl.toml", "unknown")),
        _r(
            id="toml-unknown-key-escape", toml='"a\\u001b[2J" = 1', says=("convertctl.toml", "unknown"), never=("\x1b",)
        ),
        _r(
            id="toml-arch-payload",
            toml='arch = "os:system"\narch_kwargs = { command = "touch PWNED" }',
            says=("convertctl.toml", "arch"),
        ),
        _r(
            id="toml-arch-kwargs-alone",
            toml='arch_kwargs = { command = "touch PWNED" }',
            says=("convertctl.toml", "arch_kwargs"),
        ),
        _r(id="toml-code-folder", toml='code = "/"', says=("convertctl.toml", "code")),
        _r(id="toml-fifo", files={"convertctl.toml": fifo}, says=("convertctl.toml", "FIFO")),
        _r(id="toml-folder", files={"convertctl.toml": folder}, says=("convertctl.toml",)),
        _r(id="toml-dev-zero", files={"convertctl.toml": symlink_to("/dev/zero")}, says=("convertctl.toml", "device")),
        _r(id="config-missing", args=["--config", "{w}/none.toml"], says=("--config", "none.toml")),
        _r(id="config-fifo", args=["--config", "{w}/c.toml"], files={"c.toml": fifo}, says=("c.toml", "FIFO")),
        _r(id="config-folder", args=["--config", "{w}/d"], files={"d": folder}, says=("d",)),
        _r(id="toml-tolerance-unknown-mode", toml="[tolerance.fp17]\natol = 1", says=("tolerance.fp17",)),
        _r(id="toml-tolerance-atol-nan", toml="[tolerance.fp16]\natol = nan", says=("tolerance.fp16.atol",)),
        _r(id="toml-tolerance-unknown-key", toml="[tolerance.fp16]\nwhat = 1", says=("tolerance.fp16",)),
        _r(id="toml-budget-mode-unknown", toml="[max_accuracy_drop]\nint9 = 1", says=("max_accuracy_drop",)),
        _r(id="toml-budget-inf", toml="[max_accuracy_drop]\nint8 = inf", says=("max_accuracy_drop.int8",)),
        _r(id="toml-calib-relative-missing", toml='calib = "nowhere/"\nquant = ["int8"]', says=("nowhere",)),
        _r(
            id="toml-shapes-huge",
            toml='input_shape = ["1,3,20000,20000"]',
            shape=False,
            says=("convertctl.toml", "input_shape"),
        ),
        _r(id="toml-quant-unknown", toml='quant = ["int4"]', says=("convertctl.toml", "quant")),
        _r(id="toml-input-range-int32", toml='input = ["x:1,3:int32:0..1e12"]', shape=False, says=("--input",)),
    ]
    return c


def _accepted(case: Case) -> bool:
    """Whether the settings schema takes this key = value (then it is no refusal case)."""
    from convertctl.config import settings
    from convertctl.errors import UsageError

    if sys_version_toml() is None:
        return False
    try:
        values = sys_version_toml().loads(case.toml)
        settings.validate(settings.file_values(values, "convertctl.toml"), "convertctl.toml")
    except (UsageError, ValueError):
        return False
    return True


def sys_version_toml():
    import sys

    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli

    return tomli


def hostile_report(text: str, failed: bool = False) -> dict:
    """A report every string of which (paths, names, errors, log lines,
    notices, layer names) holds the hostile text."""
    t = text
    art = {
        "mode": "fp32",
        "status": "ok",
        "variant": f"v{t}",
        "file": "a.tflite",
        "size_bytes": 2048,
        "inputs": [{"name": f"in{t}", "dtype": "float32", "shape": [1, 3], "scale": 0.0, "zero_point": 0}],
        "outputs": [{"name": f"out{t}", "dtype": "int8", "shape": [1, 10], "scale": 0.5, "zero_point": 1}],
        "ops": {"total": 3, "transposes": 0, "flex_ops": [f"Flex{t}"]},
        "io": "int8",
        "latency": {
            "runtime": f"litert{t}",
            "cpu_count": 2,
            "configs": [{"xnnpack": True, "threads": 4, "median_ms": 1.0, "p90_ms": 1.2, "runs": 5}],
            "cached": True,
            "measured_at": f"when{t}",
        },
        "layer_errors": {
            "metric": "rmse/scale",
            "samples": 16,
            "total": 1,
            "layers": [{"name": f"layer{t}", "op": f"CONV{t}", "rmse_scale": 0.5, "max_abs_error": 0.1, "scale": 0.02}],
        },
        "selective": {
            "requested": "auto",
            "float_layers": [f"layer{t}"],
            "target": 90.0,
            "met": True,
            "set": "eval",
            "samples": 100,
            "stopped": f"why{t}",
            "chosen": {"file": "k1", "float_layers": 1, "accuracy": 91.0, "size_bytes": 1000},
            "curve": [{"file": "k1", "float_layers": 1, "accuracy": 91.0, "size_bytes": 1000, "latency_ms": 1.0}],
            "latency_runtime": f"rt{t}",
        },
    }
    data = report_dict(
        model={"path": f"/m/{t}.pt", "input_shapes": {f"in{t}": [1, 3]}},
        notices=[f"note {t}"],
        ladder=[
            {"stage": "export", "variant": f"ex{t}", "status": "used", "purpose": f"p{t}", "seconds": 1.0},
            {
                "stage": "convert",
                "variant": f"cv{t}",
                "status": "failed",
                "failed_stage": "convert",
                "error": f"err{t}",
                "seconds": 1.0,
                "modes": {"fp32": f"m{t}"},
            },
        ],
        stages=[
            {
                "stage": "convert",
                "variant": f"cv{t}",
                "work": f"convert/cv{t}",
                "mode": None,
                "status": "failed",
                "log_tail": [f"log {t}", f"```{t}"],
                "cached": False,
            }
        ],
        checks=[
            {
                "stage": "onnx",
                "mode": None,
                "status": "passed",
                "variant": f"ex{t}",
                "outputs": [{"name": f"o{t}", "max_abs": 0.1, "cosine": 0.99, "samples": 8}],
                "tolerance": {"atol": 0.1},
            }
        ],
        artifacts=[art],
        stale=[{"name": f"old{t}.tflite", "moved_to": f"/m/out/.convertctl/previous/{t}/old.tflite"}],
        accuracy={
            "samples": 100,
            "set": "eval",
            "pytorch": 90.0,
            "modes": {f"fp32{t}": {"accuracy": 89.0, "drop": 1.0, "max_drop": 2.0, "status": "passed"}},
        },
        runtime=f"local{t}",
        modes=[f"fp32{t}"],
    )
    if failed:
        data.update(status="failed", exit_code=3, failure=f"failure {t}", run_dir=f"/m/run{t}")
    return data


def markdown_is_inert(text: str):
    """A check of `report show --markdown`: rendered by a CommonMark parser
    (with GitHub's tables), the hostile text makes no HTML, link, image,
    heading or emphasis of its own, and is still there to read."""

    def check(output: str, world: Path) -> None:
        from markdown_it import MarkdownIt

        html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(output)
        assert "<img" not in html and "<a " not in html and "<h1" not in html, html[:2000]
        assert html.count("<h2>") == 1, "one heading of convertctl's own"
        for tag in ("<em>", "<strong>", "<s>", "<del>"):
            assert html.count(tag) <= output.count("**") // 2 if tag == "<strong>" else html.count(tag) == 0, (
                tag,
                html[:3000],
            )
        rows = [ln for ln in output.splitlines() if ln.startswith("| ") and "---" not in ln]
        cells = {ln.replace("\\|", "").count("|") for ln in rows[:1]}
        assert cells == {5}, f"the table's first row keeps its 4 cells: {rows[:1]}"
        for raw_char in RAW_TERMINAL:
            assert raw_char not in output

    return check


def report_cases() -> list:
    c = []
    for key, text in HOSTILE_TEXT.items():
        for failed in (False, True):
            name = f"report-{key}" + ("-failed" if failed else "")
            files = {"r.json": report_file(hostile_report(text, failed))}
            shown = ("pwn[/bold red]",) if "[bold" in text else ()  # the markup as text, not as a style
            c.append(
                _r(
                    id=f"{name}-terminal",
                    command=("report", "show"),
                    args=["{w}/r.json"],
                    files=files,
                    code=0,
                    says=("convertctl", *shown),
                    never=RAW_TERMINAL,
                )
            )
            c.append(
                _r(
                    id=f"{name}-markdown",
                    command=("report", "show"),
                    args=["{w}/r.json", "--markdown"],
                    files=files,
                    code=0,
                    says=("## convertctl",),
                    check=markdown_is_inert(text),
                )
            )
    bad = {
        "not-json": (b"{oops", "not a readable report"),
        "not-utf8": (b"\xff\xfe{}", "not a readable report"),
        "deep": (b"[" * 100000, "not a readable report"),
        "list": (b"[1, 2]", "not a convertctl report"),
        "no-schema": (b"{}", "not a convertctl report"),
        "old-version": (json.dumps(report_dict(schema_version=1)).encode(), "schema version 1"),
        "version-text": (json.dumps(report_dict(schema_version="3")).encode(), "schema version"),
        "model-list": (json.dumps(report_dict(model=[1])).encode(), "model"),
        "modes-text": (json.dumps(report_dict(modes="fp32")).encode(), "modes"),
        "checks-of-numbers": (json.dumps(report_dict(checks=[1, 2])).encode(), "not a valid convertctl report"),
        "ladder-of-text": (json.dumps(report_dict(ladder=["x"])).encode(), "not a valid convertctl report"),
        "artifact-no-mode": (
            json.dumps(report_dict(artifacts=[{"status": "ok"}])).encode(),
            "not a valid convertctl report",
        ),
        "latency-configs-text": (
            json.dumps(report_dict(artifacts=[{"mode": "fp32", "status": "ok", "latency": {"configs": "x"}}])).encode(),
            "not a valid convertctl report",
        ),
        "accuracy-wrong": (
            json.dumps(report_dict(accuracy={"samples": "x"})).encode(),
            "not a valid convertctl report",
        ),
        "stale-no-moved": (json.dumps(report_dict(stale=[{"name": "x"}])).encode(), "not a valid convertctl report"),
        "huge-int": (
            b'{"schema": "convertctl.report", "schema_version": ' + b"9" * 5000 + b"}",
            "not a readable report",
        ),
    }
    for key, (data, word) in bad.items():
        for md in ([], ["--markdown"]):
            c.append(
                _r(
                    id=f"report-bad-{key}{'-md' if md else ''}",
                    command=("report", "show"),
                    args=["{w}/r.json", *md],
                    files={"r.json": raw(data)},
                    says=("r.json", word),
                )
            )
    c += [
        _r(
            id="report-fifo",
            command=("report", "show"),
            args=["{w}/r.json"],
            files={"r.json": fifo},
            says=("r.json", "FIFO"),
        ),
        _r(
            id="report-dev-zero",
            command=("report", "show"),
            args=["{w}/r.json"],
            files={"r.json": symlink_to("/dev/zero")},
            says=("r.json", "device"),
        ),
        _r(id="report-folder", command=("report", "show"), args=["{w}/r"], files={"r": folder}, says=("r",)),
        _r(id="report-missing", command=("report", "show"), args=["{w}/none.json"], says=("none.json", "not found")),
        _r(id="verify-fifo", command=("verify",), args=["{w}/r.json"], files={"r.json": fifo}, says=("r.json", "FIFO")),
        _r(
            id="verify-not-json",
            command=("verify",),
            args=["{w}/r.json"],
            files={"r.json": raw(b"nope")},
            says=("r.json",),
        ),
        _r(
            id="verify-no-manifest",
            command=("verify",),
            args=["{w}/r.json"],
            files={"r.json": report_file(report_dict())},
            says=("r.json", "manifest"),
        ),
    ]
    manifest = {
        "options": {"model": "/m/net.pt", "quant": ["fp32"]},
        "outputs": {"net_fp32.tflite": "0" * 64},
        "inputs": {},
    }
    verify_bad = {
        "output-dotdot": ({**manifest, "outputs": {"../escape": "0" * 64}}, ("r.json", "leaves its folder")),
        "output-absolute": ({**manifest, "outputs": {"/etc/passwd": "0" * 64}}, ("r.json", "/etc/passwd")),
        "output-nested": ({**manifest, "outputs": {"a/b.tflite": "0" * 64}}, ("r.json", "a/b.tflite")),
        "outputs-list": ({**manifest, "outputs": ["x"]}, ("r.json", "manifest")),
        "hash-not-text": ({**manifest, "outputs": {"x.tflite": 5}}, ("r.json", "x.tflite")),
        "arch-payload": (
            {
                **manifest,
                "options": {**manifest["options"], "arch": "os:system", "arch_kwargs": {"command": "touch PWNED"}},
            },
            ("r.json", "arch", "--trust-config"),
        ),
        "trust-model": (
            {**manifest, "options": {**manifest["options"], "trust_model": True}},
            ("r.json", "trust_model"),
        ),
        "code-folder": ({**manifest, "options": {**manifest["options"], "code": "/"}}, ("r.json", "code")),
    }
    for key, (m, says) in verify_bad.items():
        c.append(
            _r(
                id=f"verify-{key}",
                command=("verify",),
                args=["{w}/r.json"],
                files={"r.json": report_file(report_dict(manifest=m))},
                says=says,
            )
        )
    # inputs the report names that are no regular files: named, never read (a FIFO would hang the hash)
    for key, writer in (("fifo", fifo), ("dev-zero", symlink_to("/dev/zero"))):
        m = {**manifest, "inputs": {"model": {"path": "{w}/in", "sha256": "0" * 64}}}
        c.append(
            _r(
                id=f"verify-input-{key}",
                command=("verify",),
                args=["{w}/r.json"],
                files={
                    "in": writer,
                    "r.json": report_file(
                        lambda w, m=m: report_dict(manifest=json.loads(json.dumps(m).replace("{w}", str(w))))
                    ),
                },
                code=4,
                says=("not a regular file",),
            )
        )
    return c


def command_cases() -> list:
    """Ages, scopes and the other commands."""
    c = []
    ages = ["-5d", "-1", "nan", "inf", "-inf", "", "5x", "1e400d", "d", "[/]", "\x1b[2J1d", "nand"]
    for i, age in enumerate(ages):
        c.append(
            _r(
                id=f"cache-prune-age-{i}",
                command=("cache", "prune"),
                args=["--older-than", age],
                says=("--older-than",),
                never=("\x1b[2J",),
            )
        )
        c.append(
            _r(
                id=f"runs-prune-age-{i}",
                command=("runs", "prune"),
                args=["--older-than", age],
                says=("--older-than",),
                never=("\x1b[2J",),
            )
        )
    c += [
        _r(id="cache-prune-no-scope", command=("cache", "prune"), says=("--older-than", "--all")),
        _r(
            id="cache-prune-both-scopes",
            command=("cache", "prune"),
            args=["--all", "--older-than", "1d"],
            says=("--older-than", "--all"),
        ),
        _r(
            id="cache-prune-dry-no-scope",
            command=("cache", "prune"),
            args=["--dry-run"],
            says=("--older-than", "--all"),
        ),
        _r(id="cache-prune-zero-ok", command=("cache", "prune"), args=["--older-than", "0"], code=0, says=("removed",)),
        _r(
            id="cache-prune-all-ok",
            command=("cache", "prune"),
            args=["--all", "--dry-run"],
            code=0,
            says=("would remove",),
        ),
        _r(
            id="cache-dir-is-a-file-list",
            command=("cache", "list"),
            env={"CONVERTCTL_CACHE_DIR": "{w}/cachefile"},
            files={"cachefile": raw(b"x")},
            code=0,
            says=("stage cache",),
        ),
        _r(
            id="cache-dir-is-a-file-prune",
            command=("cache", "prune"),
            args=["--all"],
            env={"CONVERTCTL_CACHE_DIR": "{w}/cachefile"},
            files={"cachefile": raw(b"x")},
            code=0,
            says=("removed",),
        ),
        _r(
            id="envs-list-cache-file",
            command=("envs", "list"),
            env={"CONVERTCTL_CACHE_DIR": "{w}/cachefile", "CONVERTCTL_HOME": "{w}/store"},
            files={"cachefile": raw(b"x")},
            code=0,
            says=("stage cache",),
        ),
        _r(
            id="example-bad-name",
            command=("example",),
            args=["{w}/m.pt", "--name", "[/]\x1b[2J"],
            says=("--name",),
            never=("\x1b[2J",),
        ),
        _r(
            id="example-bad-shape",
            command=("example",),
            args=["{w}/m.pt", "--input-shape", "1,x"],
            says=("--input-shape",),
        ),
        _r(id="images-build-bad-stage", command=("images", "build"), args=["--stage", "[/]"], says=("--stage",)),
        _r(id="no-such-command", command=("frobnicate",), says=("frobnicate",)),
    ]
    # crafted cache entries and registries: listed as text, nothing outside removed
    for key, text in HOSTILE_TEXT.items():
        shown = ("pwn[/bold red]",) if "[bold" in text else ()
        c.append(
            _r(
                id=f"cache-list-entry-{key}",
                command=("cache", "list"),
                env={"CONVERTCTL_CACHE_DIR": "{w}/cache"},
                files={"cache": cache_entry(text)},
                code=0,
                says=("1 entries", *shown),
                never=RAW_TERMINAL,
            )
        )
    c += [
        _r(
            id="runs-prune-registry-points-outside",
            command=("runs", "prune"),
            args=["--older-than", "0"],
            env={"CONVERTCTL_CACHE_DIR": "{w}/cache"},
            files={"victim": victim_folder, "cache": registry_note("{w}/victim")},
            code=0,
            says=("removed 0",),
            check=victim_intact,
            mutable=("cache/failed-runs",),
        ),
        _r(
            id="runs-prune-registry-garbage",
            command=("runs", "prune"),
            args=["--older-than", "0"],
            env={"CONVERTCTL_CACHE_DIR": "{w}/cache"},
            files={"cache": registry_raw(b"\xff[")},
            code=0,
            says=("removed 0",),
            mutable=("cache/failed-runs",),
        ),
        _r(
            id="runs-prune-out-not-runs",
            command=("runs", "prune"),
            args=["--older-than", "0", "--out", "{w}/victim"],
            files={"victim": victim_folder},
            code=0,
            says=("removed 0",),
            check=victim_intact,
        ),
    ]
    return c


def cache_entry(text: str) -> Callable:
    def write(root: Path, world: Path) -> None:
        key = "a" * 64
        entry = root / "stages" / key
        (entry / "files").mkdir(parents=True)
        (entry / "entry.json").write_text(
            json.dumps(
                {
                    "format": 1,
                    "key": key,
                    "files": {},
                    "result": {},
                    "stage": f"export{text}",
                    "variant": f"v{text}",
                    "mode": f"m{text}",
                    "seconds": 1.0,
                }
            )
        )

    return write


def victim_folder(path: Path, world: Path) -> None:
    (path / ".convertctl" / "runs" / "x").mkdir(parents=True)
    (path / "precious.txt").write_text("keep me")
    (path / ".convertctl" / "runs" / "x" / "data").write_text("keep me too")


def victim_intact(output: str, world: Path) -> None:
    assert (world / "victim" / "precious.txt").read_text() == "keep me"
    assert (world / "victim" / ".convertctl" / "runs" / "x" / "data").is_file()


def registry_note(target: str) -> Callable:
    def write(root: Path, world: Path) -> None:
        (root / "failed-runs").mkdir(parents=True)
        note = {"path": target.replace("{w}", str(world)), "token": "forged", "created": 0}
        (root / "failed-runs" / "0123.json").write_text(json.dumps(note))

    return write


def registry_raw(data: bytes) -> Callable:
    def write(root: Path, world: Path) -> None:
        (root / "failed-runs").mkdir(parents=True)
        (root / "failed-runs" / "0123.json").write_bytes(data)

    return write


def path_cases() -> list:
    """Paths with hostile names: named in messages as text."""
    c = []
    for key, text in HOSTILE_TEXT.items():
        if "/" in text or "\n" in text:
            continue
        c.append(
            _r(
                id=f"out-named-{key}",
                args=["--out", "{w}/f" + text],
                files={"f" + text: raw(b"x")},
                says=("not a directory",),
                never=RAW_TERMINAL,
            )
        )
        c.append(
            _r(
                id=f"calib-named-{key}",
                args=["-q", "int8", "--calib", "{w}/c" + text],
                files={"c" + text: npy(good(3))},
                says=("at least 10",),
                never=RAW_TERMINAL,
            )
        )
    return c


def all_cases() -> list:
    cases = (
        flag_cases()
        + array_cases()
        + image_cases()
        + model_cases()
        + toml_cases()
        + report_cases()
        + command_cases()
        + path_cases()
    )
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    return cases
