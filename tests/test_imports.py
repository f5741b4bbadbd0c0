"""The package's import graph (docs/development.md ("Layout")): no cycle inside ``benchmark/``, counting imports
placed inside
functions too, and no function-local import of a ``benchmark`` module without a comment saying why (a local
import stays only to keep an optional heavy dependency off a start-up path, never to dodge a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported benchmark module, line, inside a function) for every import statement of ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, local) for a in child.names if a.name in modules)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for a in child.names:  # ``from benchmark import tracking`` imports the submodule
                    sub = f"{child.module}.{a.name}"
                    target = sub if sub in modules else child.module
                    if target in modules:
                        found.append((target, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, _ in _imports(path, modules):
            if target != name and not name.startswith(target + "."):  # a package's own __init__ is no edge back
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
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
            strongconnect(v)
    return out


def test_the_package_has_no_import_cycle():
    graph = _graph()
    assert len(graph) > 40, "the walk found too few modules to mean anything"
    assert "benchmark.compose" in graph["benchmark.run"], "the walk misses plain imports"
    cycles = _cycles(graph)
    assert not cycles, f"import cycles (function-local imports included): {cycles}"


def test_a_cycle_is_found_when_there_is_one():
    """The detector itself: a two-module circle and a three-module circle are reported, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _comment_above_block(lines: list[str], i: int) -> bool:
    """Whether the block of import lines (and blank lines) holding line ``i`` starts under a comment."""
    while i > 0 and (lines[i - 1].strip().startswith(("import ", "from ")) or not lines[i - 1].strip()):
        i -= 1
    return i > 0 and lines[i - 1].strip().startswith("#")


def test_local_imports_of_the_package_say_why():
    modules = _modules()
    unexplained = []
    for path in modules.values():
        lines = path.read_text().splitlines()
        for target, lineno, local in _imports(path, modules):
            if not local:
                continue
            if "#" not in lines[lineno - 1] and not _comment_above_block(lines, lineno - 1):
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {target}")
    assert not unexplained, "function-local imports without a comment saying why:\n" + "\n".join(unexplained)
