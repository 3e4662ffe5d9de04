"""convertctl: PyTorch -> ONNX -> TensorFlow -> validated TFLite, each stage in
its own pinned environment. This package is the host side: it never imports
torch, tensorflow or onnx."""

__version__ = "0.1.0"
