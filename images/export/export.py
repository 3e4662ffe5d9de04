"""Export stage: the user's model -> ONNX, plus the reference outputs.

Runs inside the export environment (torch 1.7 + onnx 1.9 on Python 3.9, or
torch 2.x on 3.11). Request fields (paths relative to the run directory):
  action        "export" (default) or "example" (build an example model)
  model         the model file (absolute: it is mounted, not copied)
  model_format  torchscript | exported-program | state-dict | pickle | onnx,
                and arch, arch_kwargs, code_dir, trusted: see common/modelio.py
  input_names, input_shapes, input_dtypes, output_names (optional)
  dynamic_batch export with a free batch dimension (ONNX dynamic_axes)
  reference     write the reference outputs (default true)
  opset         export ONNX at this opset (null: no ONNX)
  input_sets    {set name: npz of stacked sample inputs}
  onnx_renames  ONNX model files: {name in the file: name to use}
Writes, in its WORK folder: reference_<set>.npz (PyTorch's outputs, or
onnxruntime's for an ONNX model file), model.onnx and, where onnxruntime is
installed, onnx_<set>.npz.
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import modelio  # noqa: E402
from contract import InputProblem, StageFailure, in_run, log  # noqa: E402


def flatten_outputs(out):
    if isinstance(out, (list, tuple)):
        flat = []
        for item in out:
            flat.extend(flatten_outputs(item))
        return flat
    if isinstance(out, dict):
        return flatten_outputs([out[k] for k in sorted(out)])
    return [out]


def structure_names(out):
    """Names a model gives its outputs itself: a dict's keys (sorted, as
    flatten_outputs orders them) or a namedtuple's fields, one level deep."""
    if isinstance(out, dict):
        keys = sorted(out)
        values = [out[k] for k in keys]
    elif isinstance(out, tuple) and hasattr(out, "_fields"):
        keys, values = list(out._fields), list(out)
    else:
        return None
    if all(isinstance(k, str) and k.isidentifier() for k in keys) and not any(
            isinstance(v, (list, tuple, dict)) for v in values):
        return keys
    return None


def output_names_for(count, requested, own=None):
    if requested:
        if len(requested) != count:
            raise StageFailure("the model has %d outputs but %d output names were given"
                               % (count, len(requested)))
        return list(requested)
    if own and len(own) == count:
        return list(own)
    return ["output"] if count == 1 else ["output_%d" % i for i in range(count)]


def run_reference(torch, np, model, arrays, input_names, requested_names):
    per_sample = []
    names = None
    with torch.no_grad():
        for i in range(contract.sample_count(arrays)):
            args = [torch.from_numpy(np.ascontiguousarray(arrays[n][i])) for n in input_names]
            try:
                raw = model(*args)
            except Exception as exc:  # noqa: BLE001
                shapes = ", ".join("%s=%s%s" % (n, list(arrays[n][i].shape),
                                                "" if arrays[n].dtype.kind == "f" else " " + str(arrays[n].dtype))
                                   for n in input_names)
                first = str(exc).strip().splitlines()
                hint = ""
                if any(arrays[n].dtype.kind in "iu" for n in input_names):
                    hint = " (integer inputs: give their range with --input NAME:SHAPE:int64:LOW..HIGH)"
                raise InputProblem("the model rejects inputs of shape %s: %s%s"
                                   % (shapes, first[-1] if first else type(exc).__name__, hint))
            outs = flatten_outputs(raw)
            if names is None:
                names = output_names_for(len(outs), requested_names, structure_names(raw))
            per_sample.append(dict((n, o.detach().cpu().numpy()) for n, o in zip(names, outs)))
    return names, per_sample


def freeze(torch, model):
    """A frozen copy of a scripted model: attributes inlined, the training
    branches (BatchNorm's num_batches_tracked update) gone. torch 1.7's
    exporter cannot export those branches."""
    from torch.jit._recursive import wrap_cpp_module

    frozen = wrap_cpp_module(torch._C._freeze_module(model._c))
    object.__setattr__(frozen, "training", False)  # freezing drops it; the exporter reads it
    return frozen


def export_onnx(torch, model, example_args, path, input_names, output_names, opset, dynamic_batch=False):
    params = inspect.signature(torch.onnx.export).parameters
    kwargs = {}
    # torch >= 2.9 defaults to the dynamo exporter, whose opset-18 graphs
    # onnx-tf cannot read: ask for the TorchScript exporter explicitly.
    if "dynamo" in params:
        kwargs["dynamo"] = False
    if dynamic_batch:
        kwargs["dynamic_axes"] = dict((n, {0: "batch"}) for n in list(input_names) + list(output_names))

    def export(m):
        if "example_outputs" in params:  # required for ScriptModules before torch 1.10
            with torch.no_grad():
                kwargs["example_outputs"] = m(*example_args)
        torch.onnx.export(m, tuple(example_args), path, export_params=True,
                          do_constant_folding=True, input_names=input_names,
                          output_names=output_names, opset_version=opset, **kwargs)

    try:
        export(model)
    except RuntimeError as exc:
        if "SetAttr" not in str(exc):
            raise
        log("retrying the export on a frozen copy (%s)" % str(exc).strip().splitlines()[0][:80])
        export(freeze(torch, model))


def run_onnxruntime(np, onnx_path, arrays, input_names, output_names):
    try:
        import onnxruntime
    except ImportError:
        return None, None
    sess = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    per_sample = []
    for i in range(contract.sample_count(arrays)):
        feed = dict((n, np.ascontiguousarray(arrays[n][i])) for n in input_names)
        outs = sess.run(output_names, feed)
        per_sample.append(dict(zip(output_names, outs)))
    return onnxruntime.__version__, per_sample


def check_sets(sets, input_names):
    for set_name, arrays in sorted(sets.items()):
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise InputProblem("input set %r has no array for input(s) %s" % (set_name, ", ".join(missing)))


def describe_outputs(outs, names):
    return [{"name": n, "shape": [int(d) for d in outs[0][n].shape], "dtype": str(outs[0][n].dtype)}
            for n in names]


def do_export(run_dir, request, result):
    """Reference outputs (``reference``: true) and/or an ONNX file at
    ``opset`` (null: none), into this step's folder."""
    import numpy as np

    if request.get("model_format") == "onnx":
        return do_onnx_model(run_dir, request, result, np)
    import torch

    result["versions"] = {"torch": torch.__version__, "numpy": np.__version__}
    input_names = request["input_names"]
    model = modelio.load_model(torch, request)
    own = modelio.input_names(model)
    if own:
        result["model_input_names"] = own
    sets = contract.load_sets(run_dir, request, np)
    check_sets(sets, input_names)
    output_names = request.get("output_names")
    if request.get("reference", True):
        for set_name, arrays in sorted(sets.items()):
            output_names, outs = run_reference(torch, np, model, arrays, input_names, output_names)
            contract.save_outputs(contract.work_path(run_dir, request, "reference_%s.npz" % set_name), outs, np)
            log("PyTorch reference on %d %s inputs" % (len(outs), set_name))
            if set_name == "samples":
                result["outputs"] = describe_outputs(outs, output_names)
        result["reference"] = "torch"
    else:
        output_names, _ = run_reference(torch, np, model, contract.first_sample(sets["samples"]), input_names,
                                        output_names)
    result["output_names"] = output_names
    if request.get("opset"):
        export_and_check(run_dir, request, result, torch, np, model, sets, output_names)


def export_and_check(run_dir, request, result, torch, np, model, sets, output_names):
    import onnx

    input_names = request["input_names"]
    result["versions"]["onnx"] = onnx.__version__
    first = sets["samples"]
    example = [torch.from_numpy(np.ascontiguousarray(first[n][0])) for n in input_names]
    onnx_path = contract.work_path(run_dir, request, "model.onnx")
    export_onnx(torch, model, example, onnx_path, input_names, output_names, int(request["opset"]),
                bool(request.get("dynamic_batch")))
    onnx_model = onnx.load(onnx_path)
    onnx.checker.check_model(onnx_model)
    result["onnx"] = onnx_facts(request, onnx_model)
    log("ONNX opset %d, %d nodes, checker passed" % (result["onnx"]["opset"], result["onnx"]["nodes"]))
    for set_name, arrays in sorted(sets.items()):
        version, outs = run_onnxruntime(np, onnx_path, arrays, input_names, output_names)
        if version is None:
            break
        result["versions"]["onnxruntime"] = version
        contract.save_outputs(contract.work_path(run_dir, request, "onnx_%s.npz" % set_name), outs, np)


def onnx_facts(request, onnx_model):
    return {
        "opset": max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
        "nodes": len(onnx_model.graph.node),
        "file": contract.work_rel(request, "model.onnx"),
    }


def rename_onnx(onnx_model, renames):
    """Give graph inputs and outputs the names the host uses (names TensorFlow
    keeps as they are), everywhere they appear."""
    graph = onnx_model.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)


def do_onnx_model(run_dir, request, result, np):
    """The model is an ONNX file: it is its own reference. A copy (names made
    TensorFlow-safe) is what the converters read; onnxruntime gives the
    reference outputs."""
    import onnx

    result["versions"] = {"onnx": onnx.__version__, "numpy": np.__version__}
    try:
        onnx_model = onnx.load(request["model"])
        onnx.checker.check_model(onnx_model)
    except Exception as exc:  # noqa: BLE001
        raise InputProblem("%s is not an ONNX model onnx %s accepts: %s"
                           % (request["model"], onnx.__version__, modelio.first_line(exc)))
    renames = request.get("onnx_renames") or {}
    if renames:
        rename_onnx(onnx_model, renames)
        log("renamed %s" % ", ".join("%s -> %s" % kv for kv in sorted(renames.items())))
    onnx_path = contract.work_path(run_dir, request, "model.onnx")
    onnx.save(onnx_model, onnx_path)
    result["onnx"] = onnx_facts(request, onnx_model)
    result["onnx"]["source"] = "model file"
    input_names = request["input_names"]
    output_names = [o.name for o in onnx_model.graph.output]
    sets = contract.load_sets(run_dir, request, np)
    check_sets(sets, input_names)
    for set_name, arrays in sorted(sets.items()):
        try:
            version, outs = run_onnxruntime(np, onnx_path, arrays, input_names, output_names)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors name the input at fault
            raise InputProblem("onnxruntime cannot run %s on the %s inputs: %s"
                               % (request["model"], set_name, modelio.first_line(exc)))
        if version is None:
            raise StageFailure("onnxruntime is not installed here: it makes the reference of an ONNX model")
        result["versions"]["onnxruntime"] = version
        contract.save_outputs(contract.work_path(run_dir, request, "reference_%s.npz" % set_name), outs, np)
        log("onnxruntime reference on %d %s inputs" % (len(outs), set_name))
        if set_name == "samples":
            result["outputs"] = describe_outputs(outs, output_names)
    result["output_names"] = output_names
    result["reference"] = "onnxruntime"
    log("ONNX opset %d, %d nodes: the model file is the reference" % (result["onnx"]["opset"],
                                                                       result["onnx"]["nodes"]))


def do_example(run_dir, request, result):
    import torch

    import example
    result["versions"] = {"torch": torch.__version__}
    model = example.build(request["example"], request["input_shape"], int(request.get("seed", 0)))
    path = in_run(run_dir, request["output"])
    # Traced, not scripted: torch 1.7's ONNX exporter cannot export a scripted
    # BatchNorm (its training branch writes an attribute) nor a scripted flatten.
    example_input = torch.randn(*[int(d) for d in request["input_shape"]])
    torch.jit.save(torch.jit.trace(model, (example_input,)), path)
    result["model"] = request["output"]
    log("saved %s example to %s" % (request["example"], request["output"]))


def body(run_dir, request, result):
    action = request.get("action", "export")
    if action == "example":
        do_example(run_dir, request, result)
    elif action == "export":
        do_export(run_dir, request, result)
    else:
        raise StageFailure("unknown action %r" % action)


if __name__ == "__main__":
    sys.exit(contract.run_stage("export", body))
