"""A request's mode_spec as a litert-quantizer recipe.

  weights  activations  recipe (litert-quantizer 0.11)
  float32  float32      none: the fp32 file as it is
  float16  float32      float_casting, weights dequantized before each op
  int8     dynamic      dynamic: int8 weights, activations quantized by the kernels
  int4     dynamic      dynamic int4 (FULLY_CONNECTED, CONV_2D, EMBEDDING_LOOKUP)
  int8     float32      weight-only: int8 weights dequantized, float compute
  int4     float32      weight-only int4 (BATCH_MATMUL, FULLY_CONNECTED,
                        CONV_2D, EMBEDDING_LOOKUP)
  int8     int8         static, calibrated
  int8     int16        static, 16-bit activations, calibrated
Ops a recipe does not cover keep their float weights (DEPTHWISE_CONV_2D
with int4, say): the artifact's tensors facts show which.

Granularity: tensor or channel as asked; block (32, 64, 128, 256) where the
quantizer has it (dynamic int4 on FULLY_CONNECTED and EMBEDDING_LOOKUP),
over a per-channel recipe for every other op: later recipe entries win
where they apply. Layers kept float are entries of their own, matched on
the op's scope (its output tensor names, each followed by ";").
Python 3.8 syntax.
"""

import re

import modes

BLOCK_SIZES = (32, 64, 128, 256)
BITS = {"int8": 8, "int4": 4}


def check(quantizer, spec):
    """Raise modes.cannot(...) for a spec this quantizer cannot make."""
    w, a = spec["weights"], spec["activations"]
    if modes.is_float(spec):
        return
    if w == "float16" and a != "float32":
        raise modes.cannot(quantizer, spec, "float16 weights are a weight-only cast; activations stay float32")
    if w == "float32":
        raise modes.cannot(quantizer, spec, "quantized activations need quantized weights")
    if a in ("int8", "int16") and w != "int8":
        raise modes.cannot(
            quantizer,
            spec,
            "its static recipes take int4 weights on FULLY_CONNECTED and "
            "CONV_2D only; only int8 weights cover every op",
        )
    if spec["granularity"] == "block" and spec["block_size"] not in BLOCK_SIZES:
        raise modes.cannot(
            quantizer, spec, "block sizes are %s, not %d" % (", ".join(map(str, BLOCK_SIZES)), spec["block_size"])
        )


def granularity_note(spec):
    """What the file's weight granularity will be when it differs from the spec."""
    if spec["granularity"] != "block":
        return None
    if spec["weights"] == "int4" and spec["activations"] == "dynamic":
        return (
            "blockwise (%d) on FULLY_CONNECTED and EMBEDDING_LOOKUP, per-channel elsewhere: "
            "litert-quantizer has blockwise int4 for those ops only" % spec["block_size"]
        )
    return (
        "per-channel: litert-quantizer has blockwise weights only for dynamic int4 (FULLY_CONNECTED, EMBEDDING_LOOKUP)"
    )


def recipe(spec, keep_float=()):
    """The recipe (a list of dicts) for a spec that passed check(); the ops
    whose scopes are in keep_float stay float."""
    from litert_quantizer import qtyping
    from litert_quantizer.recipe_manager import RecipeManager

    every = qtyping.TFLOperationName.ALL_SUPPORTED
    grains = {"tensor": qtyping.QuantGranularity.TENSORWISE, "channel": qtyping.QuantGranularity.CHANNELWISE}
    grain = grains.get(spec["granularity"], qtyping.QuantGranularity.CHANNELWISE)
    w, a = spec["weights"], spec["activations"]
    rm = RecipeManager()
    if w == "float16":  # float16 weights, each with an explicit DEQUANTIZE before its op
        rm.add_weight_only_config(".*", every, 16, algorithm_key="float_casting")
    elif a == "dynamic":
        rm.add_dynamic_config(".*", every, BITS[w], granularity=grain)
        if spec["granularity"] == "block":  # a scope key of its own, so the per-channel entry stays
            block = getattr(qtyping.QuantGranularity, "BLOCKWISE_%d" % spec["block_size"])
            rm.add_dynamic_config("(?:.*)", every, BITS[w], granularity=block)
    elif a == "float32":
        rm.add_weight_only_config(".*", every, BITS[w], granularity=grain)
    else:
        rm.add_static_config(".*", every, {"int8": 8, "int16": 16}[a], BITS[w], weight_granularity=grain)
    for scope in keep_float:
        rm.add_quantization_config("^%s$" % re.escape(scope), every, None, "no_quantize")
    return rm.get_quantization_recipe()
