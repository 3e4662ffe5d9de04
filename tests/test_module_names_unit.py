"""Layer names users recognise, without real stages: PyTorch module paths
read from torch's ONNX node names, a fused TFLite tensor name resolved to the
module of the op it ends with, --int8-float-layers resolved from either
spelling, and the host's renderings showing the module path first with the
TFLite name beside it (and escaped). The real conversions are in
tests/test_module_names.py."""

from __future__ import annotations

import json

import pytest
from convertctl.report import html, overlay, quality
from convertctl.report.model import Report
from convertctl.report.render import markdown
from test_stage_code_unit import load

names = load("module_names", "common")

# Tensor names as each family writes them (measured on tests/names_model.py's MobileNet)
ONNX2TF_DW = (
    "model_6/tf.nn.relu6_1/Relu6;model_6/tf.math.add_3/Add;"
    "model_6/tf.compat.v1.nn.depthwise_conv2d_2/depthwise;Const_20"
)
ONNXTF_DW = "clip_by_value_1;clip_by_value_1/Minimum;transpose_5;Add_1;convolution_5;depthwise;Const_18"
LITERT_DW = "features.1.conv.0.2;;features.0.2;;features.1.conv.0.1;;features.1.conv.0.0;2"


@pytest.mark.parametrize(
    ("node", "path"),
    [
        ("/features/features.1/conv/conv.0/conv.0.0/Conv", "features.1.conv.0.0"),  # an nn.Module traced
        ("/features/1/conv/0/0/Conv", "features.1.conv.0.0"),  # TorchScript
        ("wa/features/3/Add", "features.3"),  # onnx2tf's rename of a leading slash
        ("/conv/conv/Conv", "conv.conv"),  # a child named like its parent
        ("/classifier/classifier.1/Gemm", "classifier.1"),
        ("/ReduceMean", ""),  # an op of the root module
        ("Conv_0", ""),  # not torch's scoped name
        ("", ""),
    ],
)
def test_module_path_from_torch_onnx_node_names(node, path):
    assert names.from_onnx_node(node) == path


def test_a_fused_name_is_named_after_the_op_it_ends_with():
    """The fused name lists the op fused into last (the convolution); the
    ReLU6 of the layer before, which litert-torch fuses into its name too,
    does not move the layer up to a common parent."""
    onnx2tf = names.Names(
        {
            "fragments": {
                "tf.nn.relu6_1": "features.1.conv.0.2",
                "tf.math.add_3": "features.1.conv.0.0",
                "tf.compat.v1.nn.depthwise_conv2d_2": "features.1.conv.0.0",
            }
        }
    )
    assert onnx2tf.module(ONNX2TF_DW) == "features.1.conv.0.0"
    onnxtf = names.Names(
        {
            "fragments": {
                "clip_by_value_1/Minimum": "features.1.conv.0.2",
                "depthwise": "features.1.conv.0.0",
                "convolution_5": "features.2.conv.2",
            }
        }
    )
    assert onnxtf.module(ONNXTF_DW) == "features.1.conv.0.0"
    litert = names.Names(
        {"fragments": {p: p for p in ("features.1.conv.0.2", "features.0.2", "features.1.conv.0.0", "2")}}
    )
    assert litert.module(LITERT_DW) == "features.1.conv.0.0"  # the trailing ";2" makes names unique: not module "2"
    assert litert.module("__main__.named.<locals>.Named;7") is None


def test_graph_outputs_take_the_module_of_the_op_making_them():
    known = names.Names({"fragments": {}, "outputs": {"output": "classifier.1"}}, {"PartitionedCall:0": "output"})
    assert known.module("PartitionedCall:0") == "classifier.1"
    assert bool(names.Names(None)) is False


def test_rows_are_named_three_ways_and_the_unnamed_are_counted():
    mean = "model_6/tf.math.reduce_mean_1/Mean"
    rows = [{"name": ONNX2TF_DW, "op": "DEPTHWISE_CONV_2D"}, {"name": mean, "op": "MEAN"}]
    got = names.Names({"source": "test", "fragments": {"tf.compat.v1.nn.depthwise_conv2d_2": "features.1.conv.0.0"}})
    got.annotate(rows)
    assert rows[0] == {"name": "features.1.conv.0.0", "tflite": ONNX2TF_DW, "module": "features.1.conv.0.0",
                       "op": "DEPTHWISE_CONV_2D"}  # fmt: skip
    assert rows[1]["name"] == rows[1]["tflite"] == mean and rows[1]["module"] is None
    assert got.summary(rows) == {"source": "test", "named": 1, "unnamed": 1}
    assert "note" in names.Names(None).summary(rows)


def test_float_layers_resolve_from_either_spelling():
    rows = [
        {"tflite": "dw", "module": "features.1.conv.0.0", "op": "DEPTHWISE_CONV_2D"},
        {"tflite": "pad", "module": "features.1.conv.0.0", "op": "PAD"},  # onnx-tf's pad and layout transpose
        {"tflite": "tr", "module": "features.1.conv.0.0", "op": "TRANSPOSE"},
        {"tflite": "pw", "module": "features.1.conv.1", "op": "CONV_2D"},
        {"tflite": "add", "module": "features.10", "op": "ADD"},
        {"tflite": "mean", "module": None, "op": "MEAN"},
        {"tflite": "view", "module": "flatten", "op": "RESHAPE"},
    ]
    assert names.resolve(["features.1.conv.0"], rows) == (["dw"], [])  # a module above the layer, moves left out
    assert names.resolve(["features.1"], rows) == (["dw", "pw"], [])  # a whole block
    assert names.resolve(["mean", "features.1.conv.1"], rows) == (["mean", "pw"], [])  # tensor name, exact path
    assert names.resolve(["features.1.conv.0.0", "dw", "pad"], rows) == (["dw", "pad"], [])  # each once; exact
    assert names.resolve(["flatten"], rows) == (["view"], [])  # a module of moves only keeps them
    assert names.resolve(["features.1.c", "nothing"], rows) == ([], ["features.1.c", "nothing"])  # no partial words


def test_the_search_asks_by_tensor_name_and_names_the_unknown():
    search = load("int8_search", "common")
    ranking = [{"name": "features.3", "tflite": "add_15", "module": "features.3"}]
    assert search.resolve(["features.3"], ranking) == ["add_15"]
    assert search.resolve(["anything"], []) == ["anything"]  # no ranking: the quantizer judges the names
    with pytest.raises(search.StageFailure, match="no quantized layer or PyTorch module named 'features.9'"):
        search.resolve(["features.9"], ranking)


def report_with(layers: list, selective: dict | None = None, modules: dict | None = None) -> Report:
    art = {"mode": "int8", "status": "ok", "file": "q/model.tflite", "size_bytes": 10, "variant": "v", "family": "f",
           "layer_errors": {"metric": "rmse/scale", "samples": 16, "total": len(layers), "layers": layers}}  # fmt: skip
    if modules:
        art["layer_errors"]["modules"] = modules
    if selective:
        art["selective"] = selective
    return Report(model={"path": "/m/model.pt"}, runtime="local", modes=["int8"], artifacts=[art])


HOSTILE = "<script>alert(1)</script>`|*x*"


def test_renderings_put_the_module_first_with_the_tflite_name_beside_it():
    layers = [
        {
            "name": "features.3",
            "tflite": "model/tf.math.add_15/Add",
            "module": "features.3",
            "op": "ADD",
            "rmse_scale": 0.3,
            "max_abs_error": 0.1,
            "scale": 0.1,
        },  # fmt: skip
        {
            "name": "model/Mean",
            "tflite": "model/Mean",
            "module": None,
            "op": "MEAN",
            "rmse_scale": 0.2,
            "max_abs_error": 0.1,
            "scale": 0.1,
        },  # fmt: skip
    ]
    add = {"name": "features.3", "tflite": "model/tf.math.add_15/Add", "module": "features.3"}
    kept = {"requested": "names", "float_layers": ["model/tf.math.add_15/Add"], "layers": [add]}
    report = report_with(layers, kept, {"source": "s", "named": 1, "unnamed": 1})
    row = next(text for stage, _, _, text in quality.artifact_rows(report.artifacts[0]) if stage == "layer errors")
    assert "ADD features.3 (model/tf.math.add_15/Add) 0.30" in row and "MEAN model/Mean 0.20" in row
    assert "1 of 2 layers without a PyTorch module name" in row
    md = markdown(report)
    assert "| `features.3` | `model/tf.math.add_15/Add` |" in md and "| - | `model/Mean` |" in md
    assert "- `features.3` (`model/tf.math.add_15/Add`)" in md
    page = html.render(report)
    assert "<td><code>features.3</code></td><td><code>model/tf.math.add_15/Add</code></td>" in page
    assert page.count("<td><code>features.3</code></td><td><code>model/tf.math.add_15/Add</code></td>") == 2
    data = overlay.node_data(report.artifacts[0])
    assert data is not None and set(data["results"]) == {"model/tf.math.add_15/Add", "model/Mean"}  # the graph's names


def test_module_names_from_a_model_are_shown_as_text():
    layers = [{"name": HOSTILE, "tflite": HOSTILE + "t", "module": HOSTILE, "op": "ADD", "rmse_scale": 0.3,
               "max_abs_error": 0.1, "scale": 0.1}]  # fmt: skip
    kept = [{"name": HOSTILE, "tflite": HOSTILE + "t", "module": HOSTILE}]
    report = report_with(layers, {"requested": "names", "float_layers": [HOSTILE + "t"], "layers": kept})
    page = html.render(report)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = markdown(report)
    assert "<script>" not in md.replace("`<script>", "")  # only inside code spans
    json.dumps(overlay.node_data(report.artifacts[0]))


def test_an_older_report_without_module_names_still_renders():
    layers = [{"name": "PartitionedCall:0", "op": "FULLY_CONNECTED", "rmse_scale": 0.3, "max_abs_error": 0.1,
               "scale": 0.1}]  # fmt: skip
    report = report_with(layers, {"requested": "names", "float_layers": ["PartitionedCall:0"]})
    assert "| - | `PartitionedCall:0` |" in markdown(report)
    assert "FULLY_CONNECTED PartitionedCall:0 0.30" in quality.artifact_rows(report.artifacts[0])[0][3]
    assert "<code>PartitionedCall:0</code>" in html.render(report)
