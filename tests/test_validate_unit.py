"""Comparisons: every failure collected, structure vs tolerance."""

from __future__ import annotations

import numpy as np
from convertctl.checks.validate import Tolerance, compare, metrics, tolerance_for


def ref(n=8, classes=10, seed=0):
    return {"output": np.random.default_rng(seed).standard_normal((n, 1, classes)).astype(np.float32)}


def test_identical_outputs_pass_with_exact_numbers():
    r = ref()
    check = compare("tflite", "fp32", "samples", r, {k: v.copy() for k, v in r.items()}, tolerance_for("fp32"))
    assert check.status == "passed"
    m = check.outputs[0]
    assert m["max_abs"] == 0 and m["cosine"] > 0.999999 and m["top1"] == 1.0 and m["top5"] == 1.0


def test_structure_mismatch_fails_and_other_failures_are_still_collected():
    r = {"a": ref()["output"], "b": ref()["output"]}
    got = {"a": r["a"] + 1.0, "c": r["b"]}
    check = compare("savedmodel", None, "samples", r, got, tolerance_for("fp32"))
    assert check.status == "failed"
    assert any(f.startswith("structure: outputs") for f in check.failures)
    assert any("a: max abs diff" in f for f in check.failures)


def test_shape_mismatch_is_structural():
    r = ref()
    check = compare("onnx", None, "samples", r, {"output": r["output"][:, :, :5]}, tolerance_for("fp32"))
    assert check.failures == ["structure: output 'output' has shape [1, 5], PyTorch's [1, 10]"]


def test_tolerance_scales_with_output_magnitude():
    r = {"output": ref()["output"] * 1000}
    noisy = {"output": r["output"] + 0.05}
    assert compare("tflite", "fp32", "samples", r, noisy, tolerance_for("fp32")).status == "passed"
    small = {"output": r["output"] / 1000}
    assert (
        compare("tflite", "fp32", "samples", small, {"output": small["output"] + 0.05}, tolerance_for("fp32")).status
        == "failed"
    )


def test_top1_disagreement_is_reported():
    r = ref()
    flipped = -r["output"]
    check = compare("tflite", "int8", "samples", r, {"output": flipped}, tolerance_for("int8"))
    assert any("top-1 agreement 0 of 8 < 75% of 8" in f for f in check.failures)
    assert any("cosine similarity -1.000000" in f for f in check.failures)


def test_non_score_outputs_have_no_top1():
    m = metrics("feat", np.ones((4, 1, 3, 8, 8)), np.ones((4, 1, 3, 8, 8)))
    assert m.top1 is None


def test_overrides_apply_per_mode():
    tol = tolerance_for("fp16", {"fp16": {"atol": 0.5}})
    assert tol.atol == 0.5 and tolerance_for("fp16").atol == 0.01


def test_every_element_is_judged_against_the_largest_reference_value():
    ref = np.array([[2.0, 0.01, 0.02], [0.1, 0.2, 0.05]], np.float32)
    tol = Tolerance(atol=0.01, rtol=0.01, quantile=1.0)  # bound 0.01 + 0.01 * 2 = 0.03 everywhere
    # 0.025 off in the sample of small scores: its own peak (0.2) would bound it at 0.012
    near = ref + np.array([[0.0, 0.0, 0.0], [0.0, 0.025, 0.0]], np.float32)
    assert compare("tflite", "fp16", "samples", {"y": ref}, {"y": near}, tol).status == "passed"
    far = ref + np.array([[0.0, 0.0, 0.0], [0.0, 0.035, 0.0]], np.float32)
    check = compare("tflite", "fp16", "samples", {"y": ref}, {"y": far}, tol)
    assert check.status == "failed" and "1 of 6 elements outside atol 0.01 + rtol 0.01·max|ref|" in check.failures[0]


def test_cosine_is_the_worst_samples_not_the_pooled_one():
    """A file that is good on most samples and poor on one passed when the
    samples were pooled (0.99); judged per sample, the poor one fails it."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((8, 1, 100)).astype(np.float32)
    got = ref.copy()
    got[5, 0] = ref[5, 0] + 0.22 * np.linalg.norm(ref[5, 0]) / 10 * rng.standard_normal(100).astype(np.float32)
    check = compare("tflite", "int8", "samples", {"out": ref}, {"out": got}, tolerance_for("int8"))
    out = check.outputs[0]
    assert out["cosine_pooled"] > 0.98 > out["cosine"], out
    assert out["worst_sample"] == 5
    assert check.status == "failed" and "(sample 5, the worst of 8)" in check.failures[0]
    assert check.method["cosine"].startswith("the worst sample's") and check.method["samples"] == 8
