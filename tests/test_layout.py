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
