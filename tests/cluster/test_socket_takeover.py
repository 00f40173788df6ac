"""The Unix socket belongs to one live daemon (issue 11, item 4; issue 18, D17).

Real daemon processes on one socket path: a second daemon refuses to start while the first
serves (and the first keeps serving), a socket another process listens on is never taken
over, a stale socket left by SIGKILL is replaced, and a stopping daemon removes the path
only while it still is its own socket. Start-up failures about the socket are one clear
line that names the path, and leave no socket file behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, serve_refused


def _serve(socket_path: str, database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return serve_refused(socket_path, f"sqlite:///{database}", *args)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("ipamd:")]
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def _inode(path: str) -> int:
    return os.lstat(path).st_ino


def test_a_second_daemon_refuses_a_live_socket_and_the_first_keeps_serving(sockdir: Path, tmp_path: Path) -> None:
    first = Daemon(sockdir, f"sqlite:///{tmp_path / 'first.db'}").start()
    try:
        inode = _inode(first.socket)
        second_db = tmp_path / "second.db"
        line = _one_line(_serve(first.socket, second_db))
        assert "another ipamd" in line and first.socket in line, line
        # Refused before touching anything: no database was created.
        assert not second_db.exists()
        assert _inode(first.socket) == inode
        assert first.client.get("/readyz").status == 200
        assert (
            first.client.post("/v1/subnets", {"name": "n1", "cidrBlock": "192.0.2.0/24", "provider": "n1.ns"}).status
            == 201
        )
        # Through the Daemon helper as well: a real process that exits, while the first serves on.
        second = Daemon(tmp_path, f"sqlite:///{second_db}", name="second")
        second.socket = first.socket
        second.start(wait=False)
        assert second.process is not None and second.process.wait(60) == 2
        assert "another ipamd" in second.log()
        assert first.client.get("/v1/subnets/n1").status == 200
    finally:
        assert first.stop() == 0
    assert not os.path.exists(first.socket)


def test_a_socket_another_process_listens_on_is_not_taken_over(sockdir: Path, tmp_path: Path) -> None:
    path = str(sockdir / "foreign.sock")
    # A daemon of a version without the lock file, or anything else listening.
    foreign = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    foreign.bind(path)
    foreign.listen(4)
    try:
        inode = _inode(path)
        line = _one_line(_serve(path, tmp_path / "ipamd.db"))
        assert "another process is serving on" in line and path in line, line
        assert _inode(path) == inode
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)  # still the foreign listener's
    finally:
        foreign.close()


def test_a_stale_socket_is_replaced(sockdir: Path, tmp_path: Path) -> None:
    path = str(sockdir / "stale.sock")
    # Bound, never listening: what a crashed process leaves.
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(path)
    leftover.close()
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe, pytest.raises(ConnectionRefusedError):
        probe.connect(path)
    # The kernel may give the new socket the freed inode number, so what proves the takeover is
    # that the path now answers.
    daemon = Daemon(sockdir, f"sqlite:///{tmp_path / 'ipamd.db'}", name="stale").start()
    try:
        assert daemon.client.get("/readyz").status == 200
    finally:
        daemon.stop()
    # And after SIGKILL the next daemon takes the path over again.
    daemon.start()
    daemon.kill()
    assert os.path.exists(path)
    daemon.start()
    try:
        assert daemon.client.get("/readyz").status == 200
    finally:
        daemon.stop()


def test_a_stopping_daemon_unlinks_only_its_own_socket(sockdir: Path, tmp_path: Path) -> None:
    daemon = Daemon(sockdir, f"sqlite:///{tmp_path / 'ipamd.db'}").start()
    replacement = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Somebody else now owns the path (an operator, a daemon of another version).
        os.unlink(daemon.socket)
        replacement.bind(daemon.socket)
        replacement.listen(4)
        inode = _inode(daemon.socket)
        assert daemon.stop() == 0
        assert os.path.exists(daemon.socket) and _inode(daemon.socket) == inode
        assert "no longer this daemon's socket" in daemon.log()
    finally:
        replacement.close()


def test_an_unknown_socket_group_fails_clearly_and_leaves_no_socket(sockdir: Path, tmp_path: Path) -> None:
    path = str(sockdir / "group.sock")
    line = _one_line(_serve(path, tmp_path / "ipamd.db", "--socket-group", "nosuchgroup"))
    assert "--socket-group 'nosuchgroup': no such group" in line, line
    assert not os.path.exists(path)
    assert not (tmp_path / "ipamd.db").exists()


def test_socket_errors_name_the_path(sockdir: Path, tmp_path: Path) -> None:
    # The parent is a file: the directory cannot be created.
    blocker = sockdir / "file"
    blocker.write_text("")
    path = str(blocker / "ipamd.sock")
    line = _one_line(_serve(path, tmp_path / "ipamd.db"))
    assert path in line, line
    # A path longer than a socket address can hold: bind() itself fails.
    long_dir = sockdir / ("d" * 100)
    long_dir.mkdir()
    path = str(long_dir / "ipamd.sock")
    line = _one_line(_serve(path, tmp_path / "ipamd.db"))
    assert f"cannot listen on unix socket {path}" in line, line
    assert not os.path.exists(path)
    # A path that exists and is no socket is never replaced.
    regular = sockdir / "regular"
    regular.write_text("keep me")
    line = _one_line(_serve(str(regular), tmp_path / "ipamd.db"))
    assert f"{regular} exists and is not a socket" in line, line
    assert regular.read_text() == "keep me"
