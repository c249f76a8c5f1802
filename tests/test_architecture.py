"""The import graph keeps its shape: no cycles, no upward imports, no sprawling files.

Every import counts, including those inside functions and under ``TYPE_CHECKING``:
a lazy import hides a cycle from Python at run time, not from a reader.
See docs/architecture.md for the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("otawire", "modelpack", "server", "vehicle_agent", "simulator", "ota")
SCANNED = (*PRODUCT, "bench", "testkit")
GENERATED = ("otawire/v1/",)

# Which top-level packages each one may import (itself always). Anything not
# listed is an upward or sideways import: the registry and the vehicle agent
# never import each other; the contract (otawire) and modelpack import neither.
ALLOWED: dict[str, set[str]] = {
    "otawire": set(),
    "modelpack": set(),
    "server": {"otawire", "modelpack"},
    "vehicle_agent": {"otawire", "modelpack"},
    "simulator": {"otawire", "modelpack", "server", "vehicle_agent"},
    "ota": {"otawire", "modelpack", "server", "vehicle_agent", "simulator"},
    "testkit": {"otawire", "modelpack", "server", "vehicle_agent"},
    "bench": {"otawire", "modelpack", "server", "vehicle_agent", "simulator", "testkit"},
}
# Leaf utilities anyone may import (they import nothing of ours).
LEAVES = {"modelpack.fsio", "otawire.cli_out"}
MAX_LINES = 400
LONG_FILE_REASON = "long file:"  # a docstring line starting so explains why a file is longer


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(roots: tuple[str, ...] = SCANNED) -> dict[str, Path]:
    out = {}
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(GENERATED):
                out[_module_name(path)] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, known, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    yield full, node.lineno
                else:
                    yield from _resolve(base, known, node.lineno)


def _resolve(name: str, known: set[str], line: int) -> Iterator[tuple[str, int]]:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in known:
            yield candidate, line
            return


def _graph() -> dict[str, dict[str, int]]:
    sources = _sources()
    known = set(sources) | {"tests"}
    graph: dict[str, dict[str, int]] = {}
    for module, path in sources.items():
        edges: dict[str, int] = {}
        for target, line in _imports(path, module, known):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_seen() -> None:
    """Guard for the checks below: they would pass vacuously on an empty graph."""
    graph = _graph()
    assert "server.registry" in graph and "otawire.paths" in graph["vehicle_agent.journal"]
    assert "server.storage.ports" in graph["server.storage.sqlite"]


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, (
        "import cycles (break them; an import inside a function does not): "
        + "; ".join(" <-> ".join(c) for c in cycles)
    )


def test_no_upward_imports() -> None:
    bad = []
    for module, edges in _graph().items():
        top = module.split(".")[0]
        for target, line in edges.items():
            other = target.split(".")[0]
            if other != top and other not in ALLOWED[top] and target not in LEAVES:
                bad.append(f"{module}:{line} imports {target}")
    assert not bad, "imports against the layering (see docs/architecture.md):\n" + "\n".join(bad)


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    """The two checks above fail on the kinds of import they exist for."""
    graph = {k: dict(v) for k, v in _graph().items()}
    graph["server.storage.ports"]["server.registry"] = 1  # a port reaching up into the registry
    assert any({"server.storage.ports", "server.registry"} <= set(c) for c in _cycles(graph))
    assert "server" not in ALLOWED["otawire"] and "vehicle_agent" not in ALLOWED["server"]
    assert "server" not in ALLOWED["vehicle_agent"] and "server" not in ALLOWED["modelpack"]
    assert all(not _graph()[leaf].keys() - {leaf} for leaf in LEAVES)


def test_no_long_files_without_a_reason() -> None:
    long = []
    for path in _sources(PRODUCT).values():
        lines = path.read_text().count("\n")
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not any(line.strip().lower().startswith(LONG_FILE_REASON) for line in doc.splitlines()):
            long.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert not long, (
        f"files over {MAX_LINES} lines: split them by idea, or say why in a docstring line "
        f"starting {LONG_FILE_REASON!r}: " + ", ".join(long)
    )
