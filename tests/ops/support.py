"""Helpers for the operator-facing tests: ipamctl runs, TCP requests,
SIGHUP reloads of a daemon's --config file."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ipamd.ctl import main as ipamctl_main
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
ADMIN_TOKEN = "admin-token-for-ops-tests-0001"
READONLY_TOKEN = "readonly-token-for-ops-tests-01"


@dataclass
class CtlRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Ctl:
    """Runs ipamctl in-process against one daemon and captures what it prints."""

    def __init__(self, capsys: pytest.CaptureFixture[str], connection: list[str]) -> None:
        self.capsys = capsys
        self.connection = connection

    def __call__(self, *args: str) -> CtlRun:
        self.capsys.readouterr()
        code = ipamctl_main([*self.connection, *args])
        captured = self.capsys.readouterr()
        return CtlRun(code, captured.out, captured.err)

    def ok(self, *args: str) -> CtlRun:
        run = self(*args)
        assert run.code == 0, f"ipamctl {' '.join(args)} exited {run.code}: {run.err}"
        return run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tcp_get(port: int, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


@dataclass
class TcpDaemon:
    daemon: Daemon
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def reload(daemon: Daemon) -> None:
    assert daemon.process is not None
    os.kill(daemon.process.pid, signal.SIGHUP)


def log_has(daemon: Daemon, text: str, *, after: int = 0) -> bool:
    return text in daemon.log()[after:]


def reload_and_wait(daemon: Daemon) -> str:
    """Sends SIGHUP and returns the log lines the reload wrote (waits for its summary line)."""
    start = len(daemon.log())
    reload(daemon)
    wait_for(
        lambda: log_has(daemon, " applied: ", after=start) or log_has(daemon, " not applied: ", after=start),
        what="reload",
    )
    return daemon.log()[start:]
