"""`ipamd install-cni`: a launcher per name with the shim module beside it, or single files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The shim's shebang looks python3 up on PATH; use the system's, as a node's runtime would.
RUNTIME_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "CNI_COMMAND": "VERSION"}


def install(dest: Path, *extra: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "ipamd", "install-cni", "--dest", str(dest), *extra],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    return done.stdout.split()


def run_version(plugin: Path) -> subprocess.CompletedProcess[str]:
    config = json.dumps({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "ipamd"}})
    return subprocess.run([str(plugin)], input=config, capture_output=True, text=True, env=RUNTIME_ENV)


def test_launchers_run_the_module_and_python_caches_its_bytecode(tmp_path: Path):
    install(tmp_path, "--also-as", "kube-ovn")
    assert (tmp_path / "ipamd_cni_shim.py").read_bytes() == (REPO / "plugin" / "ipamd").read_bytes()
    for name in ("ipamd", "kube-ovn"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o755
        done = run_version(tmp_path / name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["cniVersion"] == "1.0.0"
    assert list((tmp_path / "__pycache__").glob("ipamd_cni_shim.*.pyc"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_a_missing_module_is_a_cni_error_not_a_traceback(tmp_path: Path):
    install(tmp_path)
    (tmp_path / "ipamd_cni_shim.py").unlink()
    done = run_version(tmp_path / "ipamd")
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["code"] == 999 and "run ipamd install-cni again" in error["msg"]


def test_single_file_copies_the_shim_under_each_name(tmp_path: Path):
    install(tmp_path, "--single-file", "--name", "ipamd", "--also-as", "kube-ovn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ipamd", "kube-ovn"]
    assert (tmp_path / "kube-ovn").read_bytes() == (REPO / "plugin" / "ipamd").read_bytes()
    assert run_version(tmp_path / "kube-ovn").returncode == 0
