"""A one-node ONNX model that onnx2tf 2.x's flatbuffer_direct backend cannot
lower to TFLite builtins (an Einsum taking a trace, "bii->b"): it becomes a
CUSTOM op, which no TFLite runtime runs. onnxruntime runs it, so it is a
valid model with reference outputs.

Runs INSIDE the local export venv (it has onnx), never in the host test
process:  python onnx_custom_op.py OUT.onnx
"""

import sys

import onnx
from onnx import TensorProto, helper


def main(path):
    node = helper.make_node("Einsum", ["input"], ["output"], equation="bii->b")
    graph = helper.make_graph(
        [node],
        "trace",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every runtime here reads
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1])
