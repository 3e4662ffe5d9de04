"""Per-layer errors as a node-data overlay for Google's Model Explorer
(`pip install ai-edge-model-explorer`): `model-explorer m_int8.tflite
--node_data_paths=m_int8.layer_errors.json` colours each op of the graph
by its quantization error.

The format is Model Explorer's node data for one graph (its
node_data_builder.GraphNodeData; ai-edge-quantizer's model_validator writes
the same): {"name", "results": {key: {"value": number}}, "thresholds":
[{"value", "bgColor"}]}. A key is a node's output tensor name, which is
what layer_errors names (the QuantizationDebugger's tensor names), so the
values land on the ops that produced them. Thresholds are upper bounds, in
order; a value above the last gets no colour, so the last is a bound no
value reaches."""

from __future__ import annotations

import json
import math

SUFFIX = ".layer_errors.json"
# RMSE / scale (error in units of the output's quantization step): about
# 0.3 is rounding alone; several steps is a layer worth keeping float.
THRESHOLDS = (
    (0.1, "#d9f0d3"),
    (0.3, "#a6dba0"),
    (0.6, "#fee08b"),
    (1.0, "#fdae61"),
    (3.0, "#f46d43"),
    (1e300, "#d73027"),
)


def overlay_name(stem: str, mode: str) -> str:
    return f"{stem}_{mode}{SUFFIX}"


def node_data(art: dict) -> dict | None:
    """The overlay of one artifact's layer_errors, or None when it has none."""
    errors = art.get("layer_errors") or {}
    results = {}
    for layer in errors.get("layers") or []:
        value = layer.get("rmse_scale")
        name = layer.get("tflite") or layer.get("name")  # the graph's tensor name: Model Explorer's key
        if isinstance(name, str) and name and isinstance(value, (int, float)) and math.isfinite(value):
            results[name] = {"value": float(value)}
    if not results:
        return None
    metric = str(errors.get("metric", "rmse/scale")).replace("rmse/scale", "RMSE/scale")
    return {
        "name": f"convertctl {art.get('mode', '')}: {metric} ({errors.get('samples', 0)} samples)",
        "results": results,
        "thresholds": [{"value": v, "bgColor": c} for v, c in THRESHOLDS],
    }


def overlays(report, stem: str) -> dict:
    """{file name: JSON text} for every artifact with layer errors."""
    out = {}
    for art in report.artifacts:
        data = node_data(art)
        if data is not None:
            out[overlay_name(stem, art["mode"])] = json.dumps(data, indent=1, sort_keys=True) + "\n"
    return out
