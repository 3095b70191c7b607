"""The code matches docs/architecture.md: the public API table is each module's
``__all__``, sorted, and every name in it exists."""

import importlib
import re

import pytest

from tests.conftest import ROOT

ARCHITECTURE = (ROOT / "docs/architecture.md").read_text()


def _table(heading):
    section = ARCHITECTURE.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {re.findall(r"`([^`]+)`", row.split("|")[1])[0]: re.findall(r"`([^`]+)`", row.split("|")[2])
            for row in rows}


PUBLIC = _table("Public API")


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_documented_names_are_exactly_the_exported_ones(module):
    mod = importlib.import_module(module)
    assert mod.__all__ == sorted(mod.__all__, key=str), f"{module}.__all__ is not sorted"
    assert sorted(PUBLIC[module]) == sorted(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but does not exist"


# -- layers -------------------------------------------------------------------------

SRC = ROOT / "src"
PACKAGE = SRC / "offload"


def _layers():
    """``{module or package prefix: layer number}`` from the architecture table."""
    section = ARCHITECTURE.split("| layer | folders and modules |", 1)[1].split("\n\n", 1)[0]
    found = {}
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or not cells[1].strip()[:1].isdigit():
            continue
        layer = int(cells[1].split()[0])
        for name in re.findall(r"`([^`]+)`", cells[2]):
            found["offload" if name == "offload" else "offload." + name.removesuffix(".py").rstrip("/")] = layer
    return found


LAYERS = _layers()


def _layer_of(module):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS and (n > 1 or module == "offload"):
            return LAYERS[".".join(parts[:n])]
    return None


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path, *, top_level_only=False):
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "offload":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = (SRC / (full.replace(".", "/") + ".py")).exists() or (SRC / full.replace(".", "/")).is_dir()
                yield full if is_module else node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "offload":
                    yield alias.name


def test_every_module_has_a_layer():
    assert [m for m, _ in _modules() if _layer_of(m) is None] == []


def test_imports_go_only_to_the_same_layer_or_a_layer_above():
    wrong = [f"{module} (layer {_layer_of(module)}) imports {target} (layer {_layer_of(target)})"
             for module, path in _modules() for target in _imports(path)
             if _layer_of(target) is not None and _layer_of(target) > _layer_of(module)]
    assert wrong == []


def test_no_import_cycle_at_import_time():
    graph = {m: {t for t in _imports(p, top_level_only=True) if t != m} for m, p in _modules()}
    seen, stack = set(), []

    def visit(module):
        if module in stack:
            raise AssertionError(" -> ".join(stack[stack.index(module):] + [module]))
        if module in seen:
            return
        stack.append(module)
        for target in graph.get(module, ()):
            visit(target)
        stack.pop()
        seen.add(module)

    for module in graph:
        visit(module)
