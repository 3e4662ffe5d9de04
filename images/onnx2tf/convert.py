"""Convert stage, onnx2tf family: ONNX -> TensorFlow SavedModel with onnx2tf
(channels-last inside, no Transpose around every convolution), then run it.

Runs inside the onnx2tf environment (onnx2tf 1.29 + TF 2.19 on Python 3.11).
Request fields (paths relative to the run directory):
  onnx          the ONNX file written by the export stage
  input_names, output_names
  input_sets    {set name: npz of stacked sample inputs}, PyTorch's layout
  layout        "nchw", "nhwc" or null (onnx2tf's own: images channels-last)
  dynamic_batch the SavedModel must keep a free batch dimension (None)
Writes, in its WORK folder: model.onnx (the copy onnx2tf rewrites in place),
onnx2tf.log, saved_model/ (signature serving_default: the request's input and
output names) and outputs_<set>.npz in PyTorch's layout. The result's layout
gives, per input and output, the perm from PyTorch's layout to the file's.

Offline by construction: onnx2tf downloads a calibration image file for any
model whose inputs are all 3-channel images, even when given sample data;
here that function returns the request's own samples, and any other attempt
to open a network connection fails the stage.
"""
import contextlib
import itertools
import os
import re
import shutil
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import savedmodel  # noqa: E402
import gelu  # noqa: E402
import keras_names  # noqa: E402
import layouts  # noqa: E402
import module_names  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

# What every model gets (measured in the family's notes): GELU's Erf as
# builtin ops (else tf.Erf, which TFLite lacks); GRU/LSTM unrolled (a WHILE
# loop crashes the int8 converter); MaxPool padded with 0 instead of
# float32.min (which wrecks int8 scales; right only when its input is >= 0,
# so a model that needs the other padding is converted again without it).
FLAGS = {"replace_to_pseudo_operators": ["erf"], "enable_rnn_unroll": True}
INT8_FRIENDLY = {"output_integer_quantized_tflite": True}


def no_network():
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        raise StageFailure("onnx2tf tried to open a network connection to %r; conversions run offline" % (address,))

    socket.socket.connect = connect


def output_producers(onnx, path):
    """{graph output name: name of the ONNX node making it}."""
    graph = onnx.load(path, load_external_data=False).graph
    made = dict((o, node.name) for node in graph.node for o in node.output)
    return dict((o.name, made.get(o.name, "")) for o in graph.output)


def write_modules(onnx, run_dir, request, src, layers):
    """modules.json: the module path of every Keras layer (its ONNX node's)
    and of every output, for the quantize steps to name layers by."""
    fragments = dict((layer, module_names.from_onnx_node(node)) for layer, node in layers.items())
    outputs = dict((o, module_names.from_onnx_node(n)) for o, n in output_producers(onnx, src).items())
    data = module_names.write(contract.work_path(run_dir, request, module_names.MAP_FILE),
                              "onnx2tf Keras layers -> ONNX node names", fragments, outputs)
    log("%d of %d Keras layers named after a PyTorch module" % (len(data["fragments"]), len(layers)))
    return contract.work_rel(request, module_names.MAP_FILE)


def onnx_io(onnx, path):
    model = onnx.load(path, load_external_data=False)
    inits = set(i.name for i in model.graph.initializer)

    def dims(vi):
        return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]

    inputs = [(i.name, dims(i)) for i in model.graph.input if i.name not in inits]
    return inputs, [(o.name, dims(o)) for o in model.graph.output]


def sample_files(np, folder, inputs, samples, layout):
    """One sample per input, in the layout the TF model will have, for
    onnx2tf's own checks (it silently builds a wrong model from data in
    another layout). None when an input is not float (onnx2tf normalizes
    these arrays as images); onnx2tf then makes its own."""
    if any(samples[name].dtype.kind != "f" for name, _ in inputs):
        return None
    out = []
    for i, (name, _) in enumerate(inputs):
        x = samples[name][0].astype(np.float32)
        perm = layouts.input_target(x.ndim, layout)
        path = os.path.join(folder, "sample_%d.npy" % i)
        np.save(path, np.ascontiguousarray(x.transpose(perm)))
        ones = [1] * x.ndim
        out.append([name, path, np.zeros(ones, np.float32), np.ones(ones, np.float32)])
    return out


def local_test_images(np, samples, inputs):
    """What onnx2tf's download_test_image_data returns (up to 20 images,
    NHWC float32), from the request's samples: the user's data when given
    (--calib, --sample-inputs, --eval-data), else the synthetic samples."""
    x = samples[inputs[0][0]][:20]
    x = x.reshape((-1,) + x.shape[2:]).astype(np.float32)  # (N, 1, C, H, W) -> (N, C, H, W)
    if x.ndim == 4 and x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)
    return lambda: np.ascontiguousarray(x)


def run_onnx2tf(onnx2tf, np, request, work_onnx, inputs, samples, extra, logfile):
    folder = os.path.dirname(work_onnx)
    kwargs = dict(FLAGS, **extra)
    kwargs.update(
        input_onnx_file_path=work_onnx,
        output_folder_path=os.path.join(folder, "onnx2tf_out"),
        custom_input_op_name_np_data_path=sample_files(np, folder, inputs, samples, request.get("layout")),
        # renames ONNX names starting with "/" (torch's legacy exporter), which TF cannot save as variables
        output_signaturedefs=True,
        disable_model_save=True,  # the SavedModel is written below, keyed by the ONNX output names
        verbosity="info",
    )
    kept = [name for name, shape in inputs if layouts.keeps_layout(len(shape), request.get("layout"))]
    if kept:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = kept
    sys.modules["onnx2tf.onnx2tf"].download_test_image_data = local_test_images(np, samples, inputs)
    code = None
    with open(logfile, "a") as out, contextlib.redirect_stdout(out):
        try:
            return onnx2tf.convert(**kwargs)
        except SystemExit as exc:  # onnx2tf reports many errors by sys.exit(1) after printing them
            code = exc.code
    raise StageFailure("onnx2tf stopped (exit %r): %s" % (code, last_error(logfile)))


def last_error(logfile):
    with open(logfile) as f:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in f]
    lines = [ln for ln in lines if ln]
    said = [ln for ln in lines if "ERROR" in ln or "Error" in ln] or lines
    return said[-1][:400] if said else "no message (see onnx2tf.log)"


def keras_inputs(model, input_names):
    """The Keras model's inputs in the request's order: by name, else by position."""
    by_name = dict((t.name.split(":")[0], t) for t in model.inputs)
    if all(n in by_name for n in input_names):
        return [by_name[n] for n in input_names]
    if len(model.inputs) != len(input_names):
        raise StageFailure("onnx2tf made a model with inputs %s; the ONNX file has %s"
                           % (sorted(by_name), input_names))
    return list(model.inputs)


def call(model, tensors, output_names):
    outs = model(list(tensors))
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    if len(outs) != len(output_names):
        raise StageFailure("onnx2tf's model has %d outputs; the ONNX file has %d" % (len(outs), len(output_names)))
    return outs


def choose_perms(np, model, ins, input_names, samples, reference, output_names, layout):
    """The inputs' perms (the expected ones unless the numbers say otherwise)
    and the outputs' as onnx2tf made them, with the largest error against
    onnxruntime on the first sample."""
    per_input = []
    for name, tensor in zip(input_names, ins):
        x = samples[name][0]
        shape = [None if d is None else int(d) for d in tensor.shape]
        found = layouts.candidates(list(x.shape), shape, layouts.input_target(x.ndim, layout))
        if not found:
            raise StageFailure("onnx2tf made input %r of shape %s, which no axis order of %s gives"
                               % (name, shape, list(x.shape)))
        per_input.append(found[:4])
    best = None
    for combo in list(itertools.product(*per_input))[:16]:
        feed = [samples[n][0].transpose(p).astype(t.dtype.as_numpy_dtype) for n, p, t in zip(input_names, combo, ins)]
        outs = call(model, arrange(model, ins, feed), output_names)
        found = dict((n, layouts.best_perm(np, reference[n], o.numpy())) for n, o in zip(output_names, outs))
        err = max([e for _, e in found.values()] or [0.0])
        if best is None or err < best[2]:
            best = (dict(zip(input_names, [list(p) for p in combo])), dict((n, p) for n, (p, _) in found.items()), err)
    missing = [n for n, p in best[1].items() if p is None]
    if missing:
        raise StageFailure("onnx2tf's outputs %s have shapes no axis order of the ONNX outputs gives" % missing)
    return best


def arrange(model, ins, tensors):
    """Tensors in the request's input order -> the Keras model's input order."""
    order = [next(i for i, m in enumerate(model.inputs) if m is t) for t in ins]
    arranged = [None] * len(order)
    for pos, index in enumerate(order):
        arranged[index] = tensors[pos]
    return arranged


def save(tf, tf_keras, model, ins, input_names, output_names, moves, path):
    """The SavedModel: signature serving_default with the request's input
    names and the ONNX output names, each output moved to its final layout.
    ExportArchive, not Keras' SavedModel path: that one is slow, and fails on
    variable names starting with "/" (torch's legacy exporter names)."""
    specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for n, t in zip(input_names, ins)]

    def serve(*tensors):
        outs = call(model, arrange(model, ins, list(tensors)), output_names)
        return dict((n, tf.transpose(o, moves[n]) if n in moves else o) for n, o in zip(output_names, outs))

    if os.path.exists(path):
        shutil.rmtree(path)
    archive = tf_keras.export.ExportArchive()
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=specs)
    archive.write_out(path)


def run_saved_model(tf, np, path, arrays, input_names, output_names, perms):
    fn = tf.saved_model.load(path).signatures["serving_default"]
    per_sample = []
    for i in range(contract.sample_count(arrays)):
        feed = dict((n, tf.constant(contract.to_layout(np, arrays[n][i], perms["inputs"][n]))) for n in input_names)
        outs = fn(**feed)
        per_sample.append(dict((n, contract.from_layout(np, outs[n].numpy(), perms["outputs"][n]))
                               for n in output_names))
    return per_sample


def reference_outputs(ort, np, path, inputs, samples, output_names):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = dict((n, samples[n][0]) for n, _ in inputs)
    return dict(zip(output_names, session.run(output_names, feed)))


def body(run_dir, request, result):
    no_network()
    if shutil.which("onnxsim") is None:  # onnx2tf would only warn, then fail later on unsimplified graphs
        raise StageFailure("the onnxsim command is not on PATH (onnx2tf runs it); PATH=%s" % os.environ.get("PATH"))
    import numpy as np
    import onnx
    import onnx2tf
    import onnxruntime as ort
    import tensorflow as tf
    import tf_keras

    result["versions"] = {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__, "onnx": onnx.__version__,
                          "onnxruntime": ort.__version__, "numpy": np.__version__}
    fused = gelu.enable(np)
    recorder = keras_names.install(sys.modules["onnx2tf.onnx2tf"], tf_keras.layers.Layer)
    layout = request.get("layout")
    src = in_run(run_dir, request["onnx"])
    inputs, outputs = onnx_io(onnx, src)
    input_names, output_names = request["input_names"], request["output_names"]
    if sorted(n for n, _ in inputs) != sorted(input_names) or sorted(n for n, _ in outputs) != sorted(output_names):
        raise StageFailure("the ONNX file's inputs %s and outputs %s are not the request's %s and %s"
                           % ([n for n, _ in inputs], [n for n, _ in outputs], input_names, output_names))
    sets = contract.load_sets(run_dir, request, np)
    samples = sets["samples"]
    reference = reference_outputs(ort, np, src, inputs, samples, output_names)
    work_onnx = contract.work_path(run_dir, request, "model.onnx")
    logfile = contract.work_path(run_dir, request, "onnx2tf.log")
    chosen = None
    # onnx2tf refuses the int8-friendly flag for a model with non-float inputs (token ids)
    floats = all(samples[n].dtype.kind == "f" for n, _ in inputs)
    for extra in ((INT8_FRIENDLY, {}) if floats else ({},)):
        shutil.copyfile(src, work_onnx)  # onnx2tf overwrites its input with the simplified graph
        tf_keras.backend.clear_session()
        recorder.clear()
        started = time.time()
        try:
            model = run_onnx2tf(onnx2tf, np, request, work_onnx, inputs, samples, extra, logfile)
        except StageFailure as exc:
            if not extra:
                raise
            log("%s; converting again without the int8-friendly graph" % exc)
            continue
        seconds = time.time() - started
        ins = keras_inputs(model, input_names)
        in_perms, found, err = choose_perms(np, model, ins, input_names, samples, reference, output_names, layout)
        scale = 1.0 + max(float(np.max(np.abs(r))) if r.size else 0.0 for r in reference.values())
        log("onnx2tf %s: %.1f s, max abs error %.3g against onnxruntime%s"
            % (onnx2tf.__version__, seconds, err, " (int8-friendly graph)" if extra else ""))
        if chosen is None or err < chosen[3]:
            chosen = (model, ins, in_perms, err, found, extra, seconds, dict(recorder.layers))
        if err <= 1e-3 * scale:
            break
        if extra:
            log("converting again with onnx2tf's own MaxPool padding (float32.min)")
    model, ins, in_perms, err, found, extra, seconds, layers = chosen
    out_perms = dict((n, layouts.output_target(len(p), p, layout)) for n, p in found.items())
    moves = dict((n, layouts.move(found[n], out_perms[n])) for n in output_names if found[n] != out_perms[n])
    sm_dir = contract.work_path(run_dir, request, "saved_model")
    save(tf, tf_keras, model, ins, input_names, output_names, moves, sm_dir)
    shutil.rmtree(os.path.join(os.path.dirname(work_onnx), "onnx2tf_out"), ignore_errors=True)
    perms = {"inputs": in_perms, "outputs": out_perms}
    result["saved_model"] = contract.work_rel(request, "saved_model")
    result["layout"] = perms
    result["modules"] = write_modules(onnx, run_dir, request, src, layers)
    result["signature"] = savedmodel.signature_facts(tf, sm_dir, request, "onnx2tf")
    result["onnx2tf"] = {"seconds": round(seconds, 2), "flags": sorted(list(FLAGS) + list(extra)),
                         "maxpool_zero_padding": bool(extra), "max_abs_err_onnxruntime": err,
                         "transposed_outputs": sorted(moves), "gelu_divisors": fused["divisors"]}
    log("SavedModel written (%s I/O)" % ", ".join("%s %s" % (n, p) for n, p in sorted({**in_perms, **out_perms}.items())))
    for set_name, arrays in sorted(sets.items()):
        outs = run_saved_model(tf, np, sm_dir, arrays, input_names, output_names, perms)
        contract.save_outputs(contract.work_path(run_dir, request, "outputs_%s.npz" % set_name), outs, np)
        log("SavedModel run on %d %s inputs" % (len(outs), set_name))


if __name__ == "__main__":
    sys.exit(contract.run_stage("convert", body))
