"""litert-torch's tensor names made of PyTorch module paths.

litert-torch names each tensor after the nn_module_stack of the FX node it
lowers (class names and the last part of each module's name), but the module
it converts here is a wrapper (named inputs and outputs) around a
GraphModule, whose re-export keeps no stack: every tensor came out as
"__main__.named.<locals>.Named;7". The GraphModule's own nodes still carry
the model's stack (torch.export's, for an ExportedProgram or an nn.Module),
and every lowered node remembers the node it came from (meta "from_node",
its first entry the re-exported node, named and targeted as the
GraphModule's). So the location litert-torch builds is replaced by the
module path of that node ("features.1.conv.0.0;"), checked by name and
target: a node that does not match keeps litert-torch's own name.

TorchScript reaches this stage through TS2EPConverter, which keeps no module
stack: its layers have no module names. Python 3.8 syntax.
"""


def module_paths(gm):
    """{FX node name: (target, module path)} of a GraphModule's ops; the root
    module's own ops (path '') are left out."""
    paths = {}
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if not stack:
            continue
        path = list(stack.values())[-1][0]
        if path:
            paths[node.name] = (str(node.target), path)
    return paths


def _origin(node):
    history = node.meta.get("from_node") or []
    while history and getattr(history[0], "from_node", None):
        history = history[0].from_node
    return history[0] if history else None


def install(debuginfo, paths):
    """Make litert-torch's locations module paths; returns the undo."""
    real = debuginfo.build_mlir_debuginfo

    def located(node):
        origin = _origin(node) if hasattr(node, "meta") else None
        known = paths.get(getattr(origin, "name", None))
        if known and known[0] == str(getattr(origin, "target", "")):
            return known[1] + ";"
        return real(node)

    debuginfo.build_mlir_debuginfo = located

    def undo():
        debuginfo.build_mlir_debuginfo = real
    return undo


def output_modules(gm, paths, output_names):
    """{output name: module path of the op making it}, in the model's output order."""
    out = next((n for n in gm.graph.nodes if n.op == "output"), None)
    if out is None:
        return {}
    flat = []

    def walk(arg):
        if isinstance(arg, (list, tuple)):
            for a in arg:
                walk(a)
        elif isinstance(arg, dict):
            for k in sorted(arg):
                walk(arg[k])
        else:
            flat.append(arg)

    walk(out.args[0] if out.args else [])
    return dict((name, paths[n.name][1]) for name, n in zip(output_names, flat)
                if getattr(n, "name", None) in paths)
