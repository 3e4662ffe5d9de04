"""PyTorch module paths for the layers of a converted file.

A TFLite tensor is named after the ops of the graph it came from: TensorFlow
op names for the ONNX families (onnx2tf's Keras layers such as
"model_2/tf.nn.relu6_3/Relu6", onnx-tf's "depthwise_2"), joined by ";" where
the converter fused several ops into one (a convolution, its bias and its
ReLU6). A convert step knows which PyTorch module each of those names came
from and writes it down (MAP_FILE, the convert result's "modules"):

  {"source": how the paths were found,
   "fragments": {a name or name part of the graph: module path},
   "outputs": {signature output name: module path of the op making it}}

The ONNX families read the paths from the ONNX node names torch's exporter
gives ("/features/features.3/conv/conv.1/Conv", or "/features/3/conv/1/Conv"
from TorchScript); litert-torch from torch.export's nn_module_stack, written
into the tensor names themselves (images/litert/module_locs.py).

A quantize step then names every layer three ways: "tflite" (the tensor
name), "module" (the path of the op that the fused name ends with: the
converter lists the op it fused into last, e.g. the convolution; None when
unknown) and "name" (what --int8-float-layers takes back: the module path
when known, else the tensor name). --int8-float-layers accepts a tensor name,
a module path, or a module above several layers (features.3 keeps every
layer of that block float). Python 3.8 syntax, standard library only.
"""
import json
import re

MAP_FILE = "modules.json"
# Ops that only move int8 values (a converter's layout transposes and pads,
# named after the convolution they serve): a module path keeps them float
# only when the module has nothing else.
MOVES = ("PAD", "PADV2", "MIRROR_PAD", "TRANSPOSE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS")


def from_onnx_node(name):
    """'/features/features.1/conv/conv.0/conv.0.0/Conv' (torch's exporter on
    an nn.Module: each scope names its module relative to the one above, the
    containers' indices included) or '/features/1/conv/0/0/Conv' (on
    TorchScript) -> 'features.1.conv.0.0'; '' for a name that is not torch's
    scoped name or an op of the root module ('/ReduceMean')."""
    name = re.sub("^wa/", "/", name or "")  # onnx2tf's rename of leading slashes
    if not name.startswith("/"):
        return ""
    parts = []
    for seg in name.split("/")[1:-1]:
        if not seg:
            continue
        if parts and seg.startswith(parts[-1] + "."):
            parts[-1] = seg
        else:
            parts.append(seg)
    return ".".join(parts)


def write(path, source, fragments, outputs):
    data = {"source": source, "fragments": dict((k, v) for k, v in fragments.items() if k and v),
            "outputs": dict((k, v) for k, v in outputs.items() if k and v)}
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    return data


class Names(object):
    """A convert step's map, read back by a quantize step."""

    def __init__(self, data=None, output_tensors=None):
        data = data or {}
        self.source = data.get("source", "")
        self.fragments = dict(data.get("fragments") or {})
        outputs = dict(data.get("outputs") or {})
        # {tensor name of a graph output: module}: such tensors take the signature's name
        self.by_output = dict((t, outputs[o]) for t, o in (output_tensors or {}).items() if o in outputs)

    @classmethod
    def load(cls, path, output_tensors=None):
        if not path:
            return cls(None, output_tensors)
        with open(path) as f:
            data = json.load(f)
        return cls(data if isinstance(data, dict) else None, output_tensors)

    def __bool__(self):
        return bool(self.fragments or self.by_output)

    __nonzero__ = __bool__

    def _part(self, segment):
        if segment in self.fragments:
            return self.fragments[segment]
        for piece in segment.split("/"):
            if piece in self.fragments:
                return self.fragments[piece]
        return None

    def module(self, tensor):
        """The module path of the op a (fused) tensor name ends with, or None."""
        if tensor in self.by_output:
            return self.by_output[tensor]
        found = None
        segments = (tensor or "").split(";")
        if len(segments) > 1 and segments[-1].isdigit():
            segments.pop()  # the number a converter appends to keep fused names unique
        for segment in segments:
            hit = self._part(segment) if segment else None
            if hit:
                found = hit
        return found or None

    def annotate(self, rows):
        """Each row {name: tensor name, ...} gains tflite, module and name."""
        for row in rows:
            tensor = row.get("tflite") or row["name"]
            row["tflite"] = tensor
            row["module"] = self.module(tensor)
            row["name"] = row["module"] or tensor
        return rows

    def summary(self, rows):
        """What the report says about the mapping."""
        unnamed = [r["tflite"] for r in rows if not r.get("module")]
        out = {"source": self.source or "none", "named": len(rows) - len(unnamed), "unnamed": len(unnamed)}
        if not self:
            out["note"] = "the converted graph carries no PyTorch module names"
        return out


def resolve(asked, rows):
    """--int8-float-layers names (tensor names, module paths, or a module
    above several layers) -> the tensor names of the file's layers, and the
    names that match no layer. rows: the file's layers with tflite, module and
    op. A tensor name is taken as it is; a module path takes its layers but
    the ops that only move values (MOVES), unless it has no other."""
    tensors, unknown = [], []
    by_tensor = set(r["tflite"] for r in rows)
    for name in asked:
        if name in by_tensor:
            hits = [name]
        else:
            under = [r for r in rows
                     if r.get("module") and (r["module"] == name or r["module"].startswith(name + "."))]
            computing = [r for r in under if r.get("op") not in MOVES]
            hits = [r["tflite"] for r in (computing or under)]
        if not hits:
            unknown.append(name)
        for hit in hits:
            if hit not in tensors:
                tensors.append(hit)
    return tensors, unknown


def described(tensors, rows):
    """[{name, tflite, module}] for tensor names, as the report shows them."""
    by_tensor = dict((r.get("tflite") or r["name"], r) for r in rows)
    out = []
    for t in tensors:
        row = by_tensor.get(t) or {}
        out.append({"name": row.get("module") or t, "tflite": t, "module": row.get("module")})
    return out
