"""Fixtures for the CNI shim tests (the harness itself is in shim_harness.py)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest
from shim_harness import FakeDaemon, FakeDaemonHandler, UnixHTTPServer


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107-byte limit of a Unix socket path.
    path = Path(tempfile.mkdtemp(prefix="shim-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_ipamd(sock_dir: Path) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(str(sock_dir / "ipamd.sock"))
    server = UnixHTTPServer(fake.socket_path, FakeDaemonHandler)
    server.fake = fake
    # A short poll interval only makes shutdown() prompt; requests are served at once.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def silent_socket(sock_dir: Path) -> Iterator[str]:
    """A socket that accepts connections (kernel backlog) but never answers."""
    path = str(sock_dir / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    yield path
    listener.close()


