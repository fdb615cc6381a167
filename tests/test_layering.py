"""The package's import graph, read with ``ast`` (imports inside functions count too):
no cycle, no import from a higher layer, no private name taken from another module."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xdownscale"

# lowest first; a module may import its own layer (without cycles) and the layers below
LAYERS = [
    ("base", ["_compat", "_version", "errors", "config"]),
    ("data", ["grid", "io", "data", "nn", "metrics", "ensemble", "catalog", "model_store"]),
    ("models", ["models"]),
    ("engine", ["engine"]),
    ("families", ["families"]),
    ("api", ["", "api", "accessor", "fitting", "prediction", "downscaler", "export", "bias_correction", "testing",
             "model_help", "plot", "plot_ensemble"]),
    ("apps", ["cli", "demo"]),
]
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imports(name: str, path: Path, is_package: bool, known) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import statement of ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("xdownscale"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            found += [(m, [], node.lineno) for m in submodules]
            plain = [n for n in names if f"{target}.{n}" not in known]
            if plain or not submodules:
                found.append((target, plain, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("xdownscale")]
    return found


def top_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return known, {name: imports(name, path, pkg, known) for name, (path, pkg) in known.items()}


def test_every_module_has_a_layer(graph):
    known, _ = graph
    assert sorted({top_of(m) for m in known} - set(RANK)) == []


def test_no_upward_import(graph):
    _, edges = graph
    upward = [f"{src}:{line} imports {dst}" for src, targets in edges.items() for dst, _, line in targets
              if RANK[top_of(dst)] > RANK[top_of(src)]]
    assert upward == []


def test_no_private_name_from_another_module(graph):
    _, edges = graph
    private = [f"{src}:{line} takes {', '.join(n for n in names if n.startswith('_'))} from {dst}"
               for src, targets in edges.items() for dst, names, line in targets
               if dst != src and any(n.startswith("_") and not n.startswith("__") for n in names)]
    assert private == []


def test_no_import_cycle(graph):
    _, edges = graph
    adjacency = {src: sorted({dst for dst, _, _ in targets if dst in edges and dst != src})
                 for src, targets in edges.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in adjacency[v]:
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
                cycles.append(sorted(component))

    for v in adjacency:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The graph reader itself: a function-level import from the API layer is found."""
    fake = tmp_path / "xdownscale"
    (fake / "grid").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "fitting.py").write_text("")
    (fake / "grid" / "__init__.py").write_text("def f():\n    from ..fitting import fit\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    known = modules()
    edges = {name: imports(name, path, pkg, known) for name, (path, pkg) in known.items()}
    assert ("xdownscale.fitting", ["fit"], 2) in edges["xdownscale.grid"]
