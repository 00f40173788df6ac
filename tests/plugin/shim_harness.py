"""Runs the built CNI plugin (plugin/bin/ipamd) the way a container runtime does: the
network config on stdin, ``CNI_*`` in an otherwise empty environment."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin" / "bin" / "ipamd"


@dataclass
class ShimRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> Any:
        return json.loads(self.stdout)


def cni_environment(
    command: str | None,
    *,
    container_id: str | None = "ctr1",
    ifname: str | None = "net1",
    netns: str | None = "/var/run/netns/test",
    cni_args: str | None = None,
) -> dict[str, str]:
    """The ``CNI_*`` variables a runtime sets; None leaves one out."""
    env = {"CNI_PATH": "/opt/cni/bin"}
    for name, value in (
        ("CNI_COMMAND", command), ("CNI_CONTAINERID", container_id), ("CNI_IFNAME", ifname),
        ("CNI_NETNS", netns), ("CNI_ARGS", cni_args),
    ):
        if value is not None:
            env[name] = value
    return env


def run_shim(command: str | None, config: Any, *, plugin: Path = PLUGIN, **environment: str | None) -> ShimRun:
    env = cni_environment(command, **environment)
    stdin = config if isinstance(config, bytes) else (b"" if config is None else json.dumps(config).encode())
    done = subprocess.run([str(plugin)], input=stdin, env=env, capture_output=True, timeout=60)
    return ShimRun(done.returncode, done.stdout.decode(), done.stderr.decode())
