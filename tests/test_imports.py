"""The import structure: no cycle between nbdboot's packages, none between the modules of disk/, the NBD codec
without the disk layer and the device interface without the NBD layer."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nbdboot"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
    """The nbdboot modules `path` imports, at module level or inside functions (lazy imports count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from nbdboot.disk import copy` imports the submodule; `from nbdboot.disk import X` the package
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != "nbdboot"}


def _module_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _unit(module: str) -> str:
    """nbdboot.X for a module of the package X; a top-level module is a unit of its own."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return "nbdboot." + parts[1]
    return module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _witnesses(graph: dict[str, set[str]], units: list[str]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                  if _unit(m) in units and _unit(d) in units and _unit(m) != _unit(d))


def test_the_walk_sees_the_imports_it_must():
    graph = _module_graph()
    assert "nbdboot.nbd.client" in graph["nbdboot.disk.nbd"]          # module level
    assert "nbdboot.disk.nbd" in graph["nbdboot.disk.open"]            # inside a function
    assert "nbdboot.disk.copy" in graph["nbdboot.disk.parallel"]       # `from package import module`
    assert "nbdboot.disk.base" not in graph["nbdboot.nbd.server"]      # under `if TYPE_CHECKING:` only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]




def test_no_import_cycle_between_packages():
    # The emulated PC is layered: machine (CPU, devices) <- bios (firmware on it) <- console, debug <- pc,
    # session, api, cli. The machine takes its firmware as an argument (nbdboot.pc.PC passes the BIOS).
    graph = _module_graph()
    units: dict[str, set[str]] = {}
    for module, deps in graph.items():
        units.setdefault(_unit(module), set()).update(_unit(d) for d in deps if _unit(d) != _unit(module))
    cycles = _cycles(units)
    assert not cycles, "\n".join(f"{c}: " + "; ".join(_witnesses(graph, c)) for c in cycles)


def test_no_import_cycle_between_the_modules_of_disk():
    graph = {m: {d for d in deps if d.startswith("nbdboot.disk.")}
             for m, deps in _module_graph().items() if m.startswith("nbdboot.disk.")}
    assert not _cycles(graph)


def test_a_devices_extent_flags_are_the_wires_allocation_bits():
    from nbdboot.disk.base import EXTENT_HOLE, EXTENT_ZERO
    from nbdboot.nbd.protocol import STATE_HOLE, STATE_ZERO
    assert (EXTENT_HOLE, EXTENT_ZERO) == (STATE_HOLE, STATE_ZERO)


@pytest.mark.parametrize("module, forbidden", [
    ("nbdboot.nbd.protocol", ("nbdboot.disk",)),
    ("nbdboot.nbd.errors", ("nbdboot.disk",)),
    ("nbdboot.disk.base", ("nbdboot.nbd", "socket", "ssl", "threading")),
])
def test_a_layer_imports_without_the_layers_above_it(module, forbidden):
    # -S: site-packages' start-up hooks (.pth files) import threading themselves
    code = (f"import sys; import {module}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == ""
