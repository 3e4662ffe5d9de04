"""convertctl: PyTorch -> ONNX -> TensorFlow -> validated TFLite, each stage in
its own pinned environment. This package is the host side: it never imports
torch, tensorflow or onnx (the Python API uses a caller's torch object with
the torch the caller already imported).

    import convertctl
    result = convertctl.convert("model.pt", inputs=[(1, 3, 224, 224)], quant=["fp16", "int8"])

Names are loaded on first use (a module __getattr__): `import convertctl`
stays as light as `convertctl --help`."""

__version__ = "0.1.0"

# name -> the module that defines it
_LAZY = {
    "convert": "convertctl.api.run",
    "Result": "convertctl.api.result",
    "ModeFile": "convertctl.report.summary",
    "ConvertError": "convertctl.errors",
    "UsageError": "convertctl.errors",
    "ConversionError": "convertctl.errors",
    "ValidationFailed": "convertctl.errors",
    "EnvironmentProblem": "convertctl.errors",
}


def __getattr__(name: str):
    if name == "batch":  # the batch package, which is callable: convertctl.batch(...) (batch/api.py)
        import importlib

        return importlib.import_module("convertctl.batch")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convertctl' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY, "batch"])
