"""`pip install .` ships every package: pyproject.toml lists them by hand (for the firmware symlink), so a new
subpackage missing from the list installs a `nbdboot` that fails at import (scripts/fresh-venv-check, run by
.ci/run, installs it for real)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_every_package_is_in_pyproject():
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "nbdboot").rglob("__init__.py")}
    assert found - listed == set()
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    assert entry == {"nbdboot.pytest_plugin": "nbdboot.pytest_plugin"}
