"""What a TensorFlow SavedModel's serving signature takes: shared by the
converter families that write one (onnx-tf, onnx2tf). Runs on TF 2.8 to
current and Python 3.8+."""

from contract import StageFailure


def signature_facts(tf, path, request, maker="the converter"):
    """The SavedModel's serving inputs, {name: shape with None where free};
    with dynamic_batch, a fixed batch dimension is a failure here already."""
    fn = tf.saved_model.load(path).signatures["serving_default"]
    specs = fn.structured_input_signature[1]
    shapes = dict((n, [None if d is None else int(d) for d in spec.shape.as_list()]) for n, spec in specs.items())
    if request.get("dynamic_batch"):
        fixed = sorted(n for n, shape in shapes.items() if not shape or shape[0] is not None)
        if fixed:
            raise StageFailure("%s made a fixed batch dimension for %s (%s), though the ONNX file's is free"
                               % (maker, ", ".join(fixed), ", ".join(str(shapes[n]) for n in fixed)))
    return shapes
