"""The package's layers hold: no import cycle, no import up the layers, nothing out of config.

Every import counts, wherever it is written: at module level, inside a function, or under
``if TYPE_CHECKING`` (a typing import is still a dependency a reader has to follow).  A
failure names the file, the line, the kind of import and the rule it breaks.

The layers, lowest first (docs/architecture.md draws them).  A module may import from its own
layer and from lower ones; within a layer, the cycle check keeps the order.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.harness import ROOT

PACKAGE = ROOT / "server"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("hopwire", "hopwire.errors", "hopwire.addresses", "hopwire.contracts")),
    ("base", ("hopwire.throttle",)),
    ("config", ("hopwire.config",)),
    ("live configuration", ("hopwire.live",)),
    ("kubernetes objects", ("hopwire.kube",)),
    ("rules", ("hopwire.routing",)),
    ("http", ("hopwire.http",)),
    ("telemetry", ("hopwire.telemetry",)),
    ("middlewares", ("hopwire.middlewares",)),
    ("balancing", ("hopwire.balancer",)),
    ("phases", ("hopwire.proxy",)),
    ("runtime", ("hopwire.entrypoints", "hopwire.worker")),
    ("composition", ("hopwire.checks",)),
    (
        "processes",
        ("hopwire.systemd", "hopwire.supervise", "hopwire.kube.provider", "hopwire.arbiter"),
    ),
    ("command", ("hopwire.cli", "hopwire.__main__")),
]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    path: str  # relative to the package's parent
    line: int
    kind: str  # "module", "function" or "typing"

    def where(self) -> str:
        return f"{self.path}:{self.line} ({self.kind} import of {self.target})"


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _kinds(tree: ast.Module) -> dict[int, str]:
    """The kind of every import node: typing beats function beats module."""
    kinds: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    kinds.setdefault(id(inner), "function")
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    kinds[id(inner)] = "typing"
    return kinds


def imports(found: dict[str, Path], root: Path) -> list[Import]:
    result = []
    for name, path in found.items():
        shown = str(path.relative_to(root))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        kinds = _kinds(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in found]
                targets = subs if len(subs) == len(node.names) else [origin, *subs]
            for target in targets:
                if target != "hopwire" and not target.startswith("hopwire."):
                    continue
                while target not in found and "." in target:
                    target = target.rpartition(".")[0]
                if target != name:
                    kind = kinds.get(id(node), "module")
                    result.append(Import(name, target, shown, node.lineno, kind))
    return result


def layer_of(module: str) -> tuple[int, str]:
    best = (-1, "", "")
    for index, (layer, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[2]):
                best = (index, layer, prefix)
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    index, layer, _ = best
    # entries that share a name are one layer: a module may import any of them
    first = next(i for i, (name, _) in enumerate(LAYERS) if name == layer)
    return first if LAYERS[first][0] == layer else index, layer


def cycles(edges: list[Import]) -> list[list[Import]]:
    """One cycle per strongly connected component, as the imports that close it."""
    graph: dict[str, list[Import]] = {}
    for edge in edges:
        graph.setdefault(edge.source, []).append(edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for component in components:
        # walk from the first member back to itself inside the component
        start = min(component)
        path: list[Import] = []
        seen = {start}
        node = start
        while True:
            edge = next(
                e
                for e in graph[node]
                if e.target in component and (e.target == start or e.target not in seen)
            )
            path.append(edge)
            if edge.target == start:
                break
            seen.add(edge.target)
            node = edge.target
        found.append(path)
    return found


def problems(root: Path = PACKAGE) -> list[str]:
    edges = imports(modules(root), root)
    report = []
    for edge in edges:
        if edge.source.startswith("hopwire.config") and not edge.target.startswith(
            "hopwire.config"
        ):
            report.append(f"out of config: {edge.where()}")
            continue
        (low, low_name), (high, high_name) = layer_of(edge.target), layer_of(edge.source)
        if low > high:
            report.append(f"up the layers ({high_name} -> {low_name}): {edge.where()}")
    for cycle in cycles(edges):
        report.append("cycle: " + " -> ".join(e.where() for e in cycle))
    return report


def test_the_layers_hold() -> None:
    report = problems()
    assert not report, "\n".join(report)


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A tree with one bad import of each kind: each is named with its file and line."""
    root = tmp_path / "hopwire"
    (root / "config").mkdir(parents=True)
    (root / "http").mkdir()
    for package in (root, root / "config", root / "http"):
        (package / "__init__.py").write_text("")
    (root / "config" / "schema.py").write_text("def f():\n    from hopwire.http import wire\n")
    (root / "http" / "wire.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hopwire import proxy\n"
    )
    (root / "proxy.py").write_text("from hopwire.http import wire\n")
    (root / "cli.py").write_text("from .proxy import main\n")
    report = problems(tmp_path)
    text = "\n".join(report)
    assert "out of config: " in text and "hopwire/config/schema.py:2 (function import" in text
    assert (
        "up the layers (http -> phases)" in text and "hopwire/http/wire.py:3 (typing import" in text
    )
    assert "cycle: " in text and "hopwire/proxy.py:1 (module import of hopwire.http.wire)" in text
    assert not any("cli.py" in line for line in report)  # command -> phases is down the layers
