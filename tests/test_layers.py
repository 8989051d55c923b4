"""The library's layering stays true: a module imports only its own layer or the layers below it, and a function-level
import only defers a heavy third-party import (TensorFlow/Keras, cv2, matplotlib) — never hides a package import.

Read with ``ast`` from the sources (nothing is imported), so a new upward import fails here with its file and line.
The layers are the README's architecture section; a new module must be given a layer below (the test fails until it
is).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "antrax_pipe"

#: Module (dotted, without ``antrax_pipe.``) or package prefix → layer. The longest matching prefix wins.
LAYERS: dict[str, int] = {
    # L0: domain classes and errors, no I/O
    "_version": 0, "model": 0, "logutil": 0,
    # L1: one io module per file kind (anTraX's and the project's own)
    "io": 1,
    # the load_…/save_… facade over io
    "": 1,
    # L2: pure logic, no TensorFlow
    "preprocess": 2, "aggregation": 2, "conflicts": 2, "coverage": 2, "stats": 2, "plan": 2, "review": 2, "results": 2,
    "trainset": 2,
    # L3: TensorFlow users
    "nets": 3, "classifier": 3, "inference": 3, "evaluate": 3, "training": 3,
    # L4: what people look at, and where results came from
    "report": 4, "provenance": 4,
    # L5: the stage functions the workflow scripts call
    "stages": 5,
    # L6: user interfaces on top
    "cli": 6, "runner": 6, "app": 6,
}
#: Third-party modules a function may import lazily (heavy, or not needed by every caller).
DEFERRABLE = ("tensorflow", "keras", "cv2", "matplotlib")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def layer_of(mod: str) -> int:
    best = None
    for prefix, layer in LAYERS.items():
        if mod == prefix or (prefix and mod.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    if best is None:
        raise AssertionError(f"antrax_pipe.{mod} has no layer: add it to LAYERS in tests/test_layers.py")
    return best[1]


def _resolve(mod: str, node: ast.ImportFrom) -> list[str]:
    """Package-internal modules a ``from … import …`` names (a submodule import names the submodule)."""
    if node.level:
        base = mod.split(".") if MODULES[mod].name == "__init__.py" else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join(p for p in [*base, *(node.module.split(".") if node.module else [])] if p)
    elif node.module and (node.module == "antrax_pipe" or node.module.startswith("antrax_pipe.")):
        target = node.module[len("antrax_pipe."):] if node.module != "antrax_pipe" else ""
    else:
        return []
    out = []
    for a in node.names:
        sub = f"{target}.{a.name}" if target else a.name
        out.append(sub if sub in MODULES else target)
    return out


def imports(mod: str) -> list[tuple[str, int, bool, str]]:
    """(target, line, at function level, third-party name) of every import of a module."""
    tree = ast.parse(MODULES[mod].read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom):
                targets = _resolve(mod, child)
                found.extend((t, child.lineno, f, "") for t in targets)
                if not targets and not child.level:
                    found.append(("", child.lineno, f, child.module or ""))
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.startswith("antrax_pipe"):
                        found.append((a.name[len("antrax_pipe."):], child.lineno, f, ""))
                    else:
                        found.append(("", child.lineno, f, a.name))
            visit(child, f)

    visit(tree, False)
    return found


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_imports_only_go_down(mod):
    mine = layer_of(mod)
    for target, line, _, third in imports(mod):
        if third:
            continue
        assert layer_of(target) <= mine, (
            f"antrax_pipe/{MODULES[mod].relative_to(PKG)}:{line} imports antrax_pipe.{target} "
            f"(layer {layer_of(target)}) from layer {mine}")


def heavy_modules() -> set[str]:
    """Package modules that import a deferrable library at module level, directly or through another package module:
    importing one of them inside a function defers that library, which is the one allowed reason."""
    direct = {m for m in MODULES
              if any(not f and th.split(".")[0] in DEFERRABLE for t, _, f, th in imports(m))}
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for m in MODULES:
            if m not in heavy and any(not f and t in heavy for t, _, f, _ in imports(m)):
                heavy.add(m)
                changed = True
    return heavy


HEAVY = heavy_modules()


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_function_level_imports_only_defer_heavy_libraries(mod):
    for target, line, in_func, _ in imports(mod):
        if in_func and target:
            assert target in HEAVY, (
                f"antrax_pipe/{MODULES[mod].relative_to(PKG)}:{line}: antrax_pipe.{target} is imported inside a "
                f"function but imports no heavy library ({', '.join(DEFERRABLE)}); import it at module level (a "
                f"function-level import would hide an import cycle)")


def test_no_import_cycle():
    graph = {m: {t for t, _, f, th in imports(m) if not f and (t or not th) and t != m and t in MODULES}
             for m in MODULES}
    graph = {m: {t for t in ts if t != ""} for m, ts in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = path[path.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(f"antrax_pipe.{c}" for c in cycle))
            if t not in state:
                dfs(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)


def test_every_module_has_a_layer_and_stays_small():
    for mod, path in MODULES.items():
        layer_of(mod)
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n <= 600, f"{path.relative_to(PKG.parent)}: {n} lines (split it: no module over 600 lines)"


def test_no_function_over_80_lines():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + "; ".join(long)
