"""Every file proves its mode: the dtypes it stores, read from the file by
the quantize step (artifact["tensors"], images/common/tflite_tensors.py),
held against what the mode says it is (config/modes.py). A "dynamic" file
whose weights all stayed float (TFLite's converter leaves tensors under
1024 elements float: a small CNN came out with no int8 tensor at all) is
not a dynamic file, whatever its name, and fails like any other check: the
ladder goes on to the next rung.

Weighted ops are the ops that carry a constant weight (CONV_2D,
FULLY_CONNECTED, ...). Their share in the mode's weight type must reach the
mode's weight_share (90 %: TFLite may keep a tiny first convolution float);
a float mode must have none quantized. Weight-only and fp16 files keep their
weights stored small and dequantize them for float kernels; dynamic files
feed them to hybrid kernels, never through a DEQUANTIZE."""

from __future__ import annotations

from convertctl.config.modes import Mode

# int4 has no kernel for depthwise convolutions: quantizers leave their weights as they are.
INT4_EXEMPT = {"DEPTHWISE_CONV_2D"}


def problems(mode: Mode, artifact: dict) -> list[str]:
    """Why the file is not a `mode` file ([] when it is)."""
    tensors = artifact.get("tensors")
    if not isinstance(tensors, dict) or not isinstance(tensors.get("weights"), dict):
        why = tensors.get("tensors_error", "") if isinstance(tensors, dict) else ""
        return [
            f"signature: the file's tensors were not reported, so it cannot prove it is {mode.name}"
            + (f" ({why})" if why else "")
        ]
    weights: dict = tensors["weights"]
    exempt = INT4_EXEMPT if mode.weights == "int4" else set()
    counted = {op: dict(by_dtype) for op, by_dtype in weights.items() if op not in exempt}
    total = sum(sum(by_dtype.values()) for by_dtype in counted.values())
    if total == 0:
        return []  # no weighted op (a model of element-wise ops): nothing to store small
    stored = sum(by_dtype.get(mode.weights, 0) for by_dtype in counted.values())
    # Layers the user kept float (--int8-float-layers) keep float weights by design.
    kept = len((artifact.get("selective") or {}).get("float_layers") or [])
    floats = sum(by_dtype.get("float32", 0) for by_dtype in counted.values())
    total -= min(kept, floats) if mode.weights != "float32" else 0
    share = stored / total if total else 1.0
    out = []
    if share < mode.weight_share:
        found = _dtypes(counted)
        out.append(
            f"signature: {mode.name} stores weights as {mode.weights}, but {stored} of {total} weighted ops do "
            f"({found}; at least {mode.weight_share:.0%} must)"
        )
    quantized = sum(n for by_dtype in counted.values() for dtype, n in by_dtype.items() if dtype != "float32")
    dequantized = sum(int(n) for n in (tensors.get("weights_dequantized") or {}).values())
    if mode.weights != "float32" and mode.activations == "float32" and dequantized < quantized:
        out.append(
            f"signature: {mode.name} computes in float from dequantized weights, but {quantized - dequantized} "
            "quantized weight(s) feed an op directly"
        )
    if mode.activations == "dynamic" and dequantized:
        out.append(
            f"signature: {mode.name} feeds its int weights to hybrid kernels, but {dequantized} weight(s) are "
            "dequantized to float first (a weight-only file)"
        )
    return out


def _dtypes(weights: dict) -> str:
    totals: dict = {}
    for by_dtype in weights.values():
        for dtype, n in by_dtype.items():
            totals[dtype] = totals.get(dtype, 0) + n
    return ", ".join(f"{n} {dtype}" for dtype, n in sorted(totals.items(), key=lambda kv: -kv[1]))
