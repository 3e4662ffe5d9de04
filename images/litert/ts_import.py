"""TorchScript -> an nn.Module that torch.export (and so litert-torch) takes.

litert-torch converts through torch.export, which does not read TorchScript.
torch's TS2EPConverter turns a ScriptModule into an ExportedProgram, but it
keeps TorchScript's shape arithmetic as tensor ops ending in
aten._local_scalar_dense (``x.size(0) // heads`` in nn.MultiheadAttention,
say), which torch.export treats as data-dependent and litert-torch's JAX
lowering rejects (ConcretizationTypeError). Input shapes are fixed here, so
every node that depends on the inputs' shapes only (never on their values)
is evaluated once and replaced by its value: fold_static_scalars.

Known limits (torch 2.13): a torch.jit.script-ed nn.TransformerEncoder fails
in TS2EPConverter on prim::If; a Transformer traced under torch.no_grad()
carries aten._transformer_encoder_layer_fwd (the fused fast path), which
litert-torch cannot lower. Traced with gradients on, it converts.
Python 3.8 syntax.
"""


def fold_static_scalars(torch, gm, sample_args):
    """Replace the python-scalar results of shape-only nodes (sym_size,
    _local_scalar_dense of size arithmetic...) by literals, drop the
    _assert_scalar checks left without inputs, and remove dead nodes.
    Returns how many nodes were folded."""
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    flat = list(torch.utils._pytree.tree_flatten(tuple(sample_args))[0])
    shape_of = dict(zip(placeholders, flat))  # only their shapes are ever read
    size_ops = (torch.ops.aten.sym_size.int, torch.ops.aten.sym_numel.default, torch.ops.aten.sym_stride.int)
    known = {}

    def value(arg):
        return known[arg] if isinstance(arg, torch.fx.Node) else arg

    for node in graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            known[node] = obj
        elif node.op == "call_function":
            if node.target in size_ops and node.args[0] in shape_of:
                known[node] = node.target(shape_of[node.args[0]], *node.args[1:])
            elif all(dep in known for dep in node.all_input_nodes):
                try:
                    with torch.no_grad():
                        known[node] = node.target(*torch.fx.node.map_arg(node.args, value),
                                                  **torch.fx.node.map_arg(node.kwargs, value))
                except Exception:  # noqa: BLE001 - not foldable: leave the node as it is
                    pass
    folded = 0
    for node, val in list(known.items()):
        if node.op != "call_function" or isinstance(val, torch.Tensor) or not isinstance(val, (bool, int, float)):
            continue
        for user in list(node.users):
            user.args = torch.fx.node.map_arg(user.args, lambda a, n=node, v=val: v if a is n else a)
            user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda a, n=node, v=val: v if a is n else a)
        folded += 1
    checks = [torch.ops.aten._assert_scalar.default]
    if hasattr(torch.ops.aten, "sym_constrain_range_for_size"):
        checks.append(torch.ops.aten.sym_constrain_range_for_size.default)
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in checks:
            if not any(isinstance(a, torch.fx.Node) for a in node.args):
                graph.erase_node(node)
    graph.eliminate_dead_code()
    gm.recompile()
    return folded


def script_to_module(torch, script_module, sample_args):
    """A loaded ScriptModule -> a GraphModule torch.export can trace again."""
    import warnings

    from torch._export.converter import TS2EPConverter

    script_module.eval()
    with warnings.catch_warnings():
        # One warning per BatchNorm: its num_batches_tracked counter is unused in eval mode.
        warnings.filterwarnings("ignore", message="Manually populate .*num_batches_tracked")
        program = TS2EPConverter(script_module, tuple(sample_args)).convert()
    module = program.module()
    fold_static_scalars(torch, module, tuple(sample_args))
    return module
