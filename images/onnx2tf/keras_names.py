"""Which ONNX node made each Keras layer of onnx2tf's model.

onnx2tf builds a Keras model of TensorFlow ops, each wrapped in a layer named
after the op ("tf.nn.relu6_3"); the SavedModel and every .tflite made from it
name their tensors after those layers ("model_2/tf.nn.relu6_3/Relu6"), not
after the ONNX nodes, whose names carry the PyTorch module paths. onnx2tf
converts one ONNX node at a time (onnx2tf.ops.<OpType>.make_node); while it
does, every layer created is that node's. Python 3.8 syntax.
"""
import re


class Recorder(object):
    def __init__(self):
        self.node = None
        self.layers = {}  # Keras layer name -> ONNX node name

    def clear(self):
        self.layers = {}


def install(core, layer_class):
    """Wrap onnx2tf's per-node dispatch (core: the onnx2tf.onnx2tf module,
    which imports onnx2tf.ops.<OpType> through importlib) and the Keras
    layer's __init__. Returns the recorder."""
    rec = Recorder()
    real_importlib = core.importlib

    def wrap(make_node):
        def make(*args, **kwargs):
            node = kwargs.get("graph_node")
            before, rec.node = rec.node, re.sub("^wa/", "/", getattr(node, "name", "") or "")
            try:
                return make_node(*args, **kwargs)
            finally:
                rec.node = before
        make.convertctl_wrapped = True
        return make

    class Importer(object):
        def import_module(self, name, package=None):
            module = real_importlib.import_module(name, package)
            maker = getattr(module, "make_node", None)
            if name.startswith("onnx2tf.ops.") and maker is not None and not getattr(maker, "convertctl_wrapped", 0):
                module.make_node = wrap(maker)
            return module

        def __getattr__(self, attr):
            return getattr(real_importlib, attr)

    core.importlib = Importer()
    real_init = layer_class.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if rec.node:
            rec.layers.setdefault(self.name, rec.node)

    layer_class.__init__ = init
    return rec
