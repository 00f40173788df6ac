"""Running the real kubectl against a double."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

# KUBECTL in the environment picks another binary (e.g. an unpacked older
# release) to check the double against several kubectl versions.
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")


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

    def minor_version(self) -> int:
        """The minor release that actually talks to the server."""
        out = self.run("version", "-o", "json", check=False)
        try:
            return int("".join(ch for ch in json.loads(out.stdout)["clientVersion"]["minor"] if ch.isdigit()))
        except (ValueError, KeyError):
            return client_version(self.base[0])[1]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@functools.cache
def client_version(binary: str | None = None) -> tuple[int, int, bool]:
    """(major, minor, is_dispatcher) of a kubectl binary.

    Google's packaged kubectl is a dispatcher that runs the bundled release
    closest to the server's version, so one binary covers several releases.
    """
    binary = binary or KUBECTL
    assert binary is not None
    out = subprocess.run([binary, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    info = json.loads(out.stdout)["clientVersion"]
    minor = int("".join(ch for ch in info["minor"] if ch.isdigit()))
    return int(info["major"]), minor, "dispatcher" in info.get("gitVersion", "")
