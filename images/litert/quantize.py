"""Quantize stage of the litert-torch family: the fp32 .tflite -> one mode's
file, inspected and run with LiteRT's interpreter.

One mode per process (a native crash loses that mode only), in the same
environment as the convert stage, without TensorFlow: litert-quantizer (the
renamed ai-edge-quantizer) quantizes the fp32 flatbuffer itself, as Google's
LiteRT docs advise (convert to float, then quantize). Request fields
(relative paths):
  tflite        the fp32 file from the convert stage
  mode, mode_spec  what to make (common/modes.py): weights float32 | float16
                | int8 | int4, activations float32 | int8 | int16 | dynamic,
                calibrated, granularity tensor | channel | block, block_size;
                recipes.py maps each to a recipe and names what it cannot make
  calibration   npz of stacked float inputs (PyTorch's layout), every sample used
  calibration_stat  minmax (default: the absolute range over all samples,
                as TensorFlow's converter does) or ema (the quantizer's
                default moving average of per-sample ranges)
  int8_io       int8 (default), float or uint8: the I/O of an int8 file;
                int16 activations: int16 I/O unless float
  debug_samples, float_layers, search
                int8 activations: per-layer error (layer_errors.py) and the
                layers kept float (common/int8_search.py), one calibration
                for every try; layers are named by PyTorch module path where
                the convert step's modules.json (request "modules") knows it,
                else by op output tensor name (common/module_names.py)
  input_sets, layout, allow_flex, latency_runs, threads: as for every
                quantize stage (images/quantize/quantize.py)
Writes, in its WORK folder, model.tflite and outputs_<set>.npz; the artifact
adds to tflite_run's facts: quantizer ("litert-quantizer 0.11.0"),
mode_spec (as made), granularity_note (when the file's weight granularity
differs from the spec's), io, layer_errors and selective (int8).
"""

import os
import shutil
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
import int8_search  # noqa: E402
import layer_errors  # noqa: E402
import module_names  # noqa: E402
import modes  # noqa: E402
import recipes  # noqa: E402
import tflite_run  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

INT8_IO = ("int8", "float", "uint8")


def version_of(dist):
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - the version is nice to have only
        return "unknown"


def quantizer_name():
    return "litert-quantizer " + version_of("litert-quantizer")


def calibration_data(np, interpreter_class, run_dir, request, fp32):
    """{signature key: [{input name: one sample in the file's layout and dtype}]}"""
    with np.load(in_run(run_dir, request["calibration"])) as data:
        calib = dict((k, data[k]) for k in data.files)
    interp = interpreter_class(model_path=fp32)
    signatures = interp.get_signature_list()
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    details = interp.get_signature_runner(key).get_input_details()
    perms = (request.get("layout") or {}).get("inputs", {})
    names = request["input_names"]
    missing = [n for n in names if n not in calib or n not in details]
    if missing:
        raise StageFailure("calibration data or the fp32 file has no input %s" % ", ".join(missing))
    samples = []
    for i in range(contract.sample_count(calib)):  # every sample
        samples.append(
            dict((n, contract.to_layout(np, calib[n][i], perms.get(n)).astype(details[n]["dtype"])) for n in names)
        )
    return {key: samples}


def op_scopes(interpreter_class, fp32):
    """{layer name: the op's scope in recipes}, the names of the layers that
    make a graph output, and {layer name: its op}. A layer is named by its op's first output
    tensor; the quantizer matches the op on all its outputs."""
    interp = interpreter_class(model_path=fp32)
    names = dict((t["index"], t["name"]) for t in interp.get_tensor_details())
    scopes, kinds = {}, {}
    for op in interp._get_ops_details():
        outs = [names[int(t)] for t in op["outputs"] if int(t) >= 0 and names.get(int(t))]
        if outs and op["op_name"] != "DELEGATE":
            scopes.setdefault(outs[0], ";".join(outs) + ";")
            kinds.setdefault(outs[0], op["op_name"])
    return scopes, set(names[d["index"]] for d in interp.get_output_details()), kinds


class Plan(object):
    """One calibration, many files (int8_search's plan): the fp32 file, the
    spec, and the ranges every try shares."""

    def __init__(self, np, interpreter_class, run_dir, request, spec, fp32):
        from litert_quantizer import calibrator, quantizer
        from litert_quantizer.utils import qsv_utils

        self.spec, self.fp32, self.work = spec, fp32, contract.work_path(run_dir, request, "")
        self.scopes, self.graph_outputs, self.kinds = op_scopes(interpreter_class, fp32)
        rel = request.get("modules")
        self.names = module_names.Names.load(
            in_run(run_dir, rel) if rel else None,
            tflite_run.output_tensor_names(interpreter_class(model_path=fp32)))
        self.ranges, self.samples = None, []
        qt = quantizer.Quantizer(fp32, recipes.recipe(spec))
        if qt.need_calibration:
            data = calibration_data(np, interpreter_class, run_dir, request, fp32)
            self.samples = next(iter(data.values()))
            threads = max(1, min(os.cpu_count() or 1, 4))
            if request.get("calibration_stat", "minmax") == "ema":
                self.ranges = qt.calibrate(data, num_threads=threads)
            else:  # absolute min/max over every sample; the public calibrate() has no switch for it
                with open(fp32, "rb") as f:
                    cal = calibrator.Calibrator(f.read(), num_threads=threads, qsv_update_func=qsv_utils.min_max_update)
                cal.calibrate(data, qt._recipe_manager)
                self.ranges = cal.get_model_qsvs()
            log("%s: calibrated on %d samples" % (spec["name"], len(self.samples)))

    def raw(self, float_layers=()):
        """The quantizer's file (int8 or int16 I/O when activations are quantized)."""
        from litert_quantizer import quantizer

        unknown = [n for n in float_layers if n not in self.scopes]
        if unknown:
            raise StageFailure(
                "--int8-float-layers: no layer named %s in the float file" % ", ".join(repr(n) for n in unknown)
            )
        qt = quantizer.Quantizer(self.fp32, recipes.recipe(self.spec, [self.scopes[n] for n in float_layers]))
        return bytes(qt.quantize(self.ranges, enable_progress_report=False).quantized_model)

    def quantize(self, io, float_layers):
        """The file with its I/O as asked: int8 / int16 as made; float and
        uint8 are flatbuffer rewrites (io_rewrite.py)."""
        blob = self.raw(float_layers)
        if io in ("int8", "int16"):
            return blob
        import io_rewrite

        src, mid, dst = (os.path.join(self.work, ".io-%s.tflite" % k) for k in ("in", "float", "uint8"))
        with open(src, "wb") as f:
            f.write(blob)
        io_rewrite.add_float_io(src, mid)
        if io == "uint8":
            io_rewrite.to_uint8_io(mid, dst)
        with open(dst if io == "uint8" else mid, "rb") as f:
            blob = f.read()
        for path in (src, mid, dst):
            if os.path.exists(path):
                os.remove(path)
        return blob


def int8_file(np, interpreter_class, run_dir, request, plan, sets, info):
    """int8 activations: per-layer error, then the file with the layers the
    request keeps float (int8_search), from one calibration."""
    count = int(request.get("debug_samples", 16))
    ranking = []
    if count > 0:
        with open(plan.fp32, "rb") as f:
            float_blob = f.read()
        samples = plan.samples[:count]
        ranking = plan.names.annotate(layer_errors.ranking(np, interpreter_class, float_blob, plan.raw(), samples))
        info["layer_errors"] = {
            "metric": layer_errors.METRIC,
            "samples": len(samples),
            "total": len(ranking),
            "modules": plan.names.summary(ranking),
            "layers": ranking[: int8_search.TOP],
        }
        if ranking:
            log(
                "worst int8 layers (RMSE/scale added): "
                + ", ".join("%s %.2f" % (r["op"], r["rmse_scale"]) for r in ranking[:3])
            )
    asked = want = request.get("float_layers")
    if isinstance(want, list):  # module paths to tensor names, against every op of the file
        every = plan.names.annotate([{"name": n, "op": plan.kinds.get(n)} for n in plan.scopes])
        want = int8_search.resolve(want, every)
        request = dict(request, float_layers=want)
    if (request.get("int8_io") or "int8") != "float":
        # The quantizer leaves a graph output float when the layer making it
        # stays float (TensorFlow's adds a QUANTIZE): not an int8-I/O file.
        edge = [n for n in (want if isinstance(want, list) else []) if n in plan.graph_outputs]
        if edge:
            raise StageFailure(
                "--int8-float-layers: %s makes the model's output, which would then be float "
                "too: add --int8-io float to keep it float" % ", ".join(repr(n) for n in edge)
            )
        ranking = [r for r in ranking if r["tflite"] not in plan.graph_outputs]
    blob, chosen = int8_search.choose(plan, np, interpreter_class, run_dir, request, ranking, sets)
    if chosen:
        if isinstance(asked, list):
            chosen.update(asked=list(asked), layers=module_names.described(want, plan.names.annotate(
                [{"name": n} for n in plan.scopes])))
        info["selective"] = chosen
    return blob


def one_mode(np, interpreter_class, run_dir, request, spec, sets):
    info = {"mode": request["mode"], "mode_spec": spec, "quantizer": quantizer_name(), "status": "failed"}
    note = recipes.granularity_note(spec)
    if note:
        info["granularity_note"] = note
    fp32 = in_run(run_dir, request["tflite"])
    out = contract.work_path(run_dir, request, "model.tflite")
    io = request.get("int8_io") or "int8"
    # The calibrator keeps every tensor on purpose; LiteRT warns about it on every run.
    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
    try:
        if modes.is_float(spec):
            shutil.copyfile(fp32, out)
        else:
            plan = Plan(np, interpreter_class, run_dir, request, spec, fp32)
            if spec["activations"] == "int8":
                info["io"] = io
                blob = int8_file(np, interpreter_class, run_dir, request, plan, sets, info)
            elif spec["activations"] == "int16":
                info["io"] = "float" if io == "float" else "int16"
                blob = plan.quantize(info["io"], [])
            else:
                blob = plan.raw()
            with open(out, "wb") as f:
                f.write(blob)
    except StageFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        info["error"] = "%s failed for %s: %s: %s" % (
            info["quantizer"],
            spec["name"],
            type(exc).__name__,
            lines[-1][:300] if lines else "",
        )
        return info
    size = os.path.getsize(out)
    info.update({"file": contract.work_rel(request, "model.tflite"), "size_bytes": size})
    log("%s: %d bytes written; loading it" % (spec["name"], size))
    return tflite_run.inspect_and_run(interpreter_class, np, run_dir, request, info, sets)


def body(run_dir, request, result):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    result["versions"] = {
        "ai_edge_litert": version_of("ai-edge-litert"),
        "litert_quantizer": version_of("litert-quantizer"),
        "numpy": np.__version__,
    }
    spec = modes.mode_spec(request)
    recipes.check(quantizer_name(), spec)
    if (request.get("int8_io") or "int8") not in INT8_IO:
        raise StageFailure("unknown int8 I/O %s; known: %s" % (request["int8_io"], ", ".join(INT8_IO)))
    sets = contract.load_sets(run_dir, request, np)
    info = one_mode(np, Interpreter, run_dir, request, spec, sets)
    result["artifact"] = info
    log("%s: %s%s" % (spec["name"], info["status"], (" - " + info["error"]) if info.get("error") else ""))
    if info["status"] != "ok" and "file" not in info:
        raise StageFailure(info["error"])


if __name__ == "__main__":
    sys.exit(contract.run_stage("quantize", body))
