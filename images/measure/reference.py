"""Reference stage for a float .tflite (`convertctl quantize MODEL.tflite`):
the file's own outputs on the sample inputs, by LiteRT, the interpreter
apps ship. The quantized files are then judged against these, as the other
model formats' files are judged against PyTorch's (or onnxruntime's).

Runs in the measure environment (ai-edge-litert and numpy only). Request
fields (paths relative to the run directory; the model is absolute):
  model         the float .tflite
  input_names   the model's inputs, in order (as its signature names them)
  input_sets    {set name: npz of stacked sample inputs}
Writes, in its WORK folder: model.tflite (the file, copied: what the quantize
steps read) and reference_<set>.npz. A file that is already quantized (an
integer input or output, or integer weights) is refused: quantizing it again
would judge a quantized file against itself.
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
from contract import InputProblem, log  # noqa: E402


def quantized_weights(path):
    """How many weighted ops store non-float32 weights (tflite_tensors' facts)."""
    try:
        import tflite_tensors
        facts = tflite_tensors.tensor_dtypes_of(path)
    except Exception:  # noqa: BLE001 - a fact, not a gate: the interpreter check below still holds
        return 0
    return sum(n for by_dtype in facts.get("weights", {}).values() for dtype, n in by_dtype.items()
               if dtype != "float32")


def body(run_dir, request, result):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    result["versions"] = {"numpy": np.__version__}
    model = request["model"]
    copy = contract.work_path(run_dir, request, "model.tflite")
    shutil.copyfile(model, copy)
    try:
        interp = Interpreter(model_path=copy)
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001 - LiteRT raises many kinds
        raise InputProblem("%s is not a .tflite LiteRT can load (%s)" % (model, str(exc).splitlines()[0][:300]))
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    # Integer inputs (token ids) are fine; quantized I/O (int8/uint8/int16 with a scale) is not.
    not_float = ["%s %s" % (n, np.dtype(d["dtype"]).name) for n, d in list(ins.items()) + list(outs.items())
                 if np.dtype(d["dtype"]).kind != "f" and (d.get("quantization") or (0.0, 0))[0]]
    stored = quantized_weights(copy)
    if not_float or stored:
        why = ("its inputs are %s" % ", ".join(not_float)) if not_float else "%d weighted ops store integer weights" % stored
        raise InputProblem("%s is already quantized (%s): give the float .tflite to quantize" % (model, why))
    names = request["input_names"]
    sets = contract.load_sets(run_dir, request, np)
    output_names = sorted(outs)
    for set_name, arrays in sorted(sets.items()):
        per_sample = []
        for i in range(contract.sample_count(arrays)):
            feed = dict((n, arrays[n][i].astype(ins[n]["dtype"])) for n in names)
            got = runner(**feed)
            per_sample.append(dict((k, np.asarray(got[k])) for k in output_names))
        contract.save_outputs(contract.work_path(run_dir, request, "reference_%s.npz" % set_name), per_sample, np)
        log("reference on %s: %d samples" % (set_name, len(per_sample)))
    result["output_names"] = output_names
    result["outputs"] = [{"name": k, "shape": [int(d) for d in outs[k]["shape"]], "dtype": "float32"}
                         for k in output_names]
    result["reference"] = "litert"
    result["tflite"] = contract.work_rel(request, "model.tflite")


if __name__ == "__main__":
    sys.exit(contract.run_stage("export", body))
