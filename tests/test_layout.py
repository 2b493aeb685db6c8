"""The package layout's rules, read from the source: dependencies between watcher's packages point
one way (no import cycle), and code outside `watcher/ecosystems/` names no specific ecosystem
except in the few files that say why."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

WATCHER = Path(__file__).resolve().parent.parent / "watcher"
NAMED_ECOSYSTEM = re.compile(r"Ecosystem\.(NPM|PYPI)\b")
MAX_FILES_NAMING_AN_ECOSYSTEM = 3


def _module(path: Path) -> str:
    parts = path.relative_to(WATCHER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """`watcher.feeds.reconcile` → `watcher.feeds`; a root module is its own package."""
    return ".".join(module.split(".")[:2])


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported when the file runs: `if TYPE_CHECKING:` blocks are left out."""
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in WATCHER.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for target in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target not in modules or target == "watcher":
                continue
            source, dest = _package(module), _package(target)
            if source != dest:
                graph[source].add(dest)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_watchers_packages() -> None:
    graph = package_graph()
    assert "watcher.ecosystems" in graph["watcher.config"]  # the graph is read at all
    assert cycles(graph) == []


def test_no_file_outside_ecosystems_names_an_ecosystem_without_saying_why() -> None:
    naming = sorted(
        path.relative_to(WATCHER).as_posix()
        for path in WATCHER.rglob("*.py")
        if "ecosystems" not in path.relative_to(WATCHER).parts
        and NAMED_ECOSYSTEM.search(path.read_text(encoding="utf-8"))
    )
    assert len(naming) <= MAX_FILES_NAMING_AN_ECOSYSTEM, naming
    for name in naming:
        text = (WATCHER / name).read_text(encoding="utf-8")
        reasons = [line for line in text.splitlines() if line.lstrip().startswith("#")]
        assert any(NAMED_ECOSYSTEM.search(line) for line in reasons), f"{name}: no reason given"
