"""ipamd daemon processes for tests: start, wait until ready, stop, SIGKILL, restart; a start
that must refuse and exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.client import UnixClient
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


class Daemon:
    def __init__(
        self,
        workdir: Path,
        database_url: str,
        *,
        name: str = "ipamd",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        repo: Path = REPO,
    ) -> None:
        self.workdir = workdir
        # The source tree the daemon runs from (benchmarks compare another checkout's).
        self.repo = repo
        self.database_url = database_url
        self.socket = str(workdir / f"{name}.sock")
        self.log_path = workdir / f"{name}.log"
        self.extra_args = extra_args
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.client = UnixClient(self.socket)

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> Daemon:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ipamd",
                "serve",
                "--socket",
                self.socket,
                "--database-url",
                self.database_url,
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.repo,
            env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        try:
            wait_for(self._ready, timeout=timeout, what=f"ipamd on {self.socket} to be ready")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}:\n{self.log()}") from None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"ipamd exited with {self.process.returncode}:\n{self.log()}")
        if not os.path.exists(self.socket):
            return False
        try:
            return self.client.get("/readyz").status == 200
        except OSError:
            return False

    def objects(self) -> dict[str, Any]:
        """Every object the API lists, usage included: a test that must change nothing leaves
        it equal."""
        return {
            kind: self.client.get(f"/v1/{kind}").body for kind in ("subnets", "pools", "reservations", "allocations")
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> Daemon:
        self.stop()
        return self.start()


def serve_refused(socket: Path | str, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``ipamd serve`` in the foreground, for a start that must stop by itself (a refused
    flag, config file, socket or database): its exit code and output, within a minute."""
    return subprocess.run(
        [sys.executable, "-m", "ipamd", "serve", "--socket", str(socket), "--database-url", database_url, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
