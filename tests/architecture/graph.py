"""Why: the import graph of `gateway/` (function-level and TYPE_CHECKING imports included, as grimp
builds it) and its strongly connected components — any component with more than one module is an
import cycle. Used by tests/architecture/test_layers.py and runnable on its own:

    .venv/bin/python -m tests.architecture.graph    # prints every cycle, exit 1 if there is one
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import grimp


def build(package: str = "gateway") -> grimp.ImportGraph:
    return grimp.build_graph(package, "classifiers", include_external_packages=False, cache_dir=None)


def cycles(graph: grimp.ImportGraph, package: str = "gateway") -> list[list[str]]:
    """Strongly connected components of more than one module among `package`'s modules (Tarjan)."""
    nodes = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    inside = set(nodes)
    edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m) if n in inside) for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:  # iterative Tarjan (the graph is deep enough to hit recursion limits)
        nonlocal counter
        work: list[tuple[str, Iterable[str]]] = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return sorted(found)


def main() -> int:
    graph = build()
    found = cycles(graph)
    for component in found:
        print(f"cycle of {len(component)} modules:")
        for module in component:
            inner = sorted(n for n in graph.find_modules_directly_imported_by(module) if n in component)
            print(f"  {module} -> {', '.join(inner)}")
    print(f"{len(found)} import cycle(s) among gateway modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
