"""A small SavedModel for the TF quantize-step tests. Runs INSIDE a TensorFlow
venv (the onnx2tf one), never in the host test process:

    python quant_savedmodel.py OUT_DIR

writes OUT_DIR/tfnet (SavedModel: input "input" (1, 16, 16, 3) NHWC, output
"output" (1, 10)) and OUT_DIR/tfnet_{samples,calib}.npz. Its convolution has
216 weights (under TFLiteConverter's 1024-element minimum for dynamic range),
its dense layer 20480.
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf


class Net(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.filters = tf.Variable(rng.standard_normal((3, 3, 3, 8)).astype(np.float32) * 0.3)
        self.bias = tf.Variable(np.zeros(8, np.float32))
        self.dense = tf.Variable(rng.standard_normal((16 * 16 * 8, 10)).astype(np.float32) * 0.02)

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="input")])
    def serve(self, input):  # noqa: A002 - the signature's input name
        x = tf.nn.relu(tf.nn.conv2d(input, self.filters, 1, "SAME") + self.bias)
        return {"output": tf.matmul(tf.reshape(x, [1, -1]), self.dense)}


def main(out: Path) -> None:
    net = Net()
    tf.saved_model.save(net, str(out / "tfnet"), signatures={"serving_default": net.serve})
    rng = np.random.default_rng(1)
    for kind, n in (("samples", 8), ("calib", 32)):
        np.savez(out / f"tfnet_{kind}.npz", input=rng.standard_normal((n, 1, 16, 16, 3)).astype(np.float32))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
