"""User input is checked before anything runs, and each problem is named."""

from __future__ import annotations

import numpy as np
import pytest
from convertctl.config.settings import mode_values
from convertctl.errors import UsageError
from convertctl.inputs.arrays import fit_arrays, parse_shape
from convertctl.inputs.data import ImagePrep, load_calibration, load_eval


@pytest.mark.parametrize("text, dims", [("1,3,256,256", (1, 3, 256, 256)), (" 1, 10 ", (1, 10))])
def test_shapes(text, dims):
    assert parse_shape(text) == dims


@pytest.mark.parametrize("text", ["", "1,a,3", "1,0,3", "-1,3", "1,3,", "1x3x8x8"])
def test_bad_shapes(text):
    with pytest.raises(UsageError, match="--input-shape"):
        parse_shape(text)


def test_arrays_fit_with_or_without_batch_axis(tmp_path):
    shapes = {"input": (1, 3, 4, 4)}
    assert fit_arrays(tmp_path, {"x": np.zeros((5, 3, 4, 4))}, shapes)["input"].shape == (5, 1, 3, 4, 4)
    assert fit_arrays(tmp_path, {"x": np.zeros((5, 1, 3, 4, 4))}, shapes)["input"].shape == (5, 1, 3, 4, 4)
    with pytest.raises(UsageError, match=r"shape \[5, 4, 4, 3\]"):
        fit_arrays(tmp_path, {"x": np.zeros((5, 4, 4, 3))}, shapes)


def test_image_folder_calibration_is_resized_normalised_and_nchw(tmp_path):
    from PIL import Image

    for i in range(10):
        Image.fromarray(np.full((20, 30, 3), 255 * (i % 2), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    calib = load_calibration(tmp_path, {"input": (1, 3, 8, 8)}, mean=(0.5,), std=(0.5,))
    x = calib["input"]
    assert x.shape == (10, 1, 3, 8, 8) and x.dtype == np.float32
    # every image is used (the tutorial's generator read one file over and over)
    assert np.allclose(x[0], -1.0) and np.allclose(x[1], 1.0) and np.allclose(x[2], -1.0)


def test_nhwc_layout_is_followed():
    prep = ImagePrep((1, 8, 8, 3))
    assert not prep.channels_first


def test_eval_folder_labels_follow_sorted_class_names(tmp_path):
    from PIL import Image

    for cls, value in (("cat", 0), ("dog", 255)):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / cls / "a.png")
    x, y, classes = load_eval(tmp_path, {"input": (1, 1, 8, 8)})
    assert classes == ["cat", "dog"] and list(y) == [0, 1] and x["input"].shape == (2, 1, 1, 8, 8)


def test_eval_npz_needs_x_and_y(tmp_path):
    np.savez(tmp_path / "e.npz", images=np.zeros((2, 1, 4)))
    with pytest.raises(UsageError, match=r"e\.npz: an evaluation \.npz needs arrays 'x' and 'y'"):
        load_eval(tmp_path / "e.npz", {"input": (1, 4)})


def test_mode_values():
    assert mode_values(["0.5", "int8=2"], "--x", ("fp32", "int8")) == {"fp32": 0.5, "int8": 2.0}
    with pytest.raises(UsageError, match="unknown mode 'int4'"):
        mode_values(["int4=1"], "--x", ("fp32",))
