"""The package's structure: imports point down the layers documented in docs/architecture.md, no module-level import
cycle, no lazy ``__getattr__`` exports, and the feature vocabulary loads without torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tuneahead_ray"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    module_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(body: list[ast.stmt], module_level: bool):
    """Import statements with whether they run at import time; ``if TYPE_CHECKING:`` blocks never run."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, module_level
        elif isinstance(node, ast.If) and _type_checking_only(node):
            continue
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.ClassDef):
            yield from _walk(node.body, module_level)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _walk(getattr(node, field, []) or [], module_level)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads by name (a submodule when ``from P import m`` names one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join(anchor + ([node.module] if node.module else []))
    known = modules()
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, module_level in _walk(tree.body, True):
            for target in _targets(module, path.name == "__init__.py", node):
                if target == "tuneahead_ray" or target.startswith("tuneahead_ray."):
                    found.append(Import(module, target, node.lineno, module_level))
    return tuple(found)


@cache
def documented_layers() -> list[tuple[str, list[str]]]:
    """(layer name, module patterns) from the ``layers`` block of docs/architecture.md, lowest layer first."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = re.search(r"```text layers\n(.*?)```", text, re.S)
    assert block, f"{ARCHITECTURE}: no ```text layers block"
    layers = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, _, patterns = line.partition(":")
            layers.append((name.strip(), patterns.split()))
    return layers[::-1]  # the block lists the top layer first, as the picture reads


def layer_of(module: str) -> tuple[int, str]:
    """The layer of the most specific pattern matching ``module``; ``*`` stands for one package name."""
    best: tuple[int, int, str] | None = None
    for index, (_, patterns) in enumerate(documented_layers()):
        for pattern in patterns:
            regex = "^" + re.escape(pattern).replace(r"\*", r"[a-z_]+") + r"(\.|$)"
            if re.match(regex, module):
                specificity = len(pattern.split("."))
                if best is None or specificity > best[0]:
                    best = (specificity, index, pattern)
    assert best is not None, f"{module}: in no layer of {ARCHITECTURE.name}; add it to the layers block"
    return best[1], best[2]


def test_every_module_has_a_documented_layer() -> None:
    for module in modules():
        layer_of(module)


def test_imports_point_down_the_layers() -> None:
    upward = []
    for item in imports():
        importer, target = layer_of(item.importer), layer_of(item.target)
        if target[0] > importer[0]:
            upward.append(
                f"{item.importer}:{item.line} ({documented_layers()[importer[0]][0]}) imports {item.target} "
                f"({documented_layers()[target[0]][0]})"
            )
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_level_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for item in imports():
        if item.module_level and item.target != item.importer:
            graph.setdefault(item.importer, set()).add(item.target)
    assert not _cycles(graph), f"module-level import cycles: {_cycles(graph)}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_check_catches_an_upward_import() -> None:
    predictor, _ = layer_of("tuneahead_ray.predictor._store")
    features, _ = layer_of("tuneahead_ray.features._names")
    compute, _ = layer_of("tuneahead_ray.features.compute")
    command_line, _ = layer_of("tuneahead_ray.predictor.cli")
    assert features < compute < predictor < command_line


def test_no_lazy_getattr_exports() -> None:
    hooks = [
        f"{module}:{node.lineno}"
        for module, path in modules().items()
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
    ]
    assert not hooks, f"module-level __getattr__/__dir__ hooks: {hooks}"


@pytest.mark.parametrize("module", ["tuneahead_ray.features", "tuneahead_ray.descriptors", "tuneahead_ray.predictor"])
def test_light_packages_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
