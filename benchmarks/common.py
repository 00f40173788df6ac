"""Shared helpers for benchmarks: machine description, an async socket client, concurrent ADDs."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores, {model}{memory}, Linux {platform.release()}, Python {platform.python_version()}"


async def post_json(socket_path: str, path: str, body: dict) -> tuple[int, dict]:
    """One HTTP/1.1 request over a fresh Unix connection, as the CNI shim makes it."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: ipamd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        body_bytes = _dechunk(body_bytes)
    return status, json.loads(body_bytes) if body_bytes else {}


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def add_body(index: int, provider: str) -> dict:
    """A CNI ADD of its own pod and container for request ``index``."""
    return {
        "containerId": f"c{index}",
        "ifName": "net1",
        "network": provider,
        "ipam": {"type": "ipamd", "provider": provider},
        "podNamespace": "bench",
        "podName": f"pod-{index}",
    }


async def hammer(
    sockets: list[str],
    body_for: Callable[[int], dict],
    *,
    requests: int,
    concurrency: int,
    path: str = "/v1/cni/add",
    first: int = 0,
) -> tuple[float, int, list[float]]:
    """Returns requests/s, failures and per-request latencies; request i goes to daemon i % N."""
    counter = iter(range(first, first + requests))
    failures = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal failures
        for index in counter:
            started = time.perf_counter()
            status, _ = await post_json(sockets[index % len(sockets)], path, body_for(index))
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started), failures, latencies


def timed_allocations(
    cluster: Any, subnets: list[str], providers: list[str], *, requests: int, concurrency: int
) -> tuple[float, int, list[float]]:
    """ADDs spread over a cluster's daemons (daemon i asks for ``providers[i]``) after a warm-up
    outside the measurement; checks the subnets hold exactly the successful ones."""
    sockets = cluster.sockets

    def body_for(index: int) -> dict:
        return add_body(index, providers[index % len(sockets)])

    asyncio.run(hammer(sockets, body_for, requests=8 * len(sockets), concurrency=len(sockets), first=10**6))
    rate, failures, latencies = asyncio.run(hammer(sockets, body_for, requests=requests, concurrency=concurrency))
    client = cluster.daemons[0].client
    used = sum(client.get(f"/v1/subnets/{name}").body["usage"]["v4"]["used"] for name in subnets)
    assert used == requests + 8 * len(sockets) - failures, (used, requests, failures)
    return rate, failures, latencies


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def now() -> float:
    return time.perf_counter()
