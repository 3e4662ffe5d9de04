"""Where a .tflite file's TRANSPOSE ops sit, and its I/O shapes.

Runs INSIDE the litert-torch venv (ai-edge-litert's interpreter reads any
.tflite, whichever converter wrote it), never in the host test process:

    python tflite_layout.py MODEL.tflite

prints JSON: {"inputs": [[shape]...], "outputs": [[shape]...],
"transposes": [{"at_input": bool, "at_output": bool}, ...]}. A transpose at
the input or the output converts the app's layout; any other one is a
layout change inside the graph, between its first and its last layer.
"""

import json
import sys

from ai_edge_litert.interpreter import Interpreter, OpResolverType


def main(path):
    # Without the default delegates the op list is the file's own, not XNNPACK's partitions.
    interp = Interpreter(
        model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    interp.allocate_tensors()
    inputs = {d["index"]: [int(x) for x in d["shape"]] for d in interp.get_input_details()}
    outputs = {d["index"]: [int(x) for x in d["shape"]] for d in interp.get_output_details()}
    transposes = [
        {
            "at_input": any(int(t) in inputs for t in op["inputs"]),
            "at_output": any(int(t) in outputs for t in op["outputs"]),
        }
        for op in interp._get_ops_details()
        if op["op_name"] == "TRANSPOSE"
    ]
    print(json.dumps({"inputs": list(inputs.values()), "outputs": list(outputs.values()), "transposes": transposes}))


if __name__ == "__main__":
    main(sys.argv[1])
