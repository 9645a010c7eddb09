"""The test suite's own layout: shared helpers live in tests/support/, no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MODULES = sorted(TESTS.glob("test_*.py")) + sorted((TESTS / "support").glob("*.py"))
# What a test module may not import: another test module, conftest (pytest loads it; helpers go to support/),
# or a helper left beside the tests instead of in support/.
LOOSE = {path.stem for path in TESTS.glob("*.py")}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, top level or inside a function, as (line, dotted name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_imports_only_support_helpers(path):
    bad = [f"{path.name}:{line}: imports {name}" for line, name in imported_modules(path)
           if name.split(".")[0] in LOOSE]
    assert not bad, "\n".join(bad) + "\n(shared helpers belong in tests/support/)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(TESTS)))
def test_module_says_what_it_covers(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and doc.splitlines()[0].strip(), f"{path.name} has no header docstring"


def test_the_check_sees_an_import_of_a_test_module(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("import os\n\n\ndef test_x():\n    from test_run_cli import PROMPT\n"
                     "    from conftest import FREEDOS_IMG\n")
    assert [name for _, name in imported_modules(probe) if name.split(".")[0] in LOOSE] == ["test_run_cli", "conftest"]
