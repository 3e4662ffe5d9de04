"""Property tests (hypothesis) of every parser a user's text or file goes
through, beyond the settings file (tests/test_settings_props.py): the
--input spec and shapes, ages, shares, the ONNX reader, the pickle
scanner, the model-file reader, array files, the report's renderings, the
catalog, and the text helpers. Whatever arrives, each answers with a value
or its one error type (UsageError, NotOnnx...); never anything else, never
a value outside what it promises."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from battery_cases import onnx_model, report_dict
from convertctl.config.catalog import check_catalog, images_dir
from convertctl.config.options import MAX_INPUT_VALUES
from convertctl.errors import UsageError
from convertctl.inputs import inputspec, onnxinfo
from convertctl.inputs.arrays import load_arrays
from convertctl.inputs.modelfile import read_model
from convertctl.inputs.picklescan import archive_unsafe, pickle_globals
from convertctl.report.model import Report
from convertctl.report.render import markdown, print_report, rendered
from convertctl.report.text import md_code, md_text, term, visible
from convertctl.run.selective import parse_cost
from convertctl.store.cache import parse_age
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

FAST = hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT_BOUNDS = inputspec.BOUNDS

spec_parts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        ["int32", "int64", "float32", "int8", "0..9", "-1e12..1e12", "nan..1", "5..1", "0..1e400", "..", ""]
    ),
)


@FAST
@given(st.text(max_size=10), st.lists(st.integers(-3, 40000), max_size=5), st.lists(spec_parts, max_size=3))
def test_any_input_spec_parses_into_what_it_promises_or_is_refused(name, dims, rest):
    text = ":".join([name, ",".join(map(str, dims)), *rest])
    try:
        spec = inputspec.parse_input(text)
    except UsageError as exc:
        assert exc.message.startswith(f"--input {text!r}")
        return
    assert inputspec.NAME.fullmatch(spec.name)
    assert spec.shape and all(d > 0 for d in spec.shape) and math.prod(spec.shape) <= MAX_INPUT_VALUES
    if spec.low is not None:
        lo, hi = INT_BOUNDS[spec.dtype or "float32"]
        assert math.isfinite(spec.low) and math.isfinite(spec.high) and lo <= spec.low <= spec.high <= hi
        if spec.is_int:
            # what synthetic data draws from this range fits the dtype, both ends included
            drawn = inputspec.synthetic([spec], 1, 0)[spec.name]
            assert drawn.dtype == np.dtype(spec.dtype) and spec.low <= drawn.min() <= drawn.max() <= spec.high


@FAST
@given(st.text(max_size=30))
def test_any_shape_text_is_a_shape_or_refused(text):
    try:
        dims = inputspec.parse_shape(text)
    except UsageError as exc:
        assert exc.message.startswith("--input-shape")
        return
    assert all(isinstance(d, int) and d > 0 for d in dims) and math.prod(dims) <= MAX_INPUT_VALUES


@FAST
@given(st.one_of(st.text(max_size=12), st.floats().map(str), st.floats().map(lambda f: f"{f}d")))
def test_any_age_is_finite_and_not_negative_or_refused(text):
    try:
        seconds = parse_age(text)
    except UsageError as exc:
        assert "--older-than" in exc.message
        return
    assert math.isfinite(seconds) and seconds >= 0


@FAST
@given(st.one_of(st.text(max_size=10), st.floats().map(lambda f: f"{f}%"), st.floats()))
def test_any_share_is_within_0_and_100_or_refused(value):
    try:
        share = parse_cost(value)
    except UsageError as exc:
        assert "--max-int8-latency-cost" in exc.message
        return
    assert share is None or 0 <= share <= 100


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_are_onnx_or_not_onnx(data):
    try:
        info = onnxinfo.parse(data)
    except onnxinfo.NotOnnx:
        return
    assert isinstance(info.opset, int) and all(isinstance(t.name, str) for t in info.inputs)


@FAST
@given(st.data())
def test_a_damaged_onnx_file_is_onnx_or_not_onnx(data):
    """A real-looking model with bytes flipped, cut or inserted."""
    raw = bytearray(onnx_model())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del raw[at:]
            if not raw:
                return
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=6))
    try:
        onnxinfo.parse(bytes(raw))
    except onnxinfo.NotOnnx:
        pass


@FAST
@given(st.binary(max_size=200))
def test_the_pickle_scanner_names_globals_or_says_it_cannot_read(data):
    try:
        found = pickle_globals(data)
    except (ValueError, EOFError, IndexError, KeyError, UnicodeDecodeError, OverflowError):
        return
    assert all(isinstance(g, str) for g in found)


@FAST
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12),  # names zipfile can write
        st.one_of(st.binary(max_size=64), st.binary(max_size=64).map(lambda b: b"\x80\x02" + b)),
        max_size=5,
    )
)
def test_the_archive_scanner_answers_any_archive(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    buf.seek(0)
    with zipfile.ZipFile(buf) as archive:
        found = archive_unsafe(archive)
    assert found is None or (isinstance(found[0], str) and isinstance(found[1], str))


@SLOW
@given(st.sampled_from(["pt", "pt2", "onnx", "bin"]), st.binary(max_size=400), st.data())
def test_any_model_file_is_read_or_refused_naming_it(tmp_path_factory, suffix, noise, data):
    """Random bytes, or a valid archive or ONNX file damaged: facts, or one UsageError naming the file."""
    path = tmp_path_factory.mktemp("m") / f"model.{suffix}"
    kind = data.draw(st.sampled_from(["noise", "torchscript", "pt2", "onnx"]))
    if kind == "noise":
        path.write_bytes(noise)
    else:
        buf = io.BytesIO()
        if kind == "onnx":
            buf.write(onnx_model())
        else:
            with zipfile.ZipFile(buf, "w") as z:
                if kind == "torchscript":
                    z.writestr("net/code/__torch__.py", "def forward(self, x): return x\n")
                    z.writestr("net/data.pkl", b"\x80\x02}q\x00.")
                else:
                    z.writestr("m/archive_format", "pt2")
                    z.writestr("m/models/model.json", json.dumps({"graph_module": data.draw(_json)}))
        raw = bytearray(buf.getvalue())
        for _ in range(data.draw(st.integers(0, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
    try:
        facts = read_model(path)
    except UsageError as exc:
        assert str(path) in exc.message
        return
    for declared in facts.inputs:
        assert isinstance(declared["name"], str)
        assert all(isinstance(d, (int, str)) or d is None for d in declared["shape"])


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)),
    max_leaves=10,
)


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@SLOW
@given(st.data())
def test_any_array_file_loads_or_is_refused_naming_it(tmp_path_factory, data):
    """Valid .npy/.npz bytes damaged anywhere (header included), or random bytes."""
    path = tmp_path_factory.mktemp("a") / data.draw(st.sampled_from(["d.npy", "d.npz", "d.bin"]))
    base = data.draw(st.sampled_from(["npy", "npz", "noise"]))
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    if base == "npy":
        raw = bytearray(_npy_bytes(arr))
    elif base == "npz":
        buf = io.BytesIO()
        np.savez(buf, x=arr, y=np.arange(2))
        raw = bytearray(buf.getvalue())
    else:
        raw = bytearray(data.draw(st.binary(max_size=200)))
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw))
    try:
        arrays = load_arrays(path, "data")
    except UsageError as exc:
        assert str(path) in exc.message
        return
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


def _report_changes():
    return st.dictionaries(
        st.sampled_from(
            ["model", "notices", "checks", "artifacts", "ladder", "stages", "stale", "accuracy", "failure"]
        ),
        _json,
        max_size=3,
    )


@SLOW
@given(_report_changes())
def test_any_report_renders_as_text_or_is_refused(changes):
    """A report whose fields hold anything: both renderings give text with no
    raw control character, or one UsageError naming the file."""
    from rich.console import Console

    data = report_dict()
    data.update(changes)
    try:
        report = Report(**{k: v for k, v in data.items() if k in Report.__dataclass_fields__})
    except TypeError:
        return

    def terminal() -> str:
        console = Console(record=True, width=120, color_system=None, file=io.StringIO())
        print_report(report, console)
        return console.export_text()

    for render in (terminal, lambda: markdown(report)):
        try:
            text = rendered("r.json", render)
        except UsageError as exc:
            assert exc.message.startswith("r.json: not a valid convertctl report")
            continue
        assert not any(ch in text for ch in "\x1b\x07\x08\r\x9b")


@FAST
@given(st.text(max_size=40))
def test_text_helpers_keep_the_text_and_drop_its_power(text):
    from markdown_it import MarkdownIt

    shown = visible(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    from rich.console import Console

    console = Console(record=True, width=500, color_system=None, file=io.StringIO())
    console.print(term(text), end="")  # never a MarkupError
    assert console.export_text() == (shown[:-1] + "\\x5c" if shown.endswith("\\") else shown)
    console = Console(record=True, width=500, color_system=None, file=io.StringIO())
    console.print(f"[bold]{term(text)}[/bold]", end="")  # as the CLI embeds it: the same text
    assert console.export_text() == (shown[:-1] + "\\x5c" if shown.endswith("\\") else shown)
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render("x " + md_text(text))
    assert "<img" not in html and "<a " not in html and "<em>" not in html and "<strong>" not in html
    span = MarkdownIt("commonmark").render("x " + md_code(text, table=False))
    assume(shown.strip())
    assert span.count("<code>") == 1


@FAST
@given(st.dictionaries(st.text(max_size=10), _json, max_size=4))
def test_any_catalog_variant_table_is_checked_naming_the_file(table):
    import sys

    tomllib = __import__("tomllib") if sys.version_info >= (3, 11) else __import__("tomli")
    data = tomllib.loads((images_dir() / "catalog.toml").read_text())
    name = next(iter(data["variants"]))
    data["variants"][name] = {**data["variants"][name], **table}
    try:
        check_catalog(Path("/c/catalog.toml"), data)
    except UsageError as exc:
        assert "/c/catalog.toml" in exc.message


@pytest.mark.parametrize("item", ["=0.1", "==1", "=", "=nan"])
def test_an_empty_mode_before_equals_is_refused(item):
    from convertctl.config import settings

    with pytest.raises(UsageError, match="--atol"):
        settings.mode_values([item], "--atol")
