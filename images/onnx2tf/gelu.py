"""Let onnx2tf fuse torch's exact GELU into one TFLite GELU op.

torch exports nn.GELU (below opset 20) as x / sqrt(2) -> Erf -> + 1 -> * x
-> * 0.5. onnx2tf 1.29 recognizes that pattern and emits tf.nn.gelu, which
TFLite has as a builtin (float, int8, XNNPACK), but its check never passes:
it asks the divisor for a .numpy() method, which a constant read from the
ONNX file (a numpy array) lacks, and with numpy 1.x compares float32
1.4142135 with the Python float 1.4142135 in float64, where they differ.
So every GELU becomes an Erf polynomial of 10 ops (ABS, NEG, EXP, DIV...)
whose DIV and NEG stay float in an int8 file. Here the divisor is handed to
onnx2tf's Div as an array that has .numpy() and compares in its own dtype;
everything else onnx2tf does with it is what it does with any array.
Python 3.8 syntax.
"""
SQRT2 = 2.0 ** 0.5


def enable(np):
    """Patch onnx2tf.ops.Div (imported here; onnx2tf imports its op modules
    by name, so it uses this one). Returns a counter of divisors handed over."""
    import importlib

    div = importlib.import_module("onnx2tf.ops.Div")
    original = getattr(div, "pre_process_transpose", None)
    seen = {"divisors": 0}
    if original is None:  # another onnx2tf: leave it as it is
        return seen

    class Constant(np.ndarray):
        def numpy(self):
            return self

        def __eq__(self, other):
            return np.asarray(self) == np.asarray(other, dtype=self.dtype)

        __hash__ = None

    def pre_process_transpose(value_before_transpose=None, param_target=None, param_name=None, **kwargs):
        value = original(value_before_transpose=value_before_transpose, param_target=param_target,
                         param_name=param_name, **kwargs)
        if (param_target == "inputs" and type(value) is np.ndarray and value.shape == ()
                and value.dtype == np.float32 and abs(float(value) - SQRT2) < 1e-6):
            seen["divisors"] += 1
            return value.view(Constant)
        return value

    div.pre_process_transpose = pre_process_transpose
    return seen
