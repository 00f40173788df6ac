"""The tree shows the architecture; these checks keep it true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    """import-linter contracts in pyproject.toml: the core is pure, storage sits below the service."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and ", 0 broken" in result.stdout


def test_the_plugin_is_small_and_uses_only_the_go_standard_library():
    """The CNI plugin is a pipe (docs/shim.md): no module requirements, nothing beyond Go's
    standard library, a few hundred lines."""
    plugin = REPO / "plugin"
    assert "require" not in (plugin / "go.mod").read_text()
    done = subprocess.run(
        ["go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "."],
        cwd=plugin,
        capture_output=True,
        text=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOCACHE": os.environ.get("GOCACHE", "/tmp/ipamd-go-build")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ipamd/plugin"], done.stdout
    sources = [path for path in plugin.glob("*.go") if not path.name.endswith("_test.go")]
    lines = sum(len(path.read_text().splitlines()) for path in sources)
    assert 0 < lines <= 400, lines


def test_the_daemon_type_checks_strictly():
    """mypy --strict (configured in pyproject.toml) over ipamd/."""
    mypy = str(Path(sys.executable).parent / "mypy")
    result = subprocess.run([mypy, "--strict", "ipamd"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_answers_typed_values_not_wire_dicts():
    """The service's results are ipamd.core.model values; ``dict[str, Any]`` would be API JSON
    built below the HTTP layer again (issue 13)."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted((REPO / "ipamd" / "service").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "dict[str, Any]" in line or "SimpleNamespace" in line
    ]
    assert offenders == []
