"""No import cycles between the project's modules.

Reads every module of grokwatch, trainer, observables and slurm with ``ast``
(no import runs) and collects what each one imports: top-level imports and
those inside functions, methods and ``if`` blocks alike (a lazy import is
still a dependency). ``from a.b import c`` is an edge to the module ``a.b.c``
when there is one, else to ``a.b``. The graph between modules must have no
cycle; a failure prints one cycle of each tangle, edge by edge with the line
of each import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("grokwatch", "trainer", "observables", "slurm")


def module_files() -> dict[str, Path]:
    out = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported project module: line of the first such import}."""
    files = module_files()
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges: dict[str, int] = {}

        def add(target: str, line: int, mod: str = mod, edges: dict[str, int] = edges) -> None:
            while target and target not in files:  # a name in a module: the module
                target = target.rpartition(".")[0]
            if target and target != mod:
                edges.setdefault(target, line)

        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        add(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if src.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    full = f"{src}.{alias.name}"
                    add(full if full in files else src, node.lineno)
        graph[mod] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        # iterative DFS: (node, iterator over its successors)
        work = [(v, iter(sorted(graph.get(v, {}))))]
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, {})))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def a_cycle(graph: dict[str, dict[str, int]], comp: list[str]) -> list[str]:
    """One cycle through the first module of a strongly connected component."""
    members = set(comp)
    start = comp[0]
    # breadth-first from start's successors back to start, inside the component
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w not in members or w in prev:
                    continue
                prev[w] = v
                if w == start:
                    path, cur = [start], v
                    while cur != start:
                        path.append(cur)
                        cur = prev[cur]
                    path.append(start)
                    return path[::-1]
                nxt.append(w)
        frontier = nxt
    return comp


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    files = module_files()
    lines = []
    for a, b in zip(cycle, cycle[1:]):
        lines.append(f"  {a} -> {b}   ({files[a].relative_to(ROOT)}:{graph[a][b]})")
    return "\n".join(lines)


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "grokwatch.store" in graph["grokwatch.watch.watcher"]  # top level, absolute
    assert "grokwatch.watch.runstate" in graph["grokwatch.watch.watcher"]  # relative
    assert "grokwatch.integrations.track" in graph["grokwatch"]  # inside a function


def test_no_import_cycles():
    graph = import_graph()
    tangles = strongly_connected(graph)
    report = "\n\n".join(
        f"import cycle ({len(c)} modules tangled: {', '.join(c)}):\n{describe(graph, a_cycle(graph, c))}"
        for c in tangles
    )
    assert not tangles, "\n" + report
