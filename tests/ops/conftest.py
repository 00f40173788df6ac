"""Fixtures for the operator-facing tests: ipamctl against the daemon, a daemon with a TCP listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.support import ADMIN_TOKEN, READONLY_TOKEN, Ctl, TcpDaemon, free_port, tcp_get
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for


@pytest.fixture
def ctl(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(capsys, ["--socket", daemon.socket])


@pytest.fixture
def tcp_daemon(tmp_path: Path, database_url: str) -> Iterator[TcpDaemon]:
    """A daemon with a TCP listener and an admin and a read-only token."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN_TOKEN}\nreadonly {READONLY_TOKEN}\n")
    port = free_port()
    daemon = Daemon(
        tmp_path, database_url, extra_args=("--listen", f"127.0.0.1:{port}", "--token-file", str(tokens))
    ).start()

    def listening() -> bool:
        try:
            return tcp_get(port, "/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_for(listening, what="TCP listener")
        yield TcpDaemon(daemon, port)
    finally:
        daemon.stop()
