"""Who may talk to the daemon, and what it never tells anyone.

- The Unix socket is mode 0660, owned by ``--socket-group``.
- No TCP listener unless ``--listen`` asks for one.
- On the TCP listener every state-changing route needs the admin token (401 without a
  token, 403 with the read-only one); reads work with the read-only token.
- The database password appears neither in the log nor in any answer, whether the server
  is unreachable or refuses the password.
"""

from __future__ import annotations

import asyncio
import grp
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.clusterkit import add_body, listening_tcp_ports, request
from tests.support.daemon import REPO, Daemon
from tests.support.postgres import PostgresServer, free_port
from tests.support.waiting import wait_for

ADMIN_TOKEN = "admin-Zq8Jx2Lw9Pt4Rk7N"
READONLY_TOKEN = "readonly-Hc3Vb6Ym1Qs5Dt8F"
SAFE = {"GET", "HEAD", "OPTIONS"}
OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
PASSWORD = "S3cretPassw0rd"


def _routes() -> list[tuple[str, str]]:
    """Every (method, path) the daemon's application serves, with the path filled in."""
    from ipamd.api.app import create_app
    from ipamd.service import Ipam
    from ipamd.store.database import open_database

    async def collect(directory: str) -> list[tuple[str, str]]:
        database = open_database(f"sqlite:///{directory}/routes.db")
        try:
            app = create_app(Ipam(database))
            found = set()
            for route in app.router.routes():
                if route.resource is None or route.method == "HEAD":
                    continue
                path = route.resource.canonical.format(name="nosuch", id="999", address="192.0.2.1")
                found.add((route.method, path))
            return sorted(found)
        finally:
            await database.dispose()

    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(collect(directory))


def _tcp(port: int, method: str, path: str, *, token: str | None, body: bytes | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(
            method, path, body=body if body is not None else (b"{}" if method not in SAFE else None), headers=headers
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, (json.loads(data) if data.startswith(b"{") else {})


def test_socket_is_0660_and_owned_by_the_socket_group(tmp_path: Path, sockdir: Path) -> None:
    group = grp.getgrnam("daemon")
    daemon = Daemon(sockdir, f"sqlite:///{tmp_path / 'ipamd.db'}", extra_args=("--socket-group", "daemon")).start()
    try:
        info = os.stat(daemon.socket)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660, oct(info.st_mode)
        assert info.st_gid == group.gr_gid
        # Without a listener the daemon has no TCP socket at all.
        assert daemon.process is not None
        assert listening_tcp_ports(daemon.process.pid) == []
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", free_port()), timeout=2):
            pass
    finally:
        daemon.stop()
    # A numeric gid works too.
    daemon = Daemon(
        sockdir, f"sqlite:///{tmp_path / 'ipamd.db'}", extra_args=("--socket-group", str(group.gr_gid))
    ).start()
    try:
        assert os.stat(daemon.socket).st_gid == group.gr_gid
    finally:
        daemon.stop()


@pytest.fixture
def tcp_daemon(tmp_path: Path, sockdir: Path) -> Iterator[tuple[Daemon, int]]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# ipamd tokens\nadmin {ADMIN_TOKEN}\n\nreadonly {READONLY_TOKEN}\n")
    port = free_port()
    daemon = Daemon(
        sockdir,
        f"sqlite:///{tmp_path / 'ipamd.db'}",
        extra_args=("--listen", f"127.0.0.1:{port}", "--token-file", str(tokens)),
    ).start()
    try:
        yield daemon, port
    finally:
        daemon.stop()


def test_tcp_listener_needs_the_admin_token_to_change_state(tcp_daemon: tuple[Daemon, int]) -> None:
    daemon, port = tcp_daemon
    assert daemon.process is not None
    assert listening_tcp_ports(daemon.process.pid) == [port]
    routes = _routes()
    writes = [(m, p) for m, p in routes if m not in SAFE]
    reads = [(m, p) for m, p in routes if m in SAFE]
    expected_writes = {
        ("POST", "/v1/subnets"),
        ("PATCH", "/v1/subnets/nosuch"),
        ("DELETE", "/v1/subnets/nosuch"),
        ("POST", "/v1/pools"),
        ("DELETE", "/v1/pools/nosuch"),
        ("POST", "/v1/reservations"),
        ("DELETE", "/v1/reservations/999"),
        ("POST", "/v1/allocations"),
        ("DELETE", "/v1/allocations/999"),
        ("POST", "/v1/cni/add"),
        ("POST", "/v1/cni/del"),
        ("POST", "/v1/cni/check"),
        ("POST", "/v1/cni/gc"),
        ("POST", "/v1/cni/exec"),
    }
    assert expected_writes <= set(writes), sorted(expected_writes - set(writes))

    for method, path in writes:
        status, body = _tcp(port, method, path, token=None)
        assert (status, body.get("error", {}).get("code")) == (401, "unauthorized"), (method, path, status, body)
        status, body = _tcp(port, method, path, token="not-a-token-at-all-0000")
        assert status == 401, (method, path, status, body)
        status, body = _tcp(port, method, path, token=READONLY_TOKEN)
        assert (status, body.get("error", {}).get("code")) == (403, "forbidden"), (method, path, status, body)
        status, body = _tcp(port, method, path, token=ADMIN_TOKEN)
        assert status not in (401, 403) and status < 500, (method, path, status, body)

    for method, path in reads:
        status, body = _tcp(port, method, path, token=READONLY_TOKEN)
        assert status not in (401, 403) and status < 500, (method, path, status, body)
        status, _ = _tcp(port, method, path, token=None)
        assert status == (200 if path in OPEN_PATHS else 401), (method, path, status)

    # The admin token really changes state over TCP; the read-only one really reads it.
    spec = json.dumps({"name": "tcp", "cidrBlock": "203.0.113.0/24", "provider": "tcp.ns"}).encode()
    assert _tcp(port, "POST", "/v1/subnets", token=ADMIN_TOKEN, body=spec)[0] == 201
    status, body = _tcp(port, "GET", "/v1/subnets/tcp", token=READONLY_TOKEN)
    assert status == 200 and body["cidrBlock"] == "203.0.113.0/24"
    # The Unix socket needs no token: its file mode is the access control.
    reply = asyncio.run(request(daemon.socket, "POST", "/v1/cni/add", add_body("p", provider="tcp.ns")))
    assert reply.status == 200
    for token in (ADMIN_TOKEN, READONLY_TOKEN):
        assert token not in daemon.log()


# ----------------------------------------------------------------------------- the password


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server that checks passwords on TCP (the shared one trusts everyone)."""
    server = PostgresServer.start()
    try:
        socket_dir = server.data_dir.parent
        subprocess.run(
            [
                "psql",
                "-h",
                str(socket_dir),
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                "ALTER USER postgres PASSWORD 'RightPassw0rd'",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (server.data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        server.pg_ctl("reload")
        yield server
    finally:
        server.destroy()


def _assert_secret_kept(daemon: Daemon, *, serving: bool) -> None:
    if serving:
        replies = asyncio.run(_ask_everything(daemon.socket))
        for reply in replies:
            assert reply.status == 503 and reply.error_code == "unavailable", reply.body
            assert PASSWORD not in reply.raw.decode(errors="replace")
    log = daemon.log()
    assert log, "the daemon wrote nothing: the test would prove nothing"
    assert PASSWORD not in log, log[-2000:]


async def _ask_everything(socket_path: str) -> list:
    return [
        await request(socket_path, "GET", "/readyz"),
        await request(socket_path, "GET", "/v1/cni/status"),
        await request(socket_path, "POST", "/v1/cni/add", add_body("p", provider="x.ns")),
        await request(socket_path, "POST", "/v1/subnets", {"name": "x", "cidrBlock": "203.0.113.0/24"}),
        await request(socket_path, "GET", "/v1/subnets"),
    ]


def _start_serving_without_database(daemon: Daemon) -> None:
    daemon.start(wait=False)
    wait_for(
        lambda: daemon.process is not None and (daemon.process.poll() is not None or os.path.exists(daemon.socket)),
        timeout=30,
        what="the socket",
    )
    assert daemon.process is not None and daemon.process.poll() is None, daemon.log()
    # Serving, but not ready.
    wait_for(lambda: _healthz(daemon.socket), timeout=30, what="healthz")


def _healthz(socket_path: str) -> bool:
    try:
        return asyncio.run(request(socket_path, "GET", "/healthz", timeout=5)).status == 200
    except OSError:
        return False


@pytest.mark.parametrize("where", ["nothing-listening", "wrong-password"])
def test_database_password_never_leaks(where: str, password_postgres: PostgresServer, sockdir: Path) -> None:
    port = free_port() if where == "nothing-listening" else password_postgres.port
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    starting = Daemon(sockdir, url, name="migrating")
    starting.start(wait=False)
    assert starting.process is not None
    if where == "nothing-listening":
        # A database that is not up yet: the daemon waits for it and says why, again and again.
        wait_for(lambda: starting.log().count("database not reachable yet") >= 2, timeout=60, what="the retry warnings")
        assert starting.process.poll() is None, "the daemon should wait for its database, not exit"
        starting.stop()
    else:
        # A refused login is a configuration error: waiting would not fix it. One line says why.
        assert starting.process.wait(60) != 0
        log = starting.log()
        assert "Traceback" not in log, log[-3000:]
        refusals = [line for line in log.splitlines() if line.startswith("ipamd:")]
        assert len(refusals) == 1 and "password authentication failed" in refusals[0], log[-3000:]
        assert "postgres:***@127.0.0.1" in refusals[0]
    _assert_secret_kept(starting, serving=False)
    # Without: it serves, answers 503 everywhere, and still keeps the secret.
    serving = Daemon(sockdir, url, name="serving", extra_args=("--no-migrate", "--log-level", "debug"))
    try:
        _start_serving_without_database(serving)
        _assert_secret_kept(serving, serving=True)
    finally:
        serving.stop()


def test_right_password_works_and_is_not_logged(password_postgres: PostgresServer, sockdir: Path) -> None:
    url = f"postgresql://postgres:RightPassw0rd@127.0.0.1:{password_postgres.port}/postgres"
    daemon = Daemon(sockdir, url, extra_args=("--log-level", "debug")).start()
    try:
        assert (
            asyncio.run(
                request(
                    daemon.socket,
                    "POST",
                    "/v1/subnets",
                    {"name": "pw", "cidrBlock": "203.0.113.0/24", "provider": "pw.ns"},
                )
            ).status
            == 201
        )
        assert asyncio.run(request(daemon.socket, "POST", "/v1/cni/add", add_body("p", provider="pw.ns"))).status == 200
    finally:
        daemon.stop()
    assert "RightPassw0rd" not in daemon.log()
    assert "***" in daemon.log()  # the URL is logged, masked


def test_db_upgrade_command_keeps_the_password(sockdir: Path) -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    result = subprocess.run(
        [sys.executable, "-m", "ipamd", "db", "upgrade", "--database-url", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert PASSWORD not in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]
