"""Model formats told apart on the host, without torch or onnx: archives
laid out as torch writes them, pickles read by their opcodes only, ONNX read
from its protobuf; each refusal names the file and what to do."""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from convertctl.config.catalog import load_catalog
from convertctl.errors import UsageError
from convertctl.inputs import onnxinfo
from convertctl.inputs.modelfile import read_model
from convertctl.inputs.modelflags import check_format, check_model_flags, load_fields
from convertctl.inputs.picklescan import is_safe_global, pickle_globals

# What torch 2.13's torch.save(nn.Linear(2, 3).state_dict()) pickles (its
# data.pkl, protocol 2): an OrderedDict of tensors rebuilt by
# torch._utils._rebuild_tensor_v2 from FloatStorage.
STATE_DICT_PKL = (
    b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x06\x00\x00\x00weightq\x02ctorch._utils\n"
    b"_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000"
    b"q\x06X\x03\x00\x00\x00cpuq\x07K\x06tq\x08QK\x00K\x03K\x02\x86q\tK\x02K\x01\x86q\n\x89h\x00)Rq\x0btq\x0c"
    b"Rq\rX\x04\x00\x00\x00biasq\x0eh\x03((h\x04h\x05X\x01\x00\x00\x001q\x0fh\x07K\x03tq\x10QK\x00K\x03\x85"
    b"q\x11K\x01\x85q\x12\x89h\x00)Rq\x13tq\x14Rq\x15u}q\x16X\t\x00\x00\x00_metadataq\x17h\x00)Rq\x18X\x00"
    b"\x00\x00\x00q\x19}q\x1aX\x07\x00\x00\x00versionq\x1bK\x01sssb."
)


def torch_zip(path: Path, pkl: bytes, extra: dict | None = None) -> Path:
    stem = path.stem
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{stem}/data.pkl", pkl)
        z.writestr(f"{stem}/version", "3\n")
        z.writestr(f"{stem}/byteorder", "little")
        for name, data in (extra or {}).items():
            z.writestr(f"{stem}/{name}", data)
    return path


LOCAL = SimpleNamespace(name="local", sandboxed=False)  # what check_format asks of a runtime
DOCKER = SimpleNamespace(name="docker", sandboxed=True)


class Net:  # a user class: what a pickled module imports
    pass


# -- pickles ----------------------------------------------------------------


def test_a_state_dicts_globals_are_all_safe():
    found = pickle_globals(STATE_DICT_PKL)
    assert found[:3] == ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"]
    assert all(is_safe_global(g) for g in found)


def test_protocol_4_globals_are_found_through_the_memo():
    """STACK_GLOBAL takes its module and name from the stack; the second
    class from the same module gets its module string from the memo."""
    data = pickle.dumps([collections.OrderedDict(), collections.Counter(), Net()], protocol=4)
    assert pickle_globals(data) == ["collections.OrderedDict", "collections.Counter", f"{__name__}.Net"]


@pytest.mark.parametrize(
    "name, safe",
    [
        ("torch._utils._rebuild_parameter", True),
        ("torch.LongStorage", True),
        ("torch.float32", True),
        ("torch.Size", True),
        ("builtins.set", True),
        ("__builtin__.exec", False),
        ("builtins.eval", False),
        ("os.system", False),
        ("torch.nn.modules.conv.Conv2d", False),
        ("numpy.core.multiarray.scalar", False),
        ("torch.load", False),
        ("torch._utils.some_helper", False),
    ],
)
def test_only_what_weights_only_loading_allows_is_safe(name, safe):
    assert is_safe_global(name) is safe


def test_a_state_dict_zip(tmp_path):
    facts = read_model(torch_zip(tmp_path / "weights.pt", STATE_DICT_PKL))
    assert facts.format == "state-dict" and facts.details == {"layout": "zip"}


def test_a_pickled_module_names_what_it_would_import(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("print('boo')",))

    facts = read_model(torch_zip(tmp_path / "model.pt", pickle.dumps([Net(), Payload()], protocol=2)))
    assert facts.format == "pickle"
    assert facts.details["globals"] == ["__builtin__.exec", f"{__name__}.Net"]


def test_a_legacy_torch_save_file(tmp_path):
    """torch.save before the zip format: magic number, protocol, system info, the object."""
    path = tmp_path / "old.pth"
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(STATE_DICT_PKL)
        f.write(b"\x00" * 64)  # storages follow as raw bytes
    assert read_model(path).format == "state-dict"
    # the same file with a class in its pickle
    path.write_bytes(path.read_bytes().replace(b"ccollections\nOrderedDict\n", b"cmymodels\nResNetHead\n"))
    facts = read_model(path)
    assert facts.format == "pickle" and "mymodels.ResNetHead" in facts.details["globals"]


# -- archives ---------------------------------------------------------------


def test_torchscript_saved_by_a_current_torch(tmp_path):
    path = tmp_path / "net.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("net/code/__torch__.py", "")
        z.writestr("net/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("net/version", "3\n")
        z.writestr("net/byteorder", "little")
    facts = read_model(path)
    assert facts.format == "torchscript" and facts.min_torch == (2, 1)
    assert "saved by torch >= 2.1" in facts.loadable_by(load_catalog().get("export-torch1.7"))
    assert facts.loadable_by(load_catalog().get("export-torch2.13")) == ""


def exported_program(path: Path, batch) -> Path:
    model = {
        "graph_module": {
            "graph": {
                "tensor_values": {
                    "image": {"dtype": 7, "sizes": [batch, {"as_int": 3}, {"as_int": 8}, {"as_int": 8}]},
                    "tokens": {"dtype": 5, "sizes": [batch, {"as_int": 4}]},
                }
            },
            "signature": {
                "input_specs": [
                    {"parameter": {"arg": {"name": "p_w"}}},
                    {"user_input": {"arg": {"as_tensor": {"name": "image"}}}},
                    {"user_input": {"arg": {"as_tensor": {"name": "tokens"}}}},
                ]
            },
        },
        "schema_version": {"major": 8, "minor": 20},
        "torch_version": "2.13.0+cpu",
    }
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ep/archive_format", "pt2")
        z.writestr("ep/models/model.json", json.dumps(model))
    return path


def test_an_exported_program_declares_its_inputs(tmp_path):
    dynamic = {"as_expr": {"expr_str": "Symbol('s40', positive=True, integer=True)", "hint": {"as_int": 2}}}
    facts = read_model(exported_program(tmp_path / "m.pt2", dynamic))
    assert facts.format == "exported-program" and facts.min_torch == (2, 13)
    assert facts.inputs == [
        {"name": "image", "dtype": "float32", "shape": ["s40", 3, 8, 8]},
        {"name": "tokens", "dtype": "int64", "shape": ["s40", 4]},
    ]
    assert facts.dynamic_batch() is True
    assert read_model(exported_program(tmp_path / "f.pt2", {"as_int": 1})).dynamic_batch() is False
    reason = facts.loadable_by(load_catalog().get("export-torch1.7"))
    assert reason == "torch 1.7.1 here does not load ExportedProgram files (torch.export came with torch 2.1)"


def test_a_damaged_archive_is_named_before_anything_reads_it(tmp_path):
    path = torch_zip(tmp_path / "weights.pt", STATE_DICT_PKL * 20)
    data = bytearray(path.read_bytes())
    data[data.index(b"OrderedDict") + 5] ^= 0x20  # a flipped bit inside data.pkl (stored uncompressed)
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=r"weights\.pt: a damaged zip archive \(weights/data\.pkl fails its CRC"):
        read_model(path)


def test_the_crc_check_is_remembered_only_while_the_file_is_unchanged(tmp_path):
    from convertctl.store.filestate import FileState

    path = torch_zip(tmp_path / "weights.pt", STATE_DICT_PKL * 20)
    state = FileState(tmp_path / "state.json")
    read_model(path, state)
    state.save()
    assert FileState(tmp_path / "state.json").get(path, "zip_crc_ok") is True
    # Damaged in place, same size, mtime set back: the ctime still tells.
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[data.index(b"OrderedDict") + 5] ^= 0x20
    time.sleep(0.01)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(UsageError, match="fails its CRC"):
        read_model(path, FileState(tmp_path / "state.json"))


def test_a_zip_torch_did_not_write(tmp_path):
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.jpg", b"x")
    with pytest.raises(UsageError, match=r"photos\.zip: a zip archive, but not one torch wrote"):
        read_model(path)


@pytest.mark.parametrize("content", [b"not a model", b"\x80\x02}q\x00.", b""])
def test_anything_else_is_named_with_the_formats_read(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"weights\.bin: not a model file convertctl reads .*ExportedProgram"):
        read_model(path)


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(UsageError, match=r"nope\.pt: no such file"):
        read_model(tmp_path / "nope.pt")
    with pytest.raises(UsageError, match="not a file"):
        read_model(tmp_path)


# -- ONNX -------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number: int, value) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def value_info(name: str, elem: int, dims: list) -> bytes:
    shape = b"".join(field(1, field(2, d) if isinstance(d, str) else field(1, d)) for d in dims)
    return field(1, name) + field(2, field(1, field(1, elem) + field(2, shape)))


def onnx_bytes(inputs, outputs, opset=11, initializers=(), external=False) -> bytes:
    graph = field(1, field(4, "Relu"))  # a node
    for name in initializers:
        tensor = field(8, name) + (field(14, 1) if external else b"")
        graph += field(5, tensor)
        graph += field(11, value_info(name, 1, [3]))  # IR < 4 also lists weights as inputs
    graph += b"".join(field(11, value_info(*i)) for i in inputs)
    graph += b"".join(field(12, value_info(*o)) for o in outputs)
    return field(1, 6) + field(2, "pytorch") + field(7, graph) + field(8, field(1, "") + field(2, opset))


def test_onnx_inputs_outputs_and_opset_are_read_without_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(
        onnx_bytes([("image", 1, ["batch", 3, 32, 32]), ("tokens", 7, ["batch", 8])], [("14", 1, ["batch", 5])],
                   opset=13, initializers=["w"])
    )  # fmt: skip
    facts = read_model(path)
    assert facts.format == "onnx" and facts.opset == 13 and facts.details["producer"] == "pytorch"
    assert facts.inputs == [
        {"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]},
        {"name": "tokens", "dtype": "int64", "shape": ["batch", 8]},
    ]
    assert facts.outputs == [{"name": "14", "dtype": "float32", "shape": ["batch", 5]}]
    assert facts.dynamic_batch() is True
    assert "no onnxruntime" in facts.loadable_by(load_catalog().get("export-torch1.7"))


def test_onnx_without_the_extension_is_recognised_too(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(onnx_bytes([("x", 1, [1, 4])], [("y", 1, [1, 2])]))
    assert read_model(path).format == "onnx"


def test_broken_onnx_and_external_weights_are_named(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_bytes([("x", 1, [1, 4])], [("y", 1, [1, 2])])[:-3])
    with pytest.raises(UsageError, match=r"m\.onnx: not a readable ONNX file"):
        read_model(path)
    path.write_bytes(onnx_bytes([("x", 1, [1, 4])], [("y", 1, [1, 2])], initializers=["w"], external=True))
    with pytest.raises(UsageError, match=r"m\.onnx: an ONNX file whose weights live in separate files"):
        read_model(path)


def test_the_protobuf_reader_rejects_what_is_not_protobuf():
    for data in (b"\x07", b"\x0a\xff\xff\xff\xff\x0f", struct.pack("<I", 0xFFFFFFFF)):
        with pytest.raises(onnxinfo.NotOnnx):
            onnxinfo.parse(data)


# -- what each format needs from the command line ----------------------------


def opts(**kw):
    values = dict(model=Path("m.pt"), arch=None, arch_kwargs={}, code=None, trust_model=False)
    return SimpleNamespace(**{**values, **kw})


def facts_of(fmt: str, **kw):
    return SimpleNamespace(format=fmt, name=fmt, details={"globals": ["mymodels.Net"]}, inputs=[], outputs=[], **kw)


def test_a_state_dict_needs_arch_and_nothing_else_takes_it():
    with pytest.raises(UsageError, match="--arch module:callable .* --code DIR"):
        check_format(facts_of("state-dict"), opts(), LOCAL)
    check_format(facts_of("state-dict"), opts(arch="m:f"), LOCAL)
    with pytest.raises(UsageError, match="--arch is for state_dict files"):
        check_format(facts_of("torchscript"), opts(arch="m:f"), LOCAL)


def test_a_pickle_needs_trust_and_trust_needs_docker():
    with pytest.raises(UsageError, match=r"imports mymodels\.Net .* --trust-model"):
        check_format(facts_of("pickle"), opts(), DOCKER)
    with pytest.raises(UsageError, match="--trust-model needs --runtime docker"):
        check_format(facts_of("pickle"), opts(trust_model=True), LOCAL)
    check_format(facts_of("pickle"), opts(trust_model=True), DOCKER)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"arch": "nocolon"}, "expected module:callable"),
        ({"arch": "a b:c"}, "expected module:callable"),
        ({"arch_kwargs": {"n": 1}}, "--arch-kwargs given without --arch"),
        ({"arch": "m:f", "arch_kwargs": [1]}, "expected a JSON object"),
        ({"code": Path("/nonexistent")}, "no --arch given"),
        ({"arch": "m:f", "code": Path("/nonexistent")}, "not a directory"),
    ],
)
def test_bad_model_flags(kw, message):
    with pytest.raises(UsageError, match=message):
        check_model_flags(opts(**kw))


def test_load_fields_carry_the_arch_and_make_onnx_names_tensorflow_safe(tmp_path):
    fields = load_fields(facts_of("state-dict"), opts(arch="m:f", arch_kwargs={"n": 2}, code=tmp_path))
    assert fields == {"arch": "m:f", "arch_kwargs": {"n": 2}, "code_dir": str(tmp_path.resolve())}
    onnx = facts_of("onnx")
    onnx.inputs = [{"name": "input.1"}, {"name": "mask"}]
    onnx.outputs = [{"name": "14"}]
    assert load_fields(onnx, opts()) == {"onnx_renames": {"input.1": "input_1", "14": "output_14"}}
    assert load_fields(facts_of("pickle"), opts(trust_model=True)) == {"trusted": True}
