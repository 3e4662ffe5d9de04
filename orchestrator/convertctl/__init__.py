"""convertctl: PyTorch -> ONNX -> TensorFlow -> validated TFLite, each stage in
its own pinned environment. This package is the host side: it never imports
torch, tensorflow or onnx."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Loaded on first use: `import convertctl` stays light (the CLI's --help imports it).
    if name == "batch":  # the batch package, which is callable: convertctl.batch(...) (batch/api.py)
        import importlib

        return importlib.import_module("convertctl.batch")
    raise AttributeError(f"module 'convertctl' has no attribute {name!r}")
