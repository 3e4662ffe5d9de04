"""Metadata stage: TFLite metadata written into a final .tflite, and read back.

The TFLite Support metadata schema is what Android Studio's ML Model Binding
and the Task Library read: how to normalise an image for the input, and the
labels file of a class-score output (TENSOR_AXIS_LABELS). Written with
tflite-support's own writer, then read back with its MetadataDisplayer; the
host checks that the file still computes the same outputs (LiteRT on both).

Runs in the metadata environment (tflite-support 0.4.4, Python 3.11). Request
fields (paths relative to the run directory):
  tflite        the file to annotate (a quantize step's, judged and passed)
  name          the model's name, for the metadata's name field
  description   one line saying what the file is
  labels        a text file, one class name per line, in the output's order
  labels_output the signature name of the class-score output the labels go with
  image_input   the signature name of the image input the normalisation is for (absent: none)
  mean, std     per channel, on the 0..255 pixel scale the metadata uses
  inputs, outputs  [{name, tensor}]: each signature name and its tensor's name in the file
Writes, in its WORK folder, model.tflite (with metadata) and labels.txt;
result["file"] names it, result["metadata"] says what was read back:
{labels, labels_file, labels_output, normalization: {input, mean, std} or
null, written_by}.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import contract  # noqa: E402
from contract import StageFailure, in_run, log  # noqa: E402

LABELS_FILE = "labels.txt"  # the name the file is packed under, as Android Studio's examples name it
# The writer packs associated files in a zip inside the .tflite, each entry dated now; a fixed
# date keeps the bytes the same from run to run (convertctl verify compares them).
PACKED_DATE = (2000, 1, 1, 0, 0, 0)


def version():
    try:
        from importlib import metadata

        return metadata.version("tflite-support")
    except Exception:  # noqa: BLE001 - the version is nice to have only
        return "unknown"


def tensors(schema, blob):
    """[(tensor name, TensorType)] of the first subgraph's inputs and outputs."""
    model = schema.Model.GetRootAsModel(blob, 0)
    graph = model.Subgraphs(0)

    def named(indices):
        return [(graph.Tensors(i).Name().decode("utf-8"), graph.Tensors(i).Type()) for i in indices]

    return (named(graph.InputsAsNumpy() if graph.InputsLength() else []),
            named(graph.OutputsAsNumpy() if graph.OutputsLength() else []))


def by_tensor(entries):
    """{tensor name: signature name} of the request's inputs or outputs."""
    return dict((e["tensor"], e["name"]) for e in entries)


def write(request, blob, info, labels_path):
    """The file with its metadata (bytes): one entry per input and output, in
    the file's tensor order, as the writer wants them."""
    mi = info.metadata_info
    ins, outs = tensors(info.schema, blob)
    in_names, out_names = by_tensor(request["inputs"]), by_tensor(request["outputs"])
    inputs_md, outputs_md = [], []
    image = request.get("image_input")
    for tensor, kind in ins:
        name = in_names.get(tensor, tensor)
        if name == image:
            color = info.metadata_fb.ColorSpaceType.RGB if len(request["mean"]) == 3 else \
                info.metadata_fb.ColorSpaceType.GRAYSCALE
            md = mi.InputImageTensorMd(name=name, description="image, normalised as (pixel - mean) / std",
                                       norm_mean=list(request["mean"]), norm_std=list(request["std"]),
                                       color_space_type=color, tensor_type=kind)
        else:
            md = mi.TensorMd(name=name)
        md.tensor_name = tensor
        inputs_md.append(md)
    found = False
    for tensor, kind in outs:
        name = out_names.get(tensor, tensor)
        if name == request["labels_output"]:
            md = mi.ClassificationTensorMd(name=name, description="class scores, in the labels file's order",
                                           label_files=[mi.LabelFileMd(labels_path)], tensor_type=kind,
                                           tensor_name=tensor)
            found = True
        else:
            md = mi.TensorMd(name=name, tensor_name=tensor)
        outputs_md.append(md)
    if not found:
        raise StageFailure("the file has no output %r to associate the labels with" % request["labels_output"])
    general = mi.GeneralMd(name=request.get("name") or "model", description=request.get("description") or "",
                           author="convertctl")
    writer = info.metadata_writer.MetadataWriter.create_from_metadata_info(
        bytearray(blob), general_md=general, input_md=inputs_md, output_md=outputs_md, associated_files=[labels_path])
    return bytes(writer.populate())


def read_back(displayer_class, blob, request, labels):
    """What the written file says, read by the reader Android tools use; a
    file that does not say what was asked fails the step."""
    shown = displayer_class.with_model_buffer(blob)
    meta = json.loads(shown.get_metadata_json())
    graph = meta["subgraph_metadata"][0]
    packed = shown.get_packed_associated_file_list()
    out = next((t for t in graph.get("output_tensor_metadata", []) if t.get("name") == request["labels_output"]), None)
    files = [f for f in (out or {}).get("associated_files", []) if f.get("type") == "TENSOR_AXIS_LABELS"]
    if not files or files[0]["name"] not in packed:
        raise StageFailure("read back, the file has no TENSOR_AXIS_LABELS file on output %r" % request["labels_output"])
    text = shown.get_associated_file_buffer(files[0]["name"]).decode("utf-8")
    if text.splitlines() != labels:
        raise StageFailure("read back, the labels file packed in the file differs from --labels")
    record = {"labels": len(labels), "labels_file": files[0]["name"], "labels_output": request["labels_output"],
              "normalization": None}
    image = request.get("image_input")
    if image:
        unit = next((t for t in graph.get("input_tensor_metadata", []) if t.get("name") == image), {})
        options = [p["options"] for p in unit.get("process_units", [])
                   if p.get("options_type") == "NormalizationOptions"]
        if not options:
            raise StageFailure("read back, input %r has no normalisation" % image)
        mean, std = [float(v) for v in options[0]["mean"]], [float(v) for v in options[0]["std"]]
        if any(abs(a - b) > 1e-4 * max(1.0, abs(b)) for a, b in zip(mean + std, request["mean"] + request["std"])):
            raise StageFailure("read back, input %r is normalised with mean %s std %s, not as asked" % (image, mean, std))
        record["normalization"] = {"input": image, "mean": mean, "std": std}
    return record


class Modules(object):
    """tflite-support's metadata modules, imported without the package's
    __init__ (which imports its Task Library, audio and all)."""

    def __init__(self):
        try:
            from tensorflow_lite_support.metadata import metadata_schema_py_generated, schema_py_generated
            from tensorflow_lite_support.metadata.python import metadata
            from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info, metadata_writer
        except ImportError as exc:  # its extension links libusb-1.0, a system library
            raise StageFailure("tflite-support cannot be imported here (%s); on Debian or Ubuntu, "
                               "apt-get install libusb-1.0-0" % exc)

        self.schema, self.metadata_fb = schema_py_generated, metadata_schema_py_generated
        self.metadata, self.metadata_info, self.metadata_writer = metadata, metadata_info, metadata_writer


def body(run_dir, request, result):
    written_by = "tflite-support %s" % version()
    result["versions"] = {"tflite_support": version()}
    import zipfile

    dated(zipfile)
    info = Modules()
    with open(in_run(run_dir, request["tflite"]), "rb") as f:
        blob = f.read()
    if _has_metadata(info, blob):
        raise StageFailure("the file already holds TFLite metadata; convertctl writes it once")
    labels_path = contract.work_path(run_dir, request, LABELS_FILE)
    shutil.copyfile(in_run(run_dir, request["labels"]), labels_path)
    with open(labels_path, encoding="utf-8") as f:
        labels = f.read().splitlines()
    try:
        made = write(request, blob, info, labels_path)
    except StageFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the writer raises ValueError and more
        raise StageFailure("%s cannot write metadata into this file: %s: %s"
                           % (written_by, type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else ""))
    record = read_back(info.metadata.MetadataDisplayer, made, request, labels)
    record["written_by"] = written_by
    with open(contract.work_path(run_dir, request, "model.tflite"), "wb") as f:
        f.write(made)
    result["file"] = contract.work_rel(request, "model.tflite")
    result["size_bytes"] = len(made)
    result["metadata"] = record
    log("metadata written (%d labels on %s%s) and read back: %d bytes"
        % (len(labels), request["labels_output"],
           ", normalisation of %s" % record["normalization"]["input"] if record["normalization"] else "", len(made)))


def dated(zipfile):
    """ZipFile.writestr with a name dates the entry now: the same entry as
    it makes (mode 0600, the archive's compression), dated PACKED_DATE."""
    real = zipfile.ZipFile.writestr

    def writestr(self, name, data, *args, **kwargs):
        if isinstance(name, str) and not name.endswith("/"):
            info = zipfile.ZipInfo(name, date_time=PACKED_DATE)
            info.compress_type = self.compression
            info.external_attr = 0o600 << 16
            name = info
        return real(self, name, data, *args, **kwargs)

    zipfile.ZipFile.writestr = writestr


def _has_metadata(info, blob):
    model = info.schema.Model.GetRootAsModel(blob, 0)
    return any(model.Metadata(i).Name() == b"TFLITE_METADATA" for i in range(model.MetadataLength()))


if __name__ == "__main__":
    sys.exit(contract.run_stage("metadata", body))
