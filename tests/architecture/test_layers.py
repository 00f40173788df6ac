"""The tree shows the architecture; these checks keep it true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    """import-linter contracts in pyproject.toml: the core is pure, storage sits below the service."""
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and ", 0 broken" in result.stdout


def test_shim_imports_only_the_standard_library():
    tree = ast.parse((REPO / "plugin" / "ipamd").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the shim imports nothing? the parse went wrong"
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_the_daemon_and_the_shim_type_check_strictly():
    """mypy --strict (configured in pyproject.toml) over ipamd/ and the shim."""
    mypy = str(Path(sys.executable).parent / "mypy")
    for target in (["ipamd"], ["--scripts-are-modules", "plugin/ipamd"]):
        result = subprocess.run([mypy, "--strict", *target], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
