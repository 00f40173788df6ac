"""Helpers for the cluster and fault tests (tests/cluster) and the cluster benchmarks.

- ``request``: one HTTP/1.1 exchange over a Unix socket with asyncio, raw enough to see
  every connection failure (a killed daemon) as an exception the caller can retry on.
- ``Cluster``: N daemon processes on one database, started in parallel.
- Database snapshots (SQLite through ``sqlite3``, PostgreSQL through asyncpg) and the
  invariants every test checks at the end: no address twice, usage counts that add up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.client import UnixClient
from tests.support.daemon import REPO, Daemon

# Failures that mean "this daemon did not answer": the caller retries elsewhere, like a
# container runtime re-running ADD after the shim exited with code 11.
CONNECTION_ERRORS = (ConnectionError, FileNotFoundError, asyncio.IncompleteReadError, EOFError)


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes
    seconds: float = 0.0

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None

    @property
    def cni_code(self) -> int | None:
        return self.body.get("error", {}).get("cniCode") if isinstance(self.body, dict) else None


async def request(
    socket_path: str,
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Reply:
    """Sends one request on a fresh connection and returns the reply.

    Raises one of ``CONNECTION_ERRORS`` when the daemon is gone or dies mid-request, and
    ``TimeoutError`` when it does not answer within ``timeout``.
    """
    started = time.monotonic()
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    head = [f"{method} {url} HTTP/1.1", "Host: ipamd", "Connection: close", f"Content-Length: {len(payload)}"]
    if body is not None or raw is not None:
        head.append("Content-Type: application/json")
    head += [f"{key}: {value}" for key, value in (headers or {}).items()]
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(sock=await _connect(socket_path))
        try:
            writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                raise EOFError("connection closed before a status line")
            status = int(status_line.split()[1])
            length = None
            while True:
                line = await reader.readline()
                if not line:
                    raise EOFError("connection closed inside the headers")
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            data = await reader.readexactly(length) if length is not None else await reader.read()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
    return Reply(status, parsed, data, time.monotonic() - started)


async def _connect(socket_path: str) -> socket.socket:
    """Connects a Unix socket without blocking the loop, waiting while the backlog is full.

    A non-blocking connect() on AF_UNIX fails with EAGAIN when the listen backlog is full
    (no EINPROGRESS as on TCP); asyncio would take that for "connecting" and hand back a
    socket that was never connected.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.connect(socket_path)
                return sock
            except BlockingIOError:
                await asyncio.sleep(0.002)
    except BaseException:
        sock.close()
        raise


def add_body(
    pod: str, *, provider: str, namespace: str = "ns", interface: str = "net1", container: str | None = None
) -> dict[str, Any]:
    """Returns the POST /v1/cni/add body the shim sends for a pod attaching to ``provider``."""
    return {
        "containerId": container or f"c-{namespace}-{pod}",
        "ifName": interface,
        "netns": f"/var/run/netns/{pod}",
        "network": provider.partition(".")[0],
        "podNamespace": namespace,
        "podName": pod,
        "ipam": {"type": "ipamd", "provider": provider},
    }


@contextmanager
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (pytest's tmp_path can exceed the 107-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="ipc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Cluster:
    """Daemons sharing one database, each on its own socket (one per 'node')."""

    def __init__(
        self, workdir: Path, database_url: str, size: int, *, extra_args: tuple[str, ...] = (), repo: Path = REPO
    ) -> None:
        self.daemons = [
            Daemon(
                workdir, database_url, name=f"node{i}", extra_args=("--node-name", f"node{i}", *extra_args), repo=repo
            )
            for i in range(size)
        ]

    def start(self, timeout: float = 60.0) -> Cluster:
        for daemon in self.daemons:
            daemon.start(wait=False)
        for daemon in self.daemons:
            daemon.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()

    @property
    def sockets(self) -> list[str]:
        return [daemon.socket for daemon in self.daemons]

    def logs(self) -> str:
        return "\n".join(f"--- {d.socket}\n{d.log()[-4000:]}" for d in self.daemons)


async def call_anywhere(
    sockets: list[str],
    method: str,
    url: str,
    body: Any = None,
    *,
    deadline: float = 60.0,
    retry_statuses: tuple[int, ...] = (503,),
    rng: random.Random | None = None,
) -> tuple[Reply, int]:
    """Sends the request to a random daemon, moving on to another while they fail.

    Returns the final reply and how many attempts failed before it. Connection failures
    (a daemon being killed) and the statuses in ``retry_statuses`` are retried.
    """
    rng = rng or random.Random()
    failures = 0
    give_up = time.monotonic() + deadline
    while True:
        path = rng.choice(sockets)
        try:
            reply = await request(path, method, url, body, timeout=15.0)
            if reply.status not in retry_statuses:
                return reply, failures
        except (*CONNECTION_ERRORS, TimeoutError):
            pass
        failures += 1
        if time.monotonic() > give_up:
            raise TimeoutError(f"{method} {url} failed on every daemon for {deadline}s")
        await asyncio.sleep(0.02 * min(failures, 10))


def rss_kib(pid: int) -> int:
    """Returns the resident set size of a process in KiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def listening_tcp_ports(pid: int) -> list[int]:
    """Returns the TCP ports a process listens on (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            # st 0A is LISTEN.
            if fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].rpartition(":")[2], 16))
    return ports


# ----------------------------------------------------------------------------- snapshots

TABLES = ("subnets", "pools", "reservations", "allocations", "free_ranges", "released", "address_events")


def sqlite_snapshot(path: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Returns every row of the ipamd tables of a SQLite database, in a stable order."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {table: sorted(connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in TABLES}
    finally:
        connection.close()


def sqlite_integrity(path: str | Path) -> list[str]:
    connection = sqlite3.connect(path, timeout=30)
    try:
        return [row[0] for row in connection.execute("PRAGMA integrity_check")]
    finally:
        connection.close()


async def postgres_snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        snapshot = {}
        for table in TABLES:
            rows = await connection.fetch(f"SELECT * FROM {table}")
            snapshot[table] = sorted((tuple(row.values()) for row in rows), key=repr)
        return snapshot
    finally:
        await connection.close()


# ----------------------------------------------------------------------------- invariants


def check_subnet_consistency(client_get: Callable[[str], Any], subnet: str) -> dict[str, Any]:
    """Asserts that a subnet's usage agrees with its allocation rows; returns the rows.

    ``client_get(url)`` returns a parsed JSON body (status 200 asserted by the caller).
    """
    body = client_get(f"/v1/subnets/{subnet}")
    rows = client_get(f"/v1/allocations?subnet={subnet}")["items"]
    families = sorted(body["usage"])
    for key in families:
        usage = body["usage"][key]
        family = int(key[1:])
        held = [a["address"] for row in rows for a in row["addresses"] if a["family"] == family]
        assert len(held) == len(set(held)), f"{subnet}: an IPv{family} address is held twice"
        assert usage["used"] == len(held), f"{subnet}: usage says {usage['used']} used, {len(held)} rows"
        # Every allocatable address is exactly one of these (exact integers, IPv6 /64 too).
        accounted = usage["used"] + usage["available"] + usage["excluded"] + usage["reserved"] + usage["pooled"]
        assert accounted == usage["total"], f"{subnet} IPv{family}: {usage} does not add up"
    if len(families) == 2:
        for row in rows:
            assert sorted(a["family"] for a in row["addresses"]) == [4, 6], f"half dual-stack allocation {row}"
    return {"subnet": body, "rows": rows}


def json_getter(socket_path: str) -> Callable[[str], Any]:
    """Returns ``get(url)`` that asserts a 200 and returns the JSON body."""
    client = UnixClient(socket_path)

    def get(url: str) -> Any:
        reply = client.get(url)
        assert reply.status == 200, (url, reply.status, reply.body)
        return reply.body

    return get
