"""The package's shape: no import cycle (lazy imports included), and the middle floor's rules.

The import graph is read from the source with ``ast``: every ``import`` statement of every module, at the
top or inside a function (a lazy import is an edge too), except those under ``if TYPE_CHECKING:``
(never executed). ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``;
importing ``a.b.c`` is an edge to the packages ``a`` and ``a.b`` too, which Python runs first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "taskadapt"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of this package imported anywhere in ``tree`` (outside TYPE_CHECKING blocks)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    direct = {m for m in found if m in known}
    # importing a.b.c first runs a and a.b: edges to those packages too, except to the importer's own
    # ancestors (they are already being imported when it runs); an explicit import of one stays an edge
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    parents = {".".join(m.split(".")[:i]) for m in direct for i in range(1, m.count(".") + 1)}
    return {m for m in direct | ((parents & known) - own) if m != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {m: _imports(ast.parse(p.read_text(encoding="utf-8")), m, p.name == "__init__.py", known)
             for m, p in modules.items()}
    # the package root resolves its public names lazily (PEP 562, importlib): those are edges too
    import taskadapt

    graph[PACKAGE] |= {module for module, _ in taskadapt._LAZY.values()}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("if TYPE_CHECKING:\n    import x.y\nelse:\n    import x.z\ndef f():\n    from x import w\n")
    assert _imports(tree, "x.m", False, {"x.y", "x.z", "x.w", "x"}) == {"x.z", "x.w"}  # x: its own package
    assert _imports(ast.parse("import p.q.r"), "x.m", False, {"p", "p.q", "p.q.r"}) == {"p", "p.q", "p.q.r"}
    assert _imports(ast.parse("from x import v"), "x.m", False, {"x"}) == {"x"}  # explicit: an edge


def test_no_import_cycle_lazy_or_not():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_the_package_root():
    """The root resolves its API from the submodules, so a submodule importing the root would be a cycle."""
    graph = import_graph()
    assert not [m for m, deps in graph.items() if PACKAGE in deps]


def test_the_config_schema_imports_no_registry():
    graph = import_graph()
    assert graph["taskadapt.config.schema"] <= {"taskadapt.errors"}


def test_models_do_not_import_the_config_package():
    graph = import_graph()
    offenders = {m: sorted(d for d in deps if d.startswith("taskadapt.config"))
                 for m, deps in graph.items() if m.startswith("taskadapt.models")}
    assert not {m: d for m, d in offenders.items() if d}


@pytest.mark.parametrize("needle", ["hasattr(", "getattr("])
def test_the_trainer_asks_the_network_instead_of_probing_it(needle):
    text = (SRC / PACKAGE / "train" / "trainer.py").read_text(encoding="utf-8")
    assert needle not in text
