"""Convert stage: ONNX -> TensorFlow SavedModel with onnx-tf, then run it.

Runs inside a convert environment (onnx-tf 1.10 + TF 2.8 on Python 3.9, or
TF 2.15 on 3.11). Request fields (paths relative to the run directory):
  onnx          the ONNX file written by the export stage
  input_names, output_names
  input_sets    {set name: npz of stacked sample inputs}
  dynamic_batch the SavedModel must keep a free batch dimension (None)
Writes, in its WORK folder: saved_model/ and outputs_<set>.npz. onnx-tf keeps
PyTorch's layout (NCHW): the result's layout is the identity.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import module_names  # noqa: E402
import savedmodel  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402


def run_saved_model(tf, np, path, arrays, input_names, output_names):
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    per_sample = []
    for i in range(contract.sample_count(arrays)):
        feed = dict((n, tf.constant(arrays[n][i])) for n in input_names)
        outs = fn(**feed)
        missing = [n for n in output_names if n not in outs]
        if missing:
            raise StageFailure("the SavedModel signature has outputs %s, expected %s"
                               % (sorted(outs), output_names))
        per_sample.append(dict((n, outs[n].numpy()) for n in output_names))
    return per_sample


def drop_empty_trailing_inputs(model):
    """An optional input left out is named "" in ONNX; onnx-tf 1.10 looks
    every input name up and fails with KeyError: '' (torch 2.x exports
    F.pad as Pad(data, pads, "")). Trailing empty inputs mean the same as
    absent ones, so they are dropped. Returns how many were."""
    dropped = 0
    for node in model.graph.node:
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
            dropped += 1
    return dropped


def record_ops(tf, backend_class):
    """{TensorFlow op name: ONNX node name} of every op onnx-tf creates while
    it converts each node (TensorFlowBackend._onnx_node_to_tensorflow_op,
    called while the graph is traced): the .tflite tensor names are those op
    names, the ONNX node names carry the PyTorch module paths. Constants are
    left out: folded into whatever uses them, they name no layer."""
    made = {}
    real = backend_class._onnx_node_to_tensorflow_op.__func__

    def convert_node(cls, node, tensor_dict, handlers=None, opset=None, strict=True):
        graph = tf.compat.v1.get_default_graph()
        before = len(graph.get_operations())
        out = real(cls, node, tensor_dict, handlers, opset, strict)
        for op in graph.get_operations()[before:]:
            if op.type != "Const":
                made[op.name] = getattr(node, "name", "") or ""
        return out

    backend_class._onnx_node_to_tensorflow_op = classmethod(convert_node)
    return made


def write_modules(run_dir, request, onnx_model, made):
    fragments = dict((op, module_names.from_onnx_node(node)) for op, node in made.items())
    producer = dict((o, node.name) for node in onnx_model.graph.node for o in node.output)
    outputs = dict((o.name, module_names.from_onnx_node(producer.get(o.name, ""))) for o in onnx_model.graph.output)
    data = module_names.write(contract.work_path(run_dir, request, module_names.MAP_FILE),
                              "onnx-tf ops -> ONNX node names", fragments, outputs)
    log("%d of %d TensorFlow ops named after a PyTorch module" % (len(data["fragments"]), len(made)))
    return contract.work_rel(request, module_names.MAP_FILE)


def body(run_dir, request, result):
    import numpy as np
    import onnx
    import tensorflow as tf
    from onnx_tf import backend

    try:
        import onnx_tf
        onnx_tf_version = onnx_tf.version.version
    except Exception:  # noqa: BLE001 - the version is nice to have only
        onnx_tf_version = "unknown"
    result["versions"] = {"tensorflow": tf.__version__, "onnx": onnx.__version__,
                          "onnx_tf": onnx_tf_version, "numpy": np.__version__}
    onnx_model = onnx.load(in_run(run_dir, request["onnx"]))
    if drop_empty_trailing_inputs(onnx_model):
        log("dropped empty optional inputs onnx-tf cannot look up")
    out_dir = contract.work_path(run_dir, request, "saved_model")
    made = record_ops(tf, backend.TensorflowBackend)
    try:
        rep = backend.prepare(onnx_model)
        rep.export_graph(out_dir)
    except Exception as exc:  # noqa: BLE001
        text = str(exc).strip().splitlines()
        raise StageFailure("onnx-tf %s with TensorFlow %s cannot convert this model: %s: %s. "
                           "Another convert image (--convert-image) may."
                           % (onnx_tf_version, tf.__version__, type(exc).__name__, text[-1] if text else ""))
    result["saved_model"] = contract.work_rel(request, "saved_model")
    result["layout"] = {"inputs": {}, "outputs": {}}  # no permutation: PyTorch's layout
    result["modules"] = write_modules(run_dir, request, onnx_model, made)
    result["signature"] = savedmodel.signature_facts(tf, out_dir, request, "onnx-tf")
    log("SavedModel written with onnx-tf %s / TF %s" % (onnx_tf_version, tf.__version__))
    sets = contract.load_sets(run_dir, request, np)
    for set_name, arrays in sorted(sets.items()):
        outs = run_saved_model(tf, np, out_dir, arrays, request["input_names"], request["output_names"])
        contract.save_outputs(contract.work_path(run_dir, request, "outputs_%s.npz" % set_name), outs, np)
        log("SavedModel run on %d %s inputs" % (len(outs), set_name))


if __name__ == "__main__":
    sys.exit(contract.run_stage("convert", body))
