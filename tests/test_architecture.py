"""The layout is the architecture: imports flow one way, and a strategy is described in one place only."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("study", "advisor", "reports")

# Lower layers first; a module may import its own layer and those before it, never a later one.
STUDY_LAYERS = (
    ("study.errors", "study.config", "study.cli_support", "study.registry", "study.quality"),
    ("study.data",),
    ("study.zoo",),
    ("study.cache",),
    ("study.train", "study.probes"),
    ("study.engine",),
    ("study.analysis",),
    ("study.run",),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every project module -> the project modules it imports (module level or inside functions)."""
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.split(".")[0] in PACKAGES:
                    found.add(t)
        graph[name] = found
    return graph


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(STUDY_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_study_never_imports_the_layers_above_it():
    bad = [(m, t) for m, ts in _imports().items() if m.startswith("study") for t in ts if t.split(".")[0] != "study"]
    assert not bad, f"study imports advisor/reports: {bad}"


def test_imports_flow_down_the_study_layers():
    bad = []
    for module, targets in _imports().items():
        here = _layer(module)
        if here is None and module.startswith("study."):
            bad.append((module, "is in no layer: add it to STUDY_LAYERS"))
        for t in targets:
            there = _layer(t)
            if here is not None and there is not None and there > here:
                bad.append((module, t))
    assert not bad, f"imports against the layer order: {bad}"


def test_no_import_circle_anywhere():
    graph = _imports()
    # Package __init__ modules are containers; an edge into one is an edge into the package's contents.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, f"import circles: {cycles}"


def test_the_architecture_check_can_fail():
    """The graph sees function-level imports too (the old advisor.cli <-> advisor.deploy circle was one)."""
    graph = _imports()
    assert "study.data.loaders" in graph["study.data.catalog"]
    assert "study.train.strategies" in graph["study.engine.cell"]
    assert _layer("study.engine.sweep") > _layer("study.train.tuning")


ENTRY_MODULES = {"study.config", "study.cli_support", "study", "study.run"}
ENVIRONMENT_READERS = {"data_dirs", "cache_dir", "keras_home", "weights_dirs"}


def test_below_the_entry_points_nothing_reads_the_environment():
    """Flags and environment become plain values at the entry points (``study.run``, each CLI's ``main``);
    the layers below receive paths and settings as arguments."""
    bad = []
    for path in (REPO / "study").rglob("*.py"):
        module = _module_name(path)
        if module in ENTRY_MODULES:
            continue
        tree = ast.parse(path.read_text(), str(path))
        allowed: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "main":
                allowed |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in allowed or not isinstance(node, ast.Attribute):
                continue
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if (base == "os" and node.attr in ("environ", "getenv")) or (
                base == "config" and node.attr in ENVIRONMENT_READERS
            ):
                bad.append(f"{module}:{node.lineno}: {base}.{node.attr}")
    assert not bad, bad
