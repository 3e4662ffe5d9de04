"""The host's folders are its layers, and imports only run down: read from
the code itself (every import statement, at the top of a module or inside a
function), a module imports its own layer or those below, never above, and
no modules import each other in a loop."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator" / "convertctl"
# Lowest first. A new folder gets a place here, or this test fails.
LAYERS = [
    {"errors", "lazy", "userfiles"},
    {"config"},
    {"store"},
    {"checks"},
    {"inputs"},
    {"runtimes"},
    {"report"},
    {"run"},
    {"api", "batch"},
    {"cli", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    """convertctl.config.options -> the index of the layer holding `config`."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: its folder {top!r} has no layer in LAYERS")


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__") if rel.name == "__init__" and len(rel.parts) > 2 else name] = path
    return out


def imports(path: Path, name: str) -> set[str]:
    """Every convertctl module `name` imports (from x import y: y when y is a module)."""
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("convertctl")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("convertctl"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m != name and m != "convertctl"}


def test_imports_only_run_down_the_layers():
    wrong = []
    for name, path in modules().items():
        if name in ("convertctl.__init__", "convertctl.__main__", "convertctl"):
            continue
        for target in imports(path, name):
            if target in modules() and layer_of(target) > layer_of(name):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports that run up the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    graph = {name: {t for t in imports(path, name) if t in modules()} for name, path in modules().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_folder_has_a_layer_and_no_module_sits_loose():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__", *LAYERS[0]}]
    assert not loose, f"modules beside the layer folders: {loose} (put each in its layer)"
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        layer_of(f"convertctl.{folder.name}")


def test_the_checker_sees_an_upward_import(tmp_path):
    """The test can fail: an import from config up into run is caught."""
    src = tmp_path / "bad.py"
    src.write_text("def f():\n    from convertctl.run.pipeline import Pipeline\n")
    targets = imports(src, "convertctl.config.bad")
    assert "convertctl.run.pipeline" in targets
    assert layer_of("convertctl.run.pipeline") > layer_of("convertctl.config.bad")
