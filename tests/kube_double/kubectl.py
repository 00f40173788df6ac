"""Running the real kubectl against a double."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

KUBECTL = shutil.which("kubectl")


class Kubectl:
    """kubectl with a kubeconfig for the double and a private discovery cache.

    The cache directory matters: kubectl caches discovery per server address,
    and a shared ``~/.kube/cache`` would outlive the randomly-ported doubles.
    """

    def __init__(self, kubeconfig: Path, cache_dir: Path, binary: str | None = None) -> None:
        binary = binary or KUBECTL
        if binary is None:
            raise RuntimeError("kubectl is not installed")
        self.base = [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache_dir)]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
