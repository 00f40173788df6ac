"""A throwaway PostgreSQL server from Debian's ``postgresql`` package, or the one in
``IPAMD_TEST_DATABASE_URL``; each test gets a database of its own."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's postgresql package (scripts/test.sh does)"
    )


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, run as the ``postgres`` user."""

    port: int
    data_dir: Path
    bin_dir: Path
    user: str
    # Tests run without fsync (their numbers are not about the disk); durable benchmarks with.
    fsync: bool = False

    @classmethod
    def start(cls, *, fsync: bool = False) -> PostgresServer:
        bin_dir = _bin_dir()
        base = Path(tempfile.mkdtemp(prefix="ipamd-pg-"))
        data_dir = base / "data"
        user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            shutil.chown(base, user="postgres")
        server = cls(port=free_port(), data_dir=data_dir, bin_dir=bin_dir, user=user, fsync=fsync)
        server._run(
            [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        )
        server.restart()
        return server

    def _run(self, command: list[str]) -> None:
        if os.geteuid() == 0:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def pg_ctl(self, *args: str) -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args])

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode, "-w")

    def restart(self) -> None:
        self.pg_ctl(
            "start",
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data_dir.parent / "log"),
            "-o",
            f"-p {self.port} -k {self.data_dir.parent} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=300",
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _psql(admin_url: str, sql: str) -> None:
    subprocess.run(["psql", admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL)


def create_database(admin_url: str) -> str:
    """Creates an empty database and returns its URL."""
    name = f"ipamd_{uuid.uuid4().hex[:12]}"
    _psql(admin_url, f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    for _ in range(3):
        try:
            _psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except subprocess.CalledProcessError:
            time.sleep(0.2)
