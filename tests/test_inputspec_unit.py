"""--input NAME:SHAPE[:DTYPE][:LOW..HIGH]: parsed, checked against what the
model file declares, and turned into typed synthetic data in range."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from convertctl.errors import UsageError
from convertctl.inputs.inputspec import (
    BATCH_CHECK,
    InputSpec,
    batched,
    check_dynamic_batch,
    from_shapes,
    in_range,
    parse_input,
    resolve,
    safe_name,
    synthetic,
)


@pytest.mark.parametrize(
    "text, spec",
    [
        ("image:1,3,224,224", InputSpec("image", (1, 3, 224, 224))),
        ("tokens:1,16:int64", InputSpec("tokens", (1, 16), "int64")),
        ("tokens:1,16:int64:0..999", InputSpec("tokens", (1, 16), "int64", 0, 999)),
        ("ids:1,4:int32:-5..5", InputSpec("ids", (1, 4), "int32", -5, 5)),
        ("image:1,3,8,8:0..1", InputSpec("image", (1, 3, 8, 8), "", 0, 1)),
        ("x:1,2:float32:-1.5..2.5", InputSpec("x", (1, 2), "float32", -1.5, 2.5)),
    ],
)
def test_input_specs(text, spec):
    assert parse_input(text) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("image", "expected NAME:SHAPE"),
        ("image:1,3:float32:0..1:x", "expected NAME:SHAPE"),
        ("in.put:1,3", "must be a Python-style identifier"),
        ("1st:1,3", "must be a Python-style identifier"),
        ("image:1,a", "expected comma-separated whole numbers"),
        ("image:1,0", "every dimension must be a positive number"),
        ("image:1,3:float64", "neither a dtype"),
        ("tokens:1,3:int64:9..0", "is empty"),
        ("tokens:1,3:int64:0..1.5", "whole numbers"),
        ("tokens:1,3:int64:int32", "neither a dtype"),
    ],
)
def test_bad_input_specs(text, message):
    with pytest.raises(UsageError, match=message) as err:
        parse_input(text)
    assert repr(text) in str(err.value), "the message quotes the flag"


def test_input_shape_keeps_its_names():
    assert [s.name for s in from_shapes([(1, 3)])] == ["input"]
    assert [s.name for s in from_shapes([(1, 3), (1, 4)])] == ["input_0", "input_1"]
    assert not any(s.named for s in from_shapes([(1, 3)]))


def test_synthetic_data_per_dtype_and_range():
    specs = [
        InputSpec("image", (1, 3, 4, 4), "float32"),
        InputSpec("tokens", (1, 16), "int64", 3, 5),
        InputSpec("mask", (1, 16), "int32"),
        InputSpec("u", (1, 100), "float32", -2, -1),
    ]
    data = synthetic(specs, 50, seed=1)
    assert data["image"].dtype == np.float32 and data["image"].shape == (50, 1, 3, 4, 4)
    assert 0.5 < data["image"].std() < 1.5, "standard normal"
    assert data["tokens"].dtype == np.int64 and set(np.unique(data["tokens"])) == {3, 4, 5}, "both ends included"
    assert data["mask"].dtype == np.int32 and data["mask"].min() >= 0 and data["mask"].max() == 9, "default 0..9"
    assert data["u"].min() >= -2 and data["u"].max() <= -1
    again = synthetic(specs, 50, seed=1)
    assert all(np.array_equal(data[k], again[k]) for k in data), "seeded"


def test_one_float_input_draws_what_it_always_drew():
    """The same seed gives the same samples as before --input existed."""
    old = np.random.default_rng(0).standard_normal((8, 1, 3, 4, 4)).astype(np.float32)
    new = synthetic(from_shapes([(1, 3, 4, 4)]), 8, 0)["input"]
    assert np.array_equal(old, new)


def test_a_batch_of_n_from_the_first_samples():
    arrays = {"x": np.arange(3 * 2, dtype=np.float32).reshape(3, 1, 2)}
    out = batched(arrays, BATCH_CHECK)
    assert out["x"].shape == (1, BATCH_CHECK, 2)
    assert out["x"][0].tolist() == [[0, 1], [2, 3], [4, 5], [0, 1]], "fewer samples than N: repeated"


def test_dynamic_batch_needs_batch_1():
    check_dynamic_batch([InputSpec("x", (1, 3))])
    with pytest.raises(UsageError, match="input 'x' has batch 2"):
        check_dynamic_batch([InputSpec("x", (2, 3))])


def test_user_token_ids_out_of_range_are_named():
    spec = InputSpec("tokens", (1, 4), "int64", 0, 9)
    in_range({"tokens": np.array([[[0, 9, 3, 1]]])}, [spec], "calib.npz")
    with pytest.raises(UsageError, match=r"calib\.npz: input 'tokens' holds values 0\.\.12, outside its range 0\.\.9"):
        in_range({"tokens": np.array([[[0, 12, 3, 1]]])}, [spec], "calib.npz")


@pytest.mark.parametrize("name, safe", [("image", "image"), ("input.1", "input_1"), ("14", "input_14")])
def test_safe_names(name, safe):
    assert safe_name(name, "input") == safe


# -- against what the model file declares -------------------------------------


def facts(fmt="onnx", inputs=(), dynamic=None):
    return SimpleNamespace(
        path=Path("m.onnx"), format=fmt, inputs=list(inputs), dynamic_batch=lambda: dynamic if inputs else None
    )


IMAGE = {"name": "image", "dtype": "float32", "shape": ["batch", 3, 8, 8]}
TOKENS = {"name": "tokens", "dtype": "int64", "shape": ["batch", 4]}


def test_a_model_that_declares_nothing_needs_inputs():
    with pytest.raises(UsageError, match="--input-shape is required"):
        resolve([], facts("torchscript"))
    (spec,) = resolve(from_shapes([(1, 3)]), facts("torchscript"))
    assert spec.dtype == "float32"


def test_declared_inputs_fill_in_names_shapes_and_dtypes():
    specs = resolve([], facts(inputs=[IMAGE, TOKENS], dynamic=True))
    assert [(s.name, s.shape, s.dtype) for s in specs] == [
        ("image", (1, 3, 8, 8), "float32"),
        ("tokens", (1, 4), "int64"),
    ]
    specs = resolve(from_shapes([(1, 3, 8, 8), (1, 4)]), facts(inputs=[IMAGE, TOKENS]))
    assert [s.name for s in specs] == ["image", "tokens"], "--input-shape takes the file's names"


def test_declared_inputs_are_checked():
    model = facts(inputs=[IMAGE, TOKENS], dynamic=True)
    with pytest.raises(UsageError, match="takes 2 input"):
        resolve([parse_input("image:1,3,8,8")], model)
    with pytest.raises(UsageError, match=r"input 'image' has shape \?,3,8,8; \[1, 3, 9, 9\] given"):
        resolve([parse_input("image:1,3,9,9"), parse_input("tokens:1,4")], model)
    with pytest.raises(UsageError, match="input 'tokens' is int64, --input says int32"):
        resolve([parse_input("image:1,3,8,8"), parse_input("tokens:1,4:int32")], model)
    with pytest.raises(UsageError, match="the model's inputs are image, tokens"):
        resolve([parse_input("image:1,3,8,8"), parse_input("ids:1,4")], model)


def test_onnx_inputs_may_come_in_any_order_a_programs_may_not():
    swapped = [parse_input("tokens:1,4:int64:0..49"), parse_input("image:1,3,8,8")]
    specs = resolve(swapped, facts(inputs=[IMAGE, TOKENS]))
    assert [s.name for s in specs] == ["image", "tokens"] and specs[1].high == 49, "fed by name"
    with pytest.raises(UsageError, match=r"\(in that order\)"):
        resolve(swapped, facts("exported-program", inputs=[IMAGE, TOKENS]))


def test_a_free_dimension_other_than_batch_needs_a_size():
    seq = {"name": "tokens", "dtype": "int64", "shape": [1, "seq"]}
    with pytest.raises(UsageError, match=r"free dimension 1 \(seq\); give its size with --input tokens:1,\?"):
        resolve([], facts(inputs=[seq]))
    assert resolve([parse_input("tokens:1,12")], facts(inputs=[seq]))[0].shape == (1, 12)


def test_dynamic_batch_needs_a_free_batch_in_the_file():
    fixed = {**IMAGE, "shape": [1, 3, 8, 8]}
    with pytest.raises(UsageError, match="input\\(s\\) image have a fixed batch size; export it with dynamic_axes"):
        resolve([], facts(inputs=[fixed], dynamic=False), dynamic_batch=True)
    with pytest.raises(UsageError, match=r"torch\.export\.Dim\('batch'\)"):
        resolve([], facts("exported-program", inputs=[fixed], dynamic=False), dynamic_batch=True)


def test_onnx_names_tensorflow_would_change_are_made_safe():
    odd = {"name": "input.1", "dtype": "float32", "shape": [1, 3]}
    assert resolve([], facts(inputs=[odd]))[0].name == "input_1"
    assert resolve([parse_input("input_1:1,3")], facts(inputs=[odd]))[0].name == "input_1"


def test_unsupported_declared_dtypes_are_named():
    with pytest.raises(UsageError, match="input 'b' is bool; convertctl feeds float32, int64, int32"):
        resolve([], facts(inputs=[{"name": "b", "dtype": "bool", "shape": [1]}]))


def test_an_input_without_a_declared_shape_takes_the_given_one():
    unknown = {"name": "x", "dtype": "float32", "shape": []}
    with pytest.raises(UsageError, match="input 'x' has no declared shape; give it with --input"):
        resolve([], facts(inputs=[unknown]))
    assert resolve([parse_input("x:1,5")], facts(inputs=[unknown]))[0].shape == (1, 5)
