"""Rewrites of the traced graph that let litert-torch keep the body in NHWC.

litert-torch converts NCHW graphs to NHWC inside and keeps the layout
transposes at the edges only, as long as every op can follow the layout.
A global average pool written as ``x.mean([2, 3])`` (convertctl's own
examples, and many classifiers, since torch 1.7 cannot export a TorchScript
flatten) cannot: litert-torch 0.10 wraps it in a TRANSPOSE back to NCHW,
while the same mean with keepdim=True followed by a squeeze stays NHWC.
Measured on a conv -> mean -> linear net: TRANSPOSE, CONV_2D, TRANSPOSE,
MEAN, FC before; TRANSPOSE, CONV_2D, MEAN, FC after; same numbers.
Python 3.8 syntax.
"""


def as_graph_module(torch, module, example):
    """The module as an FX GraphModule with shapes recorded (node.meta["val"])."""
    if isinstance(module, torch.fx.GraphModule):
        return module
    return torch.export.export(module, tuple(example), strict=False).module()


def _rank(node):
    val = node.meta.get("val") if hasattr(node, "meta") else None
    return len(val.shape) if val is not None and hasattr(val, "shape") else None


def keepdim_spatial_means(torch, gm):
    """mean over H and W without keepdim -> mean with keepdim, then squeeze.
    Returns how many means were rewritten."""
    mean = torch.ops.aten.mean.dim
    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != mean or len(node.args) < 2:
            continue
        src = node.args[0]
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if keepdim or _rank(src) != 4 or not isinstance(node.args[1], (list, tuple)):
            continue
        dims = sorted(d % 4 for d in node.args[1])
        if dims != [2, 3]:
            continue
        with gm.graph.inserting_after(node):
            kept = gm.graph.call_function(mean, (src, [2, 3], True), dict(
                (k, v) for k, v in node.kwargs.items() if k != "keepdim"))
        with gm.graph.inserting_after(kept):
            squeezed = gm.graph.call_function(torch.ops.aten.squeeze.dims, (kept, [2, 3]))
        node.replace_all_uses_with(squeezed)
        gm.graph.erase_node(node)
        rewritten += 1
    if rewritten:
        gm.graph.lint()
        gm.recompile()
    return rewritten
