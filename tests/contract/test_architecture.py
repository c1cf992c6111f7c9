"""The layer rules of docs/architecture.md, checked on the source: who may import what, no cycles."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ex4d_engine", "server", "ex4d_blender")
#: Modules the add-on gets vendored at build time: standard library (+ numpy, imported lazily by callers).
SHARED = ("ex4d_engine/protocol.py", "ex4d_engine/errors.py", "ex4d_engine/atomic.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (anywhere in the file), as absolute dotted names."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
             if "_engine" not in p.relative_to(REPO).parts[1:2]}
    graph = defaultdict(set)
    for name, path in files.items():
        for target in _imports(path):
            if target in files and target != name:
                graph[name].add(target)
    return graph


def test_engine_never_imports_server_blender_or_bpy():
    for path in (REPO / "ex4d_engine").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("server", "ex4d_blender", "bpy")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_server_never_imports_blender():
    for path in (REPO / "server").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("ex4d_blender", "bpy")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("relative", SHARED)
def test_shared_modules_use_the_standard_library_only(relative):
    path = REPO / relative
    allowed_local = {"ex4d_engine.errors", "ex4d_engine.atomic", "ex4d_engine.protocol", "ex4d_engine"}
    for module in _imports(path):
        top = module.split(".")[0]
        if module.startswith("ex4d_engine"):
            assert module in allowed_local or module.rpartition(".")[0] in allowed_local, (relative, module)
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (relative, module)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # a package importing its own submodule (``__init__`` -> ``pkg.sub`` -> ``pkg``) is not a cycle of files
    real = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)
