"""Export stage: TorchScript -> ONNX, plus the PyTorch reference outputs.

Runs inside the export environment (torch 1.7 + onnx 1.9 on Python 3.9, or
torch 2.x on 3.11). Request fields (paths relative to the run directory):
  action        "export" (default) or "example" (build an example model)
  model         the TorchScript file (absolute: it is mounted, not copied)
  input_names, input_shapes, output_names (optional)
  reference     write the PyTorch reference outputs (default true)
  opset         export ONNX at this opset (null: no ONNX)
  input_sets    {set name: npz of stacked sample inputs}
Writes, in its WORK folder: reference_<set>.npz (PyTorch), model.onnx and,
where onnxruntime is installed, onnx_<set>.npz.
"""
import inspect
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
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


def output_names_for(count, requested):
    if requested:
        if len(requested) != count:
            raise StageFailure("the model has %d outputs but %d output names were given"
                               % (count, len(requested)))
        return list(requested)
    return ["output"] if count == 1 else ["output_%d" % i for i in range(count)]


def probe_load(torch, path):
    """Older torch aborts the whole process (no exception) on TorchScript
    written by a newer torch. Try the load in a forked child first, so the
    user gets an explanation instead of a core dump."""
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # child: report by exit status only
        try:
            torch.jit.load(path, map_location="cpu")
            os._exit(0)
        except BaseException:  # noqa: BLE001 - the parent loads again and reports
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise InputProblem("torch %s crashed loading %s (signal %d). TorchScript saved by a newer torch "
                           "does not load in an older one: save the model with torch <= %s, or pick an "
                           "export image with a newer torch (--export-image)."
                           % (torch.__version__, path, os.WTERMSIG(status), torch.__version__.split("+")[0]))


def load_model(torch, path):
    probe_load(torch, path)
    try:
        model = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        raise InputProblem("%s is not a TorchScript file torch %s can load (%s). Save it with "
                           "torch.jit.save(torch.jit.script(model) or torch.jit.trace(model, x), path)."
                           % (path, torch.__version__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    model.eval()
    return model


def run_reference(torch, np, model, arrays, input_names, requested_names):
    per_sample = []
    names = None
    with torch.no_grad():
        for i in range(contract.sample_count(arrays)):
            args = [torch.from_numpy(np.ascontiguousarray(arrays[n][i])) for n in input_names]
            try:
                outs = flatten_outputs(model(*args))
            except Exception as exc:  # noqa: BLE001
                shapes = ", ".join("%s=%s" % (n, list(arrays[n][i].shape)) for n in input_names)
                first = str(exc).strip().splitlines()
                raise InputProblem("the model rejects inputs of shape %s: %s"
                                   % (shapes, first[-1] if first else type(exc).__name__))
            if names is None:
                names = output_names_for(len(outs), requested_names)
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


def export_onnx(torch, model, example_args, path, input_names, output_names, opset):
    params = inspect.signature(torch.onnx.export).parameters
    kwargs = {}
    # torch >= 2.9 defaults to the dynamo exporter, whose opset-18 graphs
    # onnx-tf cannot read: ask for the TorchScript exporter explicitly.
    if "dynamo" in params:
        kwargs["dynamo"] = False

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


def do_export(run_dir, request, result):
    """Reference outputs (``reference``: true) and/or an ONNX file at
    ``opset`` (null: none), into this step's folder."""
    import numpy as np
    import torch

    result["versions"] = {"torch": torch.__version__, "numpy": np.__version__}
    input_names = request["input_names"]
    model = load_model(torch, request["model"])
    sets = contract.load_sets(run_dir, request, np)
    for set_name, arrays in sorted(sets.items()):
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise InputProblem("input set %r has no array for input(s) %s" % (set_name, ", ".join(missing)))
    output_names = request.get("output_names")
    if request.get("reference", True):
        for set_name, arrays in sorted(sets.items()):
            output_names, outs = run_reference(torch, np, model, arrays, input_names, output_names)
            contract.save_outputs(contract.work_path(run_dir, request, "reference_%s.npz" % set_name), outs, np)
            log("PyTorch reference on %d %s inputs" % (len(outs), set_name))
            result["outputs"] = [{"name": n, "shape": [int(d) for d in outs[0][n].shape],
                                  "dtype": str(outs[0][n].dtype)} for n in output_names]
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
    export_onnx(torch, model, example, onnx_path, input_names, output_names, int(request["opset"]))
    onnx_model = onnx.load(onnx_path)
    onnx.checker.check_model(onnx_model)
    result["onnx"] = {
        "opset": max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")),
        "nodes": len(onnx_model.graph.node),
        "file": contract.work_rel(request, "model.onnx"),
    }
    log("ONNX opset %d, %d nodes, checker passed" % (result["onnx"]["opset"], result["onnx"]["nodes"]))
    for set_name, arrays in sorted(sets.items()):
        version, outs = run_onnxruntime(np, onnx_path, arrays, input_names, output_names)
        if version is None:
            break
        result["versions"]["onnxruntime"] = version
        contract.save_outputs(contract.work_path(run_dir, request, "onnx_%s.npz" % set_name), outs, np)


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
