"""Convert stage of the litert-torch family: PyTorch -> fp32 .tflite directly.

litert-torch (Google's PyTorch -> TFLite converter) runs torch.export on the
model and lowers the result to TFLite: no ONNX, no TensorFlow. It takes an
nn.Module, so this stage runs where a current torch is, and loads the model
file itself. Request fields (paths relative to the run directory):
  model         the model file (absolute: it is mounted, not copied)
  model_format  torchscript | exported-program | ... (what the host read)
  input_names, output_names
  input_sets    {set name: npz of stacked sample inputs}; the first sample
                of "samples" is the example torch.export traces with
  layout        null or "nchw": the converter's own (PyTorch's, NCHW);
                "nhwc": 4-D inputs and outputs channels-last
  dynamic_batch refused: litert-torch 0.10 gives a fixed batch size
Writes, in its WORK folder, model_fp32.tflite; the result names it
("tflite") and says how its I/O is laid out against PyTorch's ("layout").
The file's signature carries PyTorch's input and output names.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
# litert-torch prints progress bars through rich on stdout unless told not to.
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")

import contract  # noqa: E402
import module_names  # noqa: E402
from contract import StageFailure, log  # noqa: E402

CHANNELS_LAST = [0, 2, 3, 1]  # NCHW -> NHWC, as the PyTorch axes in the file's order


def flatten_outputs(out):
    """The model's outputs in the order the export stage names them."""
    if isinstance(out, (list, tuple)):
        flat = []
        for item in out:
            flat.extend(flatten_outputs(item))
        return flat
    if isinstance(out, dict):
        return flatten_outputs([out[k] for k in sorted(out)])
    return [out]


def load_model(torch, request):
    """Every format the export stage reads, through the one shared loader
    (common/modelio.py): no second loader that could skip its safeguards."""
    import modelio

    return modelio.load_model(torch, request)


def as_module(torch, model, example):
    """What torch.export can trace: ExportedPrograms through .module(),
    TorchScript through TS2EP plus the shape folding pass."""
    import ts_import

    if isinstance(model, torch.export.ExportedProgram):
        return model.module()
    if isinstance(model, torch.jit.ScriptModule):
        try:
            return ts_import.script_to_module(torch, model, example)
        except Exception as exc:  # noqa: BLE001
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            raise StageFailure("torch %s cannot turn this TorchScript into an ExportedProgram (TS2EPConverter: "
                               "%s: %s). Save the model with torch.export.save instead, or use another converter."
                               % (torch.__version__, type(exc).__name__, lines[0][:300] if lines else ""))
    try:
        model.eval()
    except NotImplementedError:  # ExportedProgram.module() refuses eval(); its graph is fixed already
        pass
    return model


def not_training(module):
    """Wrappers start in training mode; .eval() would recurse into modules
    from ExportedProgram.module(), which refuse train() altogether."""
    module.training = False
    return module


def named(torch, module, input_names, output_names):
    """Keyword inputs and a dict of outputs: litert-torch names the file's
    signature inputs after the keywords and its outputs after the keys."""

    class Named(torch.nn.Module):
        def __init__(self, inner):
            super(Named, self).__init__()
            self.inner = inner

        def forward(self, **kwargs):
            outs = flatten_outputs(self.inner(*[kwargs[n] for n in input_names]))
            return dict(zip(output_names, outs))

    return not_training(Named(module))


def flat(torch, module):
    """The same module with its outputs as one flat tuple (what
    to_channel_last_io indexes)."""

    class FlatOutputs(torch.nn.Module):
        def __init__(self, inner):
            super(FlatOutputs, self).__init__()
            self.inner = inner

        def forward(self, *args):
            return tuple(flatten_outputs(self.inner(*args)))

    return not_training(FlatOutputs(module))


def body(run_dir, request, result):
    import numpy as np
    import torch
    import litert_torch

    import graph_passes

    result["versions"] = {"torch": torch.__version__, "litert_torch": version_of("litert-torch"),
                          "ai_edge_litert": version_of("ai-edge-litert"), "numpy": np.__version__}
    if request.get("dynamic_batch"):
        # Measured with 0.10: a free batch dimension fails as soon as a reshape or most JAX-lowered
        # ops see it ("Shapes must be 1D sequences of concrete values"), so it is refused up front.
        raise StageFailure("litert-torch %s converts a fixed batch size only; another converter may give a "
                           "free batch dimension" % result["versions"]["litert_torch"])
    input_names = request["input_names"]
    sets = contract.load_sets(run_dir, request, np)
    first = sets["samples"]
    example = tuple(torch.from_numpy(np.ascontiguousarray(first[n][0])) for n in input_names)
    module = as_module(torch, load_model(torch, request), example)
    try:
        module = graph_passes.as_graph_module(torch, module, example)
        log("%d spatial mean(s) rewritten to keep the body channels-last"
            % graph_passes.keepdim_spatial_means(torch, module))
    except Exception as exc:  # noqa: BLE001 - an optimisation only: convert the module as it is
        log("graph rewrite skipped: %s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else ""))
    with torch.no_grad():
        outs = flatten_outputs(module(*example))
    output_names = request.get("output_names") or (["output"] if len(outs) == 1 else
                                                  ["output_%d" % i for i in range(len(outs))])
    if len(output_names) != len(outs):
        raise StageFailure("the model has %d outputs but %d output names were given" % (len(outs), len(output_names)))

    import module_locs
    from litert_torch.backend import debuginfo

    paths = module_locs.module_paths(module) if isinstance(module, torch.fx.GraphModule) else {}
    layout = {"inputs": {}, "outputs": {}}
    if request.get("layout") == "nhwc":
        # to_channel_last_io adds permutes before the model's own: theirs would take the model's names
        paths = dict((k, v) for k, v in paths.items() if "permute" not in v[0])
        ins = [i for i, x in enumerate(example) if x.dim() == 4]
        outs4 = [i for i, y in enumerate(outs) if y.dim() == 4]
        module = not_training(litert_torch.to_channel_last_io(flat(torch, module), args=ins, outputs=outs4))
        example = tuple(x.permute(*CHANNELS_LAST).contiguous() if i in ins else x for i, x in enumerate(example))
        layout = {"inputs": dict((input_names[i], CHANNELS_LAST) for i in ins),
                  "outputs": dict((output_names[i], CHANNELS_LAST) for i in outs4)}
    path = contract.work_path(run_dir, request, "model_fp32.tflite")
    undo = module_locs.install(debuginfo, paths)
    try:
        converted = litert_torch.convert(named(torch, module, input_names, output_names),
                                         sample_kwargs=dict(zip(input_names, example)))
        converted.export(path)
    except Exception as exc:  # noqa: BLE001 - torch.export, JAX and MLIR all raise their own
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise StageFailure("litert-torch %s cannot convert this model: %s: %s"
                           % (result["versions"]["litert_torch"], type(exc).__name__,
                              lines[0][:300] if lines else ""))
    finally:
        undo()
    modules = dict((p, p) for _, p in paths.values())
    source = ("torch.export nn_module_stack" if paths else
              "none: %s carries no module stack here" % request.get("model_format", "the model"))
    module_names.write(contract.work_path(run_dir, request, module_names.MAP_FILE), source, modules,
                       module_locs.output_modules(module, paths, output_names) if paths else {})
    result["modules"] = contract.work_rel(request, module_names.MAP_FILE)
    log("%d ops named after their PyTorch module" % len(paths))
    result["tflite"] = contract.work_rel(request, "model_fp32.tflite")
    result["layout"] = layout
    log("fp32 .tflite written with litert-torch %s (%d bytes)%s"
        % (result["versions"]["litert_torch"], os.path.getsize(path),
           ", channels-last I/O" if layout["inputs"] or layout["outputs"] else ""))


def version_of(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - the version is nice to have only
        return "unknown"


if __name__ == "__main__":
    sys.exit(contract.run_stage("convert", body))
